"""Bad inputs through the FaceExampleGen executor (Beam DirectRunner).

One ingestion run over a manifest of generated troublemakers (all made here,
in tmp): every file must end in exactly one outcome, named in report.json, and
the good-but-unusual ones (alpha, grey, CMYK, 16-bit, non-ASCII name) must be
written as proper 8-bit RGB JPEGs.
"""

import csv
import glob
import io
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_example_gen import executor
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig, from_dict

OUTPUT_SIZE = 64
NON_ASCII_NAME = 'visage_é_顔.jpg'


def _save(image: Image.Image, path: str, **kwargs) -> None:
  image.save(path, **kwargs)


def _png_with_header_size(width: int, height: int) -> bytes:
  """A tiny valid PNG whose IHDR claims width x height (the pixels are never there)."""
  buf = io.BytesIO()
  Image.new('RGB', (4, 4), (10, 20, 30)).save(buf, format='PNG')
  data = bytearray(buf.getvalue())
  ihdr = 8  # after the signature: length(4) 'IHDR'(4) data(13) crc(4)
  data[ihdr + 8:ihdr + 16] = struct.pack('>II', width, height)
  crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])) & 0xFFFFFFFF
  data[ihdr + 21:ihdr + 25] = struct.pack('>I', crc)
  return bytes(data)


def _make_inputs(root: str):
  """Writes the files and returns manifest rows (path, label, gender, race, age)."""
  os.makedirs(root, exist_ok=True)
  p = lambda name: os.path.join(root, name)  # noqa: E731
  face = Image.fromarray(np.random.RandomState(0).randint(0, 255, (80, 100, 3), np.uint8))
  _save(face, p('good.jpg'), quality=90)
  open(p('empty.jpg'), 'wb').close()
  jpeg = io.BytesIO()
  face.save(jpeg, format='JPEG', quality=90)
  with open(p('truncated.jpg'), 'wb') as f:
    f.write(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
  alpha = Image.new('RGBA', (60, 60), (0, 0, 0, 0))  # transparent black...
  alpha.paste((200, 30, 30, 255), (20, 20, 40, 40))  # ...around an opaque red square
  _save(alpha, p('alpha.png'))
  _save(Image.new('L', (50, 70), 90), p('gray.jpg'))
  _save(Image.new('RGB', (48, 48), (220, 20, 20)).convert('CMYK'), p('cmyk.jpg'))
  deep = np.full((40, 40), 40000, dtype=np.uint16)  # 16-bit grey at 61% of full scale
  _save(Image.fromarray(deep), p('deep16.png'))
  assert Image.open(p('deep16.png')).mode.startswith('I')
  with open(p('huge.png'), 'wb') as f:  # over our 64 Mpx limit, under PIL's own
    f.write(_png_with_header_size(9000, 9000))
  with open(p('bomb.png'), 'wb') as f:  # over PIL's decompression-bomb error limit too
    f.write(_png_with_header_size(60000, 60000))
  with open(p('notes.jpg'), 'w') as f:
    f.write('this is not a JPEG, just a text file with a .jpg name\n')
  _save(face, p(NON_ASCII_NAME))
  _save(face, p('dup.jpg'))
  _save(face, p('dup.png'))  # same image_id as dup.jpg: 'bad/dup'
  ok = ('Female', 'Black', '30-39')
  return [
      ('good.jpg', 'real') + ok, ('empty.jpg', 'fake') + ok, ('truncated.jpg', 'real') + ok,
      ('alpha.png', 'fake') + ok, ('gray.jpg', 'real') + ok, ('cmyk.jpg', 'fake') + ok,
      ('deep16.png', 'real') + ok, ('huge.png', 'real') + ok, ('bomb.png', 'real') + ok,
      ('notes.jpg', 'fake') + ok, (NON_ASCII_NAME, 'fake', 'Male', 'Indian', 'more than 70'),
      ('missing.jpg', 'real') + ok, ('good.jpg', 'probably', 'Female', 'Black', '30-39'),
      ('gray.jpg', 'real', 'Female', 'Klingon', '30-39'), ('good.jpg', 'real', 'Female', 'Black',
                                                           '9-Mar'),
      ('dup.jpg', 'real') + ok, ('dup.png', 'real') + ok,
  ]


@pytest.fixture(scope='module')
def bad_run(tmp_path_factory):
  """One executor run over every troublemaker; returns (report, outcome by row, examples)."""
  tmp = tmp_path_factory.mktemp('bad_inputs')
  images_dir = str(tmp / 'in')
  rows = _make_inputs(images_dir)
  # Rows reusing one file need distinct paths (= image ids) to test only their own problem.
  manifest = os.path.join(images_dir, 'manifest.csv')
  with open(manifest, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'label', 'gender', 'race', 'age'])
    for i, row in enumerate(rows):
      writer.writerow([row[0] if i < 12 or i >= 15 else f'sub{i}/../{row[0]}'] + list(row[1:]))
  config = IngestConfig(sources=[SourceConfig('manifest', manifest, name='bad')],
                        face=FacePreparation(align='none', output_size=OUTPUT_SIZE),
                        max_failure_rate=1.0)
  report = executor.run_standalone(config, str(tmp / 'out'))
  by_name = {}
  for item in report['not_written']:
    by_name[item['image_id']] = item
  examples = {}
  for path in glob.glob(str(tmp / 'out' / 'examples' / 'Split-*' / '*.gz')):
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      image_id = example.features.feature[features.IMAGE_ID].bytes_list.value[0].decode('utf-8')
      examples[image_id] = example
  return report, by_name, examples


def _not_written(bad_run, image_id):
  _, by_id, examples = bad_run
  assert image_id not in examples, f'{image_id} was written'
  return by_id[image_id]


