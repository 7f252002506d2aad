"""Photos in, verdicts out: the one face-preparation path, refusals before dlib, the CLI.

Real dlib, a real model server (`fakefaces serve --builtin` on loopback) and
FairFace photos from ../shared/data (skipped with a reason when absent).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fakefaces.components.face_example_gen import executor, sources
from fakefaces.components.face_preparation import faces, images
from fakefaces.components.face_example_gen.config import IngestConfig
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.pipeline.cli import cli
import serving_testing as testing

PREP = faces.FacePreparation(detector='hog', output_size=128)
# FairFace val photos where dlib's HOG detector finds exactly one face (checked in the tests).
ONE_FACE = ('1000.jpg', '1002.jpg', '1009.jpg')


def _jpeg(image: Image.Image, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=95, **kwargs)
  return buffer.getvalue()


@pytest.fixture(scope='module')
def preparer():
  return faces.FacePreparer(PREP)


@pytest.fixture(scope='module')
def photo_paths(faces_data):
  return [os.path.join(faces_data, 'fairface', 'val', name) for name in ONE_FACE]


def test_tiny_image_is_refused_before_dlib_with_a_reason(preparer):
  # dlib's CNN detector corrupts the heap on 8x8 (the process aborts later): never let it see one.
  data = _jpeg(Image.new('RGB', (8, 8), (120, 90, 80)))
  with pytest.raises(images.ImageProblem) as e:
    preparer.prepare(data)
  assert e.value.outcome == images.FILTERED
  assert '8x8' in e.value.reason and 'too small' in e.value.reason


def test_strip_and_non_image_and_oversized_are_refused(preparer):
  with pytest.raises(images.ImageProblem, match='aspect ratio'):
    preparer.prepare(_jpeg(Image.new('RGB', (2000, 40))))
  with pytest.raises(images.ImageProblem, match='not a readable image'):
    preparer.prepare(b'<html>not an image</html>')
  small_limit = faces.FacePreparer(faces.FacePreparation(detector='hog', max_image_pixels=10_000))
  with pytest.raises(images.ImageProblem, match='over ingest.face.max_image_pixels'):
    small_limit.prepare(_jpeg(Image.new('RGB', (200, 200))))


def test_ingestion_of_an_8x8_jpeg_is_filtered_and_the_cnn_process_survives(tmp_path):
  """The same refusal protects ingestion with the CNN detector; checked in a child process,
  because heap corruption would abort it (exit 134) rather than raise."""
  tiny = tmp_path / 'tiny.jpg'
  tiny.write_bytes(_jpeg(Image.new('RGB', (8, 8), (120, 90, 80))))
  code = (
      'from fakefaces.components.face_example_gen import executor, sources\n'
      'from fakefaces.components.face_example_gen.config import IngestConfig\n'
      'from fakefaces.components.face_preparation.faces import FacePreparation\n'
      f'processor = executor.FaceProcessor(IngestConfig(face=FacePreparation(detector="cnn")))\n'
      f'record = sources.InputRecord(path={str(tiny)!r}, image_id="tiny", source="t", split="train", '
      'label=0, gender="unknown", race="unknown", age="unknown")\n'
      'outcomes = [processor(record) for _ in range(3)]\n'
      'print(outcomes[0].outcome, "|", outcomes[0].reason)\n')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                        cwd=testing.PROJECT_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert done.returncode == 0, done.stderr[-2000:]
  outcome, reason = done.stdout.strip().splitlines()[-1].split(' | ')
  assert outcome == 'filtered' and 'too small for face detection' in reason


def test_exif_orientation_is_applied(preparer, photo_paths):
  upright = Image.new('RGB', (300, 224), (128, 128, 128))  # a landscape photo
  upright.paste(Image.open(photo_paths[0]).convert('RGB'), (38, 0))
  rotated = upright.transpose(Image.ROTATE_90)  # stored sideways (224x300) ...
  exif = Image.Exif()
  exif[0x0112] = 6  # ... with EXIF "rotate 90 degrees clockwise to display"
  with_exif = preparer.prepare(_jpeg(rotated, exif=exif.tobytes()))
  assert with_exif.image.size == (300, 224)
  assert len(with_exif.faces) == 1
  reference = preparer.prepare(_jpeg(upright)).faces[0]
  assert np.abs(np.subtract(with_exif.faces[0].box, reference.box)).max() <= 2
  difference = np.abs(np.asarray(with_exif.faces[0].crop, np.float32) -
                      np.asarray(reference.crop, np.float32)).mean()
  assert difference < 6, difference
  # The same pixels without the tag: a sideways face, found on the turned photo and aligned
  # upright (the field case rotated_face in test_photo_field_cases.py).
  sideways = preparer.prepare(_jpeg(rotated))
  assert sideways.image.size == (224, 300) and [f.rotation for f in sideways.faces] == [90]
  difference = np.abs(np.asarray(sideways.faces[0].crop, np.float32) -
                      np.asarray(reference.crop, np.float32)).mean()
  assert difference < 6, difference


def test_no_face_and_many_faces(preparer, photo_paths):
  blank = preparer.prepare(_jpeg(Image.new('RGB', (300, 200), (200, 180, 160))))
  assert blank.faces == [] and 'no face found by hog in 300x200' in blank.no_face_reason
  group = Image.new('RGB', (224 * 3, 224))
  for i, path in enumerate(photo_paths):
    group.paste(Image.open(path).convert('RGB'), (224 * i, 0))
  found = preparer.prepare(_jpeg(group))
  assert len(found.faces) == 3
  assert sorted(f.box[0] // 224 for f in found.faces) == [0, 1, 2]  # one face per photo
  assert all(f.crop.size == (128, 128) for f in found.faces)


def test_ingestion_and_clients_make_the_same_crop(photo_paths, tmp_path):
  """FaceProcessor (ingestion) and FacePreparer (clients) write byte-identical model inputs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  config = IngestConfig(face=FacePreparation(detector='hog', output_size=128))
  record = sources.InputRecord(path=photo_paths[1], image_id='x', source='t', split='train',
                               label=0, gender='Male', race='White', age='20-29')
  outcome = executor.FaceProcessor(config)(record)
  assert outcome.outcome == executor.WRITTEN
  example = tf.train.Example.FromString(outcome.example)
  written = example.features.feature['image'].bytes_list.value[0]
  client_side = faces.FacePreparer(config.face)
  with open(photo_paths[1], 'rb') as f:
    assert client_side.prepare(f.read(), all_faces=False).faces[0].encoded == written


