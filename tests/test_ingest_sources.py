"""Listing of FaceExampleGen sources: layouts, splits, vocabularies, duplicates (no Beam)."""

import collections
import os

import pytest

from fakefaces.components.shared import features
from fakefaces.components.face_example_gen import sources
from fakefaces.components.shared.split_hash import unit_hash
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig, load_config

FAIRFACE_HEADER = 'file,age,gender,race,service_test\n'


def _touch(path: str, data: bytes = b'x') -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)
  return path


def _fairface(tmp_path, train_rows, val_rows=None) -> str:
  root = tmp_path / 'fairface'
  root.mkdir()
  (root / 'fairface_label_train.csv').write_text(FAIRFACE_HEADER + ''.join(train_rows))
  if val_rows is not None:
    (root / 'fairface_label_val.csv').write_text(FAIRFACE_HEADER + ''.join(val_rows))
  return str(root)


def _by_id(records):
  return {r.image_id: r for r in records}


def test_fairface_splits_and_demographics(tmp_path):
  train = [f'train/{i}.jpg,20-29,Female,White,FALSE\n' for i in range(400)]
  root = _fairface(tmp_path, train, ['val/1.jpg,3-9,Male,Latino_Hispanic,TRUE\n'])
  config = IngestConfig(sources=[SourceConfig('fairface', root)], eval_fraction=0.2)
  records = sources.list_inputs(config)
  by_id = _by_id(records)
  assert len(records) == 401
  val = by_id['fairface/val/1']
  assert (val.split, val.label, val.gender, val.race, val.age) == (
      features.TEST, features.REAL, 'Male', 'Latino_Hispanic', '3-9')
  assert val.path == os.path.join(root, 'val', '1.jpg')
  splits = collections.Counter(r.split for r in records if r.image_id.startswith('fairface/train'))
  assert set(splits) == {features.TRAIN, features.EVAL}  # train rows never become test
  assert 50 <= splits[features.EVAL] <= 110  # ~20% of 400
  # Deterministic: the same id gets the same split in every run.
  assert [r.split for r in sources.list_inputs(config)] == [r.split for r in records]


@pytest.mark.parametrize('age', ['9-Mar', 'Oct-19'])
def test_fairface_spreadsheet_mangled_ages_are_filtered(tmp_path, age):
  root = _fairface(tmp_path, [f'train/1.jpg,{age},Male,Black,FALSE\n',
                              'train/2.jpg,10-19,Male,Black,FALSE\n'])
  by_id = _by_id(sources.list_inputs(IngestConfig(sources=[SourceConfig('fairface', root)])))
  assert 'mangled by a spreadsheet' in by_id['fairface/train/1'].problem
  assert age in by_id['fairface/train/1'].problem
  assert by_id['fairface/train/2'].problem == ''


def test_values_outside_vocabulary_are_filtered_with_reason(tmp_path):
  manifest = tmp_path / 'm.csv'
  manifest.write_text('path,label,gender,race,age\n'
                      'a.jpg,maybe,Male,White,20-29\n'
                      'b.jpg,fake,male,White,20-29\n'
                      'c.jpg,real,Female,Martian,20-29\n'
                      'd.jpg,1,,,\n')
  by_id = _by_id(sources.list_inputs(IngestConfig(sources=[SourceConfig('manifest',
                                                                        str(manifest))])))
  assert "label 'maybe'" in by_id['manifest/a'].problem
  assert "gender 'male' is not in the FairFace vocabulary" in by_id['manifest/b'].problem
  assert "race 'Martian'" in by_id['manifest/c'].problem
  d = by_id['manifest/d']
  assert (d.problem, d.label, d.gender, d.race, d.age) == ('', features.FAKE, 'unknown',
                                                           'unknown', 'unknown')


