"""The DemographicAnnotator under the source-shortcut mitigations (pipeline/configs/shared_data.yaml).

Two things change there: FairFace is audit-only, so every human label sits in
the test split (the annotator cross-fits on it), and the crop cuts into the
face, so the descriptor is taken at ingestion, before the crop.
"""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from fakefaces.components.shared import features
from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.demographic_annotator import annotate
from fakefaces.components.demographic_annotator import executor as annotator_executor
from fakefaces.components.demographic_annotator.config import AnnotatorConfig, validate
from fakefaces.components.face_preparation import descriptors, faces
from fakefaces.components.face_example_gen import executor as ingest_executor
from fakefaces.pipeline import config as pipeline_config
from fakefaces.pipeline.config import FacePreparation, IngestConfig, PipelineConfig, SourceConfig


def test_cross_fitting_scores_each_face_with_classifiers_that_never_saw_it():
  """On noise, in-sample accuracy is near 1 (128 dims > 60 faces); out-of-fold is chance."""
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(60, descriptors.DESCRIPTOR_SIZE)).astype(np.float32)
  genders = [features.GENDERS[i % 2] for i in rng.permutation(60)]
  labels = {'gender': genders, 'race': [features.UNKNOWN] * 60, 'age': [features.UNKNOWN] * 60}
  classifiers, _ = annotate.train(vectors, labels, 5, 1.0)
  in_sample = annotate.predict(classifiers, vectors)['gender'][0]
  out_of_fold = annotate.cross_fit(vectors, labels, 5, 1.0, folds=5, seed=0)['gender'][0]
  accuracy = lambda predicted: np.mean([p == t for p, t in zip(predicted, genders)])
  assert accuracy(in_sample) > 0.95
  assert accuracy(out_of_fold) < 0.75
  assert set(out_of_fold) <= set(features.GENDERS)  # every face got an out-of-fold proposal


def test_cross_fitting_config_is_checked_by_field():
  validate(AnnotatorConfig(train_split='test', cross_fit_folds=5))
  with pytest.raises(ConfigError, match='annotator.test_split'):
    validate(AnnotatorConfig(train_split='test'))
  with pytest.raises(ConfigError, match='annotator.cross_fit_folds'):
    validate(AnnotatorConfig(train_split='test', cross_fit_folds=1))
  with pytest.raises(ConfigError, match='annotator.cross_fit_folds'):
    validate(AnnotatorConfig(cross_fit_folds=5))  # train != test: nothing to cross-fit


def test_a_crop_without_ingestion_descriptors_is_refused_naming_the_field():
  config = PipelineConfig(ingest=IngestConfig(face=FacePreparation(crop_fraction=0.5)))
  with pytest.raises(ConfigError, match='ingest.face_descriptors'):
    pipeline_config.check_consistency(config)
  config.ingest.face_descriptors = True
  pipeline_config.check_consistency(config)
  config = PipelineConfig(ingest=IngestConfig(face=FacePreparation(crop_fraction=0.5)))
  config.annotator.enabled = False
  pipeline_config.check_consistency(config)
  # CLIP embeddings are taken from the stored crop itself: no descriptor needed.
  config = PipelineConfig(ingest=IngestConfig(face=FacePreparation(crop_fraction=0.5)))
  config.annotator.features = 'clip_embedding'
  pipeline_config.check_consistency(config)


def test_clip_embeddings_share_the_trainers_cache_or_are_refused_naming_the_field(tmp_path):
  config = PipelineConfig()
  config.annotator.features = 'clip_embedding'
  config.annotator.embedding_cache_dir = str(tmp_path / 'annotator')
  pipeline_config.check_consistency(config)  # a CNN reads no embeddings
  config.train.architecture = 'clip_vit_b16'
  with pytest.raises(ConfigError, match='annotator.embedding_cache_dir .* must equal '
                                        'train.embedding_cache_dir'):
    pipeline_config.check_consistency(config)
  config.train.embedding_cache_dir = config.annotator.embedding_cache_dir
  pipeline_config.check_consistency(config)


def test_the_shipped_shared_data_config_is_consistent():
  config = pipeline_config.load_config(
      os.path.join(pipeline_config.PROJECT_ROOT, 'pipeline', 'configs', 'shared_data.yaml'))
  assert config.ingest.face_descriptors and config.annotator.cross_fit_folds >= 2
  assert all(s.role == 'audit' for s in config.ingest.sources if s.kind == 'fairface')


def _read(pattern):
  files = sorted(glob.glob(pattern))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _manifest_with_unlabelled_fakes(manifest: str) -> str:
  """A copy of the demo manifest (beside it, so image paths and ids stay) whose fakes carry no
  demographics, as on real data: the annotator then has faces to fill and runs."""
  out = os.path.join(os.path.dirname(manifest), 'manifest_unlabelled_fakes.csv')
  with open(manifest, newline='') as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    if row['label'] == 'fake':
      row.update(gender='', race='', age='')
  with open(out, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return out


def test_descriptors_are_taken_before_the_crop_and_the_annotator_uses_them(demo_dataset, tmp_path):
  manifest = _manifest_with_unlabelled_fakes(demo_dataset)
  ingest = IngestConfig(sources=[SourceConfig(kind='manifest', path=manifest, name='demo',
                                              role='audit')],
                        face=FacePreparation(align='none', output_size=128, crop_fraction=0.5,
                                             resample_size=64),
                        face_descriptors=True, limit_per_source=40)
  ingest_executor.run_standalone(ingest, str(tmp_path / 'ingested'))
  examples = _read(str(tmp_path / 'ingested' / 'examples' / 'Split-test' / '*'))
  assert len(examples) == 40

  describer = descriptors.FaceDescriber()
  preparer = faces.FacePreparer(ingest.face)
  for example in examples[:5]:
    stored = descriptors.from_example(example)
    assert stored is not None and stored.shape == (descriptors.DESCRIPTOR_SIZE,)
    # Not the descriptor of the stored (cropped) image: that one has half the face box
    # outside the picture.
    of_cropped = describer.describe(example.features.feature[features.IMAGE].bytes_list.value[0])
    assert np.linalg.norm(stored - of_cropped) > 0.1
    # It is the descriptor of the aligned face before the crop (manifest ids: demo/<rel path>).
    image_id = example.features.feature[features.IMAGE_ID].bytes_list.value[0].decode()
    path = os.path.join(os.path.dirname(demo_dataset), image_id.split('/', 1)[1] + '.jpg')
    with open(path, 'rb') as f:
      face = preparer.prepare(f.read(), all_faces=False).faces[0]
    expected = describer.describe_pixels(np.asarray(face.aligned))
    assert np.linalg.norm(stored - expected) < 1e-4

  report = annotator_executor.run_standalone(
      str(tmp_path / 'ingested' / 'examples'), str(tmp_path / 'annotated'),
      AnnotatorConfig(train_split='test', cross_fit_folds=2, min_train_per_class=2,
                      progress_interval_seconds=1e9))
  assert report['faces_described'] == 0  # nothing described again from the cropped image
  assert report['descriptors_from_ingestion'] > 0
  assert 'cross-fitting' in report['evaluation_protocol']