# ---- fakefaces predict against a served model ---------------------------------------------------

@pytest.fixture(scope='module')
def server(tmp_path_factory):
  base = tmp_path_factory.mktemp('photos_serving')
  testing.export_tiny_model(str(base / '1'), face_preparation=PREP)
  log = tmp_path_factory.mktemp('photos_log') / 'serve.log'
  with testing.ServerProcess(str(base), log_path=str(log)) as process:
    yield process
    assert process.process.poll() is None, f'server died during the tests; see {log}'


def test_predict_aligns_photos_one_line_per_face(server, photo_paths, tmp_path, capsys):
  group = Image.new('RGB', (448, 224))
  for i, path in enumerate(photo_paths[:2]):
    group.paste(Image.open(path).convert('RGB'), (224 * i, 0))
  group_path = tmp_path / 'two.jpg'
  group_path.write_bytes(_jpeg(group))
  blank_path = tmp_path / 'blank.jpg'
  blank_path.write_bytes(_jpeg(Image.new('RGB', (300, 200), (200, 180, 160))))
  tiny_path = tmp_path / 'tiny.jpg'
  tiny_path.write_bytes(_jpeg(Image.new('RGB', (8, 8))))
  paths = [photo_paths[0], str(group_path), str(blank_path), str(tiny_path)]
  assert cli.main(['predict', *paths, '--server', server.grpc_target]) == 1  # the 8x8 is an error
  out, err = capsys.readouterr()
  lines = [line.split('\t') for line in out.strip().splitlines()]
  assert [(l[0], l[1]) for l in lines] == [
      (paths[0], 'face 1'), (paths[0], 'summary'), (paths[1], 'face 1'), (paths[1], 'face 2'),
      (paths[1], 'summary'), (paths[2], 'no face'), (paths[2], 'summary')]
  assert lines[4][2] == '2 faces found, 2 scored' and lines[6][2] == '0 faces found, 0 scored'
  assert lines[0][2].startswith('box=') and lines[0][3].startswith('p(fake)=')
  assert lines[0][4] in ('real', 'fake')
  assert f'{tiny_path}: image is 8x8, too small for face detection' in err

  assert cli.main(['predict', *paths[:3], '--json', '--server', server.rest_target, '--rest']) == 0
  answer = json.loads(capsys.readouterr().out)['images']
  assert [len(a['faces']) for a in answer] == [1, 2, 0] and 'no face found' in answer[2]['no_face']
  face = answer[0]['faces'][0]
  assert set(face) == {'box', 'fake_probability', 'label', 'rotation'} and len(face['box']) == 4
  assert abs(face['fake_probability'] - float(lines[0][3].split('=')[1])) < 1e-4


def test_predict_refuses_private_urls(server, capsys):
  for url in ('http://127.0.0.1:1/x.jpg', 'http://169.254.169.254/latest/meta-data',
              'http://10.0.0.1/a.jpg', 'file:///etc/passwd'):
    assert cli.main(['predict', url, '--server', server.grpc_target]) == 1
    err = capsys.readouterr().err
    assert 'refused' in err or 'only http and https' in err, err