def test_fairface_errors_name_the_file_and_column(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='fairface_label_train.csv'):
    sources.list_inputs(IngestConfig(sources=[SourceConfig('fairface', str(empty))]))
  (empty / 'fairface_label_val.csv').write_text('file,gender,race\nval/1.jpg,Male,White\n')
  with pytest.raises(ValueError, match=r"fairface_label_val.csv: CSV lacks column\(s\) \['age'\]"):
    sources.list_inputs(IngestConfig(sources=[SourceConfig('fairface', str(empty))]))


@pytest.mark.parametrize('prefix', ['real_vs_fake/real-vs-fake', 'real-vs-fake', ''])
def test_kaggle140k_accepts_each_layout(tmp_path, prefix):
  root = tmp_path / 'ds'
  for folder in ('train', 'valid', 'test'):
    for label in ('real', 'fake'):
      _touch(str(root / prefix / folder / label / f'{folder}_{label}.jpg'))
  _touch(str(root / prefix / 'train' / 'real' / '.DS_Store'))  # hidden: not an input
  _touch(str(root / prefix / 'train' / 'fake' / 'notes.txt'))
  path = str(root / 'real-vs-fake') if prefix == 'real-vs-fake' else str(root)
  by_id = _by_id(sources.list_inputs(IngestConfig(sources=[SourceConfig('kaggle140k', path)])))
  assert len(by_id) == 7
  assert by_id['kaggle140k/valid/fake/valid_fake'].split == features.EVAL
  assert by_id['kaggle140k/valid/fake/valid_fake'].label == features.FAKE
  assert by_id['kaggle140k/test/real/test_real'].split == features.TEST
  assert by_id['kaggle140k/train/real/train_real'].split == features.TRAIN
  assert 'extension' in by_id['kaggle140k/train/fake/notes'].problem


def test_kaggle140k_wrong_layout_names_expected_folders(tmp_path):
  _touch(str(tmp_path / 'photos' / 'a.jpg'))
  with pytest.raises(ValueError, match='real_vs_fake/real-vs-fake'):
    sources.list_inputs(IngestConfig(sources=[SourceConfig('kaggle140k',
                                                           str(tmp_path / 'photos'))]))


def test_duplicate_image_ids_keep_the_first(tmp_path):
  for name in ('x.jpg', 'x.png', 'y.jpg'):
    _touch(str(tmp_path / 'f' / 'real' / name))
  records = sources.list_inputs(IngestConfig(sources=[
      SourceConfig('folders', str(tmp_path / 'f'), name='s'),
      SourceConfig('folders', str(tmp_path / 'f'), name='s')]))
  assert len(records) == 6
  kept = [r for r in records if not r.problem]
  assert [os.path.basename(r.path) for r in kept] == ['x.jpg', 'y.jpg']
  dups = [r for r in records if r.problem]
  assert all(r.problem.startswith(sources.DUPLICATE_ID) for r in dups)
  assert 'x.jpg' in dups[0].problem  # names the kept file


def test_unknown_kind_and_missing_path_are_named(tmp_path):
  with pytest.raises(ValueError, match=r"sources\[0\].kind 'celeba'"):
    sources.list_inputs(IngestConfig(sources=[SourceConfig('celeba', str(tmp_path))]))
  with pytest.raises(ValueError, match='does not exist: .*nowhere'):
    sources.list_inputs(IngestConfig(sources=[SourceConfig('folders', str(tmp_path / 'nowhere'))]))


def test_the_split_hash_is_pinned():
  # Every dataset ingested so far was split by these numbers: a different hash would move
  # photos between train and test of datasets already used, so it must never change.
  assert unit_hash('1000.jpg') == pytest.approx(0.24497258785296525, abs=1e-15)
  assert unit_hash('sample/1000.jpg') == pytest.approx(0.5945053504767142, abs=1e-15)
  assert sources.hash_split('1000.jpg', eval_fraction=0.1, test_fraction=0.1) == features.TRAIN
  assert sources.hash_split('1000.jpg', eval_fraction=0.1, test_fraction=0.25) == features.TEST