def _written_image(bad_run, image_id) -> np.ndarray:
  _, by_id, examples = bad_run
  assert image_id not in by_id, by_id.get(image_id)
  encoded = examples[image_id].features.feature[features.IMAGE].bytes_list.value[0]
  image = Image.open(io.BytesIO(encoded))
  assert (image.format, image.mode, image.size) == ('JPEG', 'RGB', (OUTPUT_SIZE, OUTPUT_SIZE))
  return np.asarray(image, dtype=np.float64)


def test_every_input_has_exactly_one_outcome(bad_run):
  report, by_id, examples = bad_run
  assert report['total'] == 17
  assert sum(report['counts'].values()) == 17
  assert report['counts'][executor.WRITTEN] == len(examples)
  assert len(report['not_written']) == 17 - len(examples)
  assert report['by_source']['bad'] == report['counts']
  # Only the duplicate id is both written (first file) and not written (second file).
  assert set(by_id) & set(examples) == {'bad/dup'}


def test_zero_byte_file(bad_run):
  item = _not_written(bad_run, 'bad/empty')
  assert (item['outcome'], item['reason']) == ('unreadable', 'file is empty (0 bytes)')
  assert item['path'].endswith('empty.jpg')


def test_truncated_jpeg(bad_run):
  item = _not_written(bad_run, 'bad/truncated')
  assert item['outcome'] == 'unreadable'
  assert 'truncated' in item['reason']


def test_png_with_alpha_is_flattened_on_white(bad_run):
  pixels = _written_image(bad_run, 'bad/alpha')
  assert pixels[2, 2].min() > 240  # transparent corner: white, not the hidden black
  assert pixels[OUTPUT_SIZE // 2, OUTPUT_SIZE // 2, 0] > 150  # opaque red centre survives
  assert pixels[OUTPUT_SIZE // 2, OUTPUT_SIZE // 2, 1] < 80


def test_grayscale_becomes_rgb(bad_run):
  pixels = _written_image(bad_run, 'bad/gray')
  assert abs(pixels.mean() - 90) < 3


def test_cmyk_jpeg_keeps_its_colour(bad_run):
  pixels = _written_image(bad_run, 'bad/cmyk')
  red, green = pixels[..., 0].mean(), pixels[..., 1].mean()
  assert red > 180 and green < 70, (red, green)


def test_16bit_png_is_scaled_not_clipped(bad_run):
  pixels = _written_image(bad_run, 'bad/deep16')
  assert abs(pixels.mean() - 40000 / 65535 * 255) < 3  # ~156, not 255


def test_enormous_dimensions_are_refused_before_decoding(bad_run):
  item = _not_written(bad_run, 'bad/huge')
  assert item['outcome'] == 'filtered'
  assert '9000x9000' in item['reason'] and 'decompression-bomb' in item['reason']
  bomb = _not_written(bad_run, 'bad/bomb')
  assert bomb['outcome'] == 'filtered' and 'decompression-bomb' in bomb['reason']


def test_non_image_with_jpg_name(bad_run):
  item = _not_written(bad_run, 'bad/notes')
  assert item['outcome'] == 'unreadable'
  assert 'not a readable image' in item['reason']


def test_non_ascii_path_round_trips(bad_run):
  _written_image(bad_run, 'bad/' + os.path.splitext(NON_ASCII_NAME)[0])
  example = bad_run[2]['bad/' + os.path.splitext(NON_ASCII_NAME)[0]]
  values = {k: example.features.feature[k].bytes_list.value[0].decode('utf-8')
            for k in (features.GENDER, features.RACE, features.AGE)}
  assert values == {'gender': 'Male', 'race': 'Indian', 'age': 'more than 70'}


def test_manifest_row_for_missing_file(bad_run):
  item = _not_written(bad_run, 'bad/missing')
  assert (item['outcome'], item['reason']) == ('unreadable', 'file not found')
  assert item['path'].endswith('missing.jpg')


def test_label_and_demographics_outside_vocabulary(bad_run):
  label = _not_written(bad_run, 'bad/sub12/../good')
  assert label['outcome'] == 'filtered' and "label 'probably'" in label['reason']
  race = _not_written(bad_run, 'bad/sub13/../gray')
  assert race['outcome'] == 'filtered' and "race 'Klingon'" in race['reason']
  age = _not_written(bad_run, 'bad/sub14/../good')
  assert age['outcome'] == 'filtered' and 'mangled' in age['reason']
  assert bad_run[0]['by_split_label']  # filtered rows are counted per split and label too


def test_duplicate_image_ids(bad_run):
  report, _, examples = bad_run
  assert 'bad/dup' in examples
  dups = [i for i in report['not_written'] if i['reason'].startswith('duplicate image_id')]
  assert len(dups) == 1 and dups[0]['path'].endswith('dup.png')
  assert 'dup.jpg' in dups[0]['reason']


def test_failure_rate_over_limit_fails_with_clear_message(bad_run, tmp_path):
  report = bad_run[0]
  config = IngestConfig(max_failure_rate=0.2)
  with pytest.raises(RuntimeError) as error:
    executor.check_report(report, config, '/some/report.json')
  message = str(error.value)
  assert f"{report['total'] - report['counts']['written']} of 17 inputs were not written" in message
  assert 'max_failure_rate 20.0%' in message and '/some/report.json' in message
  executor.check_report(report, IngestConfig(max_failure_rate=0.9), '/some/report.json')


def test_invalid_config_is_named():
  with pytest.raises(ValueError, match="ingest.face.detector 'fast'"):
    from_dict(IngestConfig, {'face': {'detector': 'fast'}}, 'ingest')
  with pytest.raises(ValueError, match="ingest.face.align 'mtcnn'"):
    from_dict(IngestConfig, {'face': {'align': 'mtcnn'}}, 'ingest')
