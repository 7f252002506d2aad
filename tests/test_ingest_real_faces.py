"""dlib alignment and ingestion on real photos from ../shared/data (skips when absent).

Measures, on a fixed FairFace sample, how many faces HOG alone and HOG with the
CNN fallback find; checks the FFHQ geometry by re-detecting landmarks on the
aligned output; and runs the executor (Beam DirectRunner) to check that labels
and demographics survive into the TFRecords exactly.
"""

import csv
import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_example_gen import executor
from fakefaces.components.face_preparation import align
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

SAMPLE_SIZE = 60
OUTPUT_SIZE = 256


def _fairface_sample(faces_data, n=SAMPLE_SIZE):
  files = sorted(glob.glob(os.path.join(faces_data, 'fairface', 'train', '*.jpg')))
  return files[::max(1, len(files) // n)][:n]


@pytest.fixture(scope='module')
def aligner():
  return align.FaceAligner('hog+cnn', OUTPUT_SIZE)


@pytest.fixture(scope='module')
def aligned_sample(faces_data, aligner):
  """(path, AlignedFace or None) for a fixed FairFace sample."""
  return [(path, aligner.align(Image.open(path).convert('RGB')))
          for path in _fairface_sample(faces_data)]


def test_hog_plus_cnn_finds_95_percent_of_fairface_faces(aligned_sample):
  found = [a for _, a in aligned_sample if a is not None]
  by_hog = [a for a in found if a.detector == 'hog']  # HOG runs first on every image
  print(f'\nFairFace sample of {len(aligned_sample)}: HOG (1 upsample) found '
        f'{len(by_hog)} ({len(by_hog) / len(aligned_sample):.0%}); with CNN fallback '
        f'{len(found)} ({len(found) / len(aligned_sample):.0%})')
  assert len(found) >= 0.95 * len(aligned_sample)
  assert all(a.face_size > 40 for a in found)  # box side in 224px source pixels


def _measured_geometry(aligner, image):
  """Eye tilt (px), crop-centre offset (px) and scale of the face re-detected on an aligned crop."""
  boxes, _ = aligner.detect(image)
  if not boxes:
    return None
  landmarks = aligner.landmarks(image, max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))
  eye_left, eye_right, mouth = align.eye_and_mouth_centres(landmarks)
  eye_avg = (eye_left + eye_right) / 2
  # The FFHQ recipe puts eye_avg + 0.1 * eye_to_mouth at the centre and makes the
  # crop side 2 * max(2 * eye distance, 1.8 * eye-to-mouth distance).
  centre = eye_avg + 0.1 * (mouth - eye_avg)
  side = 2 * max(2 * np.hypot(*(eye_right - eye_left)), 1.8 * np.hypot(*(mouth - eye_avg)))
  return (abs(eye_left[1] - eye_right[1]), float(np.hypot(*(centre - OUTPUT_SIZE / 2))),
          side / OUTPUT_SIZE)


def test_aligned_eyes_are_level_and_canonical(aligner, aligned_sample):
  hog_faces = [a for _, a in aligned_sample if a is not None and a.detector == 'hog']
  measured = [m for m in (_measured_geometry(aligner, a.image) for a in hog_faces) if m]
  assert len(measured) >= 0.9 * len(hog_faces)
  tilt, offset, scale = (np.array(v) for v in zip(*measured))
  print(f'\nre-detected on {len(measured)} aligned faces: median eye tilt {np.median(tilt):.1f}px, '
        f'centre offset {np.median(offset):.1f}px, scale {np.median(scale):.3f}')
  # Landmarks are re-estimated from scratch, so allow their own jitter; most
  # faces must sit within a few pixels of the canonical frame.
  assert np.mean(tilt <= 3) >= 0.85
  assert np.mean(offset <= 4) >= 0.85
  assert np.mean(np.abs(scale - 1) <= 0.05) >= 0.85
  eye_left, eye_right, _ = align.eye_and_mouth_centres(hog_faces[0].landmarks)
  assert eye_left[0] < eye_right[0]  # landmark order: image-left eye first


def test_refinement_maps_crop_points_back_to_source(aligned_sample):
  _, face = next((p, a) for p, a in aligned_sample if a is not None)
  quad = align.ffhq_quad(face.landmarks)
  corners = np.array([[-0.5, -0.5], [-0.5, OUTPUT_SIZE - 0.5], [OUTPUT_SIZE - 0.5] * 2,
                      [OUTPUT_SIZE - 0.5, -0.5]])
  np.testing.assert_allclose(align.output_to_source(corners, quad, OUTPUT_SIZE), quad, atol=1e-6)


def _read_examples(examples_dir):
  out = {}
  for path in glob.glob(os.path.join(examples_dir, 'Split-*', '*.gz')):
    split = os.path.basename(os.path.dirname(path))[len('Split-'):]
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      feature = example.features.feature
      image_id = feature[features.IMAGE_ID].bytes_list.value[0].decode('utf-8')
      out[image_id] = {
          'split': split,
          'label': feature[features.LABEL].int64_list.value[0],
          'face_size': feature[features.FACE_SIZE].int64_list.value[0],
          'image': feature[features.IMAGE].bytes_list.value[0],
          **{k: feature[k].bytes_list.value[0].decode('utf-8')
             for k in (features.GENDER, features.RACE, features.AGE, features.SOURCE)}}
  return out


def test_executor_writes_labels_and_demographics_exactly(faces_data, tmp_path):
  # A third source holds one photo without a face, to see no_face accounted for.
  noface = tmp_path / 'noface' / 'real'
  noface.mkdir(parents=True)
  Image.new('RGB', (200, 200), (120, 160, 200)).save(noface / 'sky.jpg')
  config = IngestConfig(
      sources=[SourceConfig('fairface', os.path.join(faces_data, 'fairface')),
               SourceConfig('kaggle140k', os.path.join(faces_data, 'gan_faces'), name='gan'),
               SourceConfig('folders', str(tmp_path / 'noface'), name='sky')],
      face=FacePreparation(align='dlib', detector='hog+cnn', output_size=OUTPUT_SIZE),
      limit_per_source=24)
  report = executor.run_standalone(config, str(tmp_path / 'out'))
  written = _read_examples(str(tmp_path / 'out' / 'examples'))

  assert report['total'] == 49
  assert report['counts']['written'] == len(written) >= 44
  assert report['by_source']['sky'] == {'written': 0, 'no_face': 1, 'unreadable': 0,
                                        'filtered': 0}
  assert sum(report['faces_found_by_detector'].values()) == len(written)
  labels = {}
  for name, split in (('fairface_label_train.csv', None), ('fairface_label_val.csv', 'test')):
    with open(os.path.join(faces_data, 'fairface', name), encoding='utf-8') as f:
      for row in csv.DictReader(f):
        labels['fairface/' + os.path.splitext(row['file'])[0]] = (row, split)
  fairface_ids = [i for i in written if i.startswith('fairface/')]
  assert len(fairface_ids) >= 20
  for image_id in fairface_ids:
    example, (row, split) = written[image_id], labels[image_id]
    assert (example['label'], example['gender'], example['race'], example['age']) == (
        features.REAL, row['gender'], row['race'], row['age'])
    # FairFace val is the test split; its train rows are cut into train/eval only.
    assert example['split'] in (('test',) if split else ('train', 'eval'))
    assert example['source'] == 'fairface' and example['face_size'] > 0
  gan_ids = [i for i in written if i.startswith('gan/')]
  assert len(gan_ids) >= 20
  for image_id in gan_ids:
    _, folder, label_name, _ = image_id.split('/')
    example = written[image_id]
    assert example['label'] == {'real': features.REAL, 'fake': features.FAKE}[label_name]
    assert example['split'] == {'train': 'train', 'valid': 'eval', 'test': 'test'}[folder]
    assert (example['gender'], example['race'], example['age']) == ('unknown',) * 3
  image = Image.open(io.BytesIO(written[gan_ids[0]]['image']))
  assert (image.format, image.size, image.mode) == ('JPEG', (OUTPUT_SIZE, OUTPUT_SIZE), 'RGB')
  counted = sum(n for labels_ in report['written_by_split'].values() for n in labels_.values())
  assert counted == len(written)