def test_limit_per_source_is_a_deterministic_sample(tmp_path):
  for i in range(50):
    _touch(str(tmp_path / 'f' / 'fake' / f'{i}.jpg'))
  config = IngestConfig(sources=[SourceConfig('folders', str(tmp_path / 'f'))], limit_per_source=10)
  first = [r.image_id for r in sources.list_inputs(config)]
  assert len(first) == 10 and first == [r.image_id for r in sources.list_inputs(config)]
  assert first != sorted(first)[:10] or len(set(first)) == 10


def test_yaml_sources_load(tmp_path):
  config_file = tmp_path / 'c.yaml'
  config_file.write_text('ingest:\n  sources:\n'
                         '    - {kind: fairface, path: data/fairface}\n'
                         '    - {kind: kaggle140k, path: /data/140k, name: k140}\n'
                         '  face: {detector: hog+cnn}\n  limit_per_source: 5\n')
  config = load_config(str(config_file))
  assert config.ingest.sources[0].path.endswith(os.path.join('data', 'fairface'))
  assert config.ingest.sources[1].name == 'k140'
  assert config.ingest.limit_per_source == 5


def test_real_layouts_list_completely(faces_data):
  records = sources.list_inputs(IngestConfig(sources=[
      SourceConfig('fairface', os.path.join(faces_data, 'fairface')),
      SourceConfig('kaggle140k', os.path.join(faces_data, 'gan_faces'))]))
  counts = collections.Counter((r.source, r.split, r.label) for r in records)
  assert not [r for r in records if r.problem]
  assert counts[('fairface', features.TEST, features.REAL)] == 602
  assert (counts[('fairface', features.TRAIN, features.REAL)] +
          counts[('fairface', features.EVAL, features.REAL)]) == 3010
  for split, n in ((features.TRAIN, 1600), (features.EVAL, 300), (features.TEST, 300)):
    assert counts[('kaggle140k', split, features.REAL)] == n
    assert counts[('kaggle140k', split, features.FAKE)] == n
  assert all(os.path.isfile(r.path) for r in records[::97])


def test_source_align_overrides_ingest_align(tmp_path):
  """An already-aligned source (`align: none`) is taken as it is; the others still go through dlib.

  The same faceless image in two sources: dlib finds no face in it, `align: none`
  keeps its centred square, so each outcome shows which path its record took.
  """
  import io

  import numpy as np
  import tensorflow as tf
  from PIL import Image

  from fakefaces.components.face_example_gen import executor

  blobs = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
  smooth = np.asarray(blobs.resize((128, 128), Image.BICUBIC))  # JPEG keeps it closely
  for name in ('aligned', 'photos'):
    path = tmp_path / name / 'fake' / 'a.png'
    path.parent.mkdir(parents=True)
    Image.fromarray(smooth).save(path)
  config = IngestConfig(face=FacePreparation(output_size=128, detector='hog'), sources=[
      SourceConfig('folders', str(tmp_path / 'aligned'), name='aligned', align='none'),
      SourceConfig('folders', str(tmp_path / 'photos'), name='photos')])
  records = sources.list_inputs(config)
  assert [r.align for r in records] == ['none', '']
  processor = executor.FaceProcessor(config)
  aligned, photo = processor.process_many(records)
  assert (aligned.outcome, photo.outcome) == (executor.WRITTEN, executor.NO_FACE)
  example = tf.train.Example.FromString(aligned.example)
  stored = np.asarray(Image.open(io.BytesIO(
      example.features.feature[features.IMAGE].bytes_list.value[0])))
  assert stored.shape == (128, 128, 3)
  assert np.abs(stored.astype(int) - smooth).mean() < 3  # the image itself, JPEG q95

  with pytest.raises(ValueError, match=r"sources\[0\].align 'ffhq'"):
    sources.list_inputs(IngestConfig(sources=[
        SourceConfig('folders', str(tmp_path / 'aligned'), align='ffhq')]))
