"""Source shortcut: the DataGate stops training data whose labels a model
could learn from the source, and `audit` sources never reach the Trainer.

Planted data: every image is the same kind of smooth random texture; only the
processing differs between sources, as between FairFace (224 px loose crops,
original JPEG) and FFHQ thumbnails (128 px, re-encoded). 'studio' images are
encoded once at JPEG quality 95; 'web' images are downscaled 2x, upscaled and
encoded at quality 30. The pipeline runs are real (ImportExampleGen,
StatisticsGen, ExampleValidator, DataGate on LocalDagRunner).
"""

import dataclasses
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFilter

from fakefaces.components.shared import features
from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.data_gate import executor, shortcut
from fakefaces.components.data_gate.config import SourceShortcutConfig
from fakefaces.components.face_example_gen import executor as ingest_executor
from fakefaces.components.face_example_gen import sources
from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig
from fakefaces.components.face_preparation.faces import FacePreparation, FacePreparer
from fakefaces.components.face_example_gen.executor import make_example
from fakefaces.components.face_example_gen.sources import InputRecord
from fakefaces.pipeline import config as config_lib
from test_data_validation import _gate_report, _ran, _run, _write  # the DataGate test harness

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

SIDE = 64


def _texture(seed: int) -> Image.Image:
  pixels = np.random.RandomState(seed).randint(0, 255, (SIDE, SIDE), dtype=np.uint8)
  return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)).convert('RGB')


def _encode(image: Image.Image, quality: int) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def _processed(seed: int, source: str) -> bytes:
  image = _texture(seed)
  if source == 'web':  # another processing history: resampled, strongly compressed
    image = image.resize((SIDE // 2, SIDE // 2), Image.BILINEAR).resize((SIDE, SIDE),
                                                                       Image.BILINEAR)
    return _encode(image, 30)
  return _encode(image, 95)


def _example(i: int, label: int, source: str) -> tf.train.Example:
  record = InputRecord(path='', source=source, image_id=f'{source}-{i:05d}', label=label,
                       split='', gender=features.GENDERS[i % 2],
                       race=features.RACES[(i // 2) % len(features.RACES)],
                       age=features.AGES[i % len(features.AGES)])
  return make_example(record, _processed(i, source), face_size=SIDE)


def _split(start: int, n: int, strata):
  """n examples cycling through the (label, source) strata."""
  return [_example(start + i, *strata[i % len(strata)]) for i in range(n)]


def _records(examples):
  for example in examples:
    f = example.features.feature
    yield {name: (f[name].int64_list.value[0] if name in (features.LABEL, features.FACE_SIZE)
                  else f[name].bytes_list.value[0])
           for name in (features.LABEL, features.IMAGE, features.SOURCE, features.IMAGE_ID,
                        features.FACE_SIZE)}


REAL, FAKE = features.REAL, features.FAKE


# ------------------------------------------------------------- the check alone


def test_probe_tells_differently_processed_sources_apart_but_not_equal_ones():
  config = SourceShortcutConfig(max_examples_per_source=60)
  # web: 3 reals per fake, studio: 1 per fake -> the source predicts the label.
  report = shortcut.check_source_shortcut(
      _records(_split(0, 300, [(REAL, 'studio'), (REAL, 'web'), (FAKE, 'studio'),
                               (REAL, 'web'), (REAL, 'web'), (FAKE, 'web')])), config)
  assert report['missing_sources'] == [] and not report['disjoint']
  aucs = {row['class']: row['auc'] for row in report['pairs']}
  assert aucs['real'] > 0.95 and aucs['fake'] > 0.95, report['pairs']
  assert report['fake_share'] == {'studio': 0.5, 'web': 0.25}
  assert not report['passed'] and 'a linear probe tells studio from web' in report['findings'][0]

  # Separable, but half of each source is fake: the source says nothing about the label.
  balanced = shortcut.check_source_shortcut(
      _records(_split(0, 240, [(REAL, 'studio'), (REAL, 'web'), (FAKE, 'studio'),
                               (FAKE, 'web')])), config)
  assert {row['status'] for row in balanced['pairs']} == {shortcut.SEPARABLE_BALANCED}
  assert min(row['auc'] for row in balanced['pairs']) > 0.95
  assert balanced['passed'], balanced['findings']

  # Two sources processed identically: nothing to learn from the source.
  same = [_example(i, (REAL, FAKE)[i % 2], ('studio', 'studio2')[(i // 2) % 2])
          for i in range(240)]
  for example in same:  # 'studio2' is 'studio' under another name
    assert example.features.feature[features.SOURCE].bytes_list.value[0] in (b'studio',
                                                                             b'studio2')
  report = shortcut.check_source_shortcut(_records(same), config)
  assert report['passed'], report['findings']
  assert all(row['auc'] < 0.75 for row in report['pairs']), report['pairs']


def test_a_class_with_a_source_the_other_lacks_is_named():
  examples = _split(0, 90, [(REAL, 'studio'), (REAL, 'web'), (FAKE, 'web')])
  report = shortcut.check_source_shortcut(_records(examples), SourceShortcutConfig())
  assert report['missing_sources'] == [{'class': 'real', 'sources': ['studio'],
                                        'missing_from': 'fake'}]
  assert any("source(s) ['studio'] that have no fake examples" in f for f in report['findings'])


def test_too_few_examples_is_insufficient_evidence_not_a_pass():
  examples = _split(0, 40, [(REAL, 'studio'), (FAKE, 'studio')]) + [
      _example(100 + i, label, 'web') for i, label in enumerate([REAL, FAKE] * 3)]
  report = shortcut.check_source_shortcut(_records(examples), SourceShortcutConfig())
  assert [row['status'] for row in report['pairs']] == [shortcut.INSUFFICIENT] * 2
  assert not report['passed']


@pytest.mark.parametrize('field,value', [('on_shortcut', 'ignore'), ('max_probe_auc', 0.4),
                                         ('folds', 1), ('min_examples_per_source', 3),
                                         ('max_fake_share_gap', 1.5), ('reference_z', -1.0),
                                         ('max_one_class_auc', 0.7), ('max_copies_drop', 1.5)])
def test_bad_config_names_the_field(field, value):
  config = dataclasses.replace(config_lib.ValidationConfig(), source_shortcut=dataclasses.replace(
      SourceShortcutConfig(), **{field: value}))
  with pytest.raises(ConfigError, match=f'validation.source_shortcut.{field}'):
    executor.check_config(config)


# --------------------------------------------------------- the real pipeline


def _planted_data(root, strata, n=120):
  data = root / 'data'
  for index, split in enumerate(features.SPLITS):
    _write(str(data / split / 'r.tfrecord'), _split(1000 * index, n, strata))
  return data


def test_pipeline_stops_when_reals_and_fakes_come_from_different_sources(tmp_path):
  data = _planted_data(tmp_path, [(REAL, 'studio'), (FAKE, 'web')])
  with pytest.raises(executor.SourceShortcutError) as error:
    _run(tmp_path, data, config_lib.ValidationConfig())
  message = str(error.value)
  assert "real and fake examples come from disjoint sources (['studio'] vs ['web'])" in message
  assert "source(s) ['studio'] that have no fake examples" in message
  assert "split 'train'" in message
  assert not _ran(tmp_path, 'SchemaGen'), 'the step after the gate ran despite the shortcut'

  # on_shortcut: warn lets it through and keeps the finding in the report.
  warn = config_lib.ValidationConfig(source_shortcut=SourceShortcutConfig(on_shortcut='warn'))
  _run(tmp_path, data, warn)
  report = _gate_report(tmp_path)
  assert report['passed'] is True and report['source_shortcut']['disjoint'] is True
  assert report['source_shortcut']['sources_by_class'] == {'real': {'studio': 60},
                                                           'fake': {'web': 60}}


def test_pipeline_passes_when_both_classes_share_sources(tmp_path):
  # Both classes from both sources, each source processed the same way in both classes.
  strata = [(REAL, 'studio'), (FAKE, 'studio'), (REAL, 'studio2'), (FAKE, 'studio2')]
  data = _planted_data(tmp_path, strata)
  _run(tmp_path, data, config_lib.ValidationConfig(
      source_shortcut=SourceShortcutConfig(min_examples_per_source=20)))
  assert _ran(tmp_path, 'SchemaGen')
  section = _gate_report(tmp_path)['source_shortcut']
  assert section['passed'] and section['findings'] == []
  assert {row['class'] for row in section['pairs']} == {'real', 'fake'}
  assert all(row['auc'] is not None and row['auc'] < 0.8 for row in section['pairs'])


# -------------------------------------------------------------- audit sources


def _image_folder(root, name, n, label_dirs=('real', 'fake')):
  for k, label in enumerate(label_dirs):
    folder = root / name / label
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
      with open(folder / f'{label}-{i}.jpg', 'wb') as f:
        f.write(_processed(len(name) * 1000 + k * 100 + i, 'studio'))
  return str(root / name)


def test_audit_source_never_reaches_the_trainer(tmp_path):
  config = IngestConfig(
      sources=[SourceConfig(kind='folders', path=_image_folder(tmp_path, 'trainable', 20),
                            name='trainable'),
               SourceConfig(kind='folders', path=_image_folder(tmp_path, 'judged', 20, ('real',)),
                            name='judged', role='audit')],
      face=FacePreparation(align='none', output_size=32), eval_fraction=0.2, test_fraction=0.2)
  listed = sources.list_inputs(config)
  assert {r.split for r in listed if r.source == 'judged'} == {features.TEST}
  assert {r.split for r in listed if r.source == 'trainable'} == set(features.SPLITS)
  report = ingest_executor.run_standalone(config, str(tmp_path / 'out'),
                                          ['--direct_running_mode=in_memory'])
  assert report['counts']['written'] == 60
  by_split = {}
  for split in features.SPLITS:
    files = tf.io.gfile.glob(str(tmp_path / 'out' / 'examples' / f'Split-{split}' / '*'))
    for raw in tf.data.TFRecordDataset(files, compression_type='GZIP'):
      example = tf.train.Example.FromString(raw.numpy())
      source = example.features.feature[features.SOURCE].bytes_list.value[0].decode()
      by_split.setdefault(split, set()).add(source)
  # What the Trainer reads (train, eval) holds no audit image; the test split judges them.
  assert by_split[features.TRAIN] == {'trainable'} and by_split[features.EVAL] == {'trainable'}
  assert 'judged' in by_split[features.TEST]


def test_unknown_role_names_the_field(tmp_path):
  config = IngestConfig(sources=[SourceConfig(kind='folders', path=str(tmp_path), role='judge')])
  with pytest.raises(ValueError, match=r'ingest.sources\[0\].role'):
    sources.list_inputs(config)


# ------------------------------------------------- sources of one class only


def _fakes_only(i: int, processing: str) -> tf.train.Example:
  """A fake of a one-class source: other content (a bright blob, what the detector should
  learn), and `processing` 'matched' (as the 'studio' reals), 'jpeg' (compressed at quality 30
  before the same final encoding) or 'size' (a face twice as large in its source, resized)."""
  side = SIDE * 2 if processing == 'size' else SIDE
  pixels = np.random.RandomState(50000 + i).randint(0, 255, (side, side), dtype=np.uint8)
  image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(side / SIDE * 2))
  yy, xx = np.mgrid[:side, :side]
  blob = 90 * np.exp(-((yy - side * 0.4) ** 2 + (xx - side * 0.6) ** 2) / (2 * (side / 5) ** 2))
  image = Image.fromarray(np.clip(np.asarray(image, np.float32) + blob, 0, 255).astype(np.uint8))
  image = image.convert('RGB')
  if processing == 'size':
    image = image.resize((SIDE, SIDE), Image.BILINEAR)
  if processing == 'jpeg':
    image = Image.open(io.BytesIO(_encode(image, 30)))
  record = InputRecord(path='', source='sdfd', image_id=f'sdfd-{i:05d}', label=FAKE, split='')
  return make_example(record, _encode(image, 95), face_size=side)


def _with_fakes_only_source(processing: str, n: int = 180):
  """Reals and fakes of 'studio' (both classes), and fakes of 'sdfd' only."""
  examples = _split(0, n, [(REAL, 'studio'), (FAKE, 'studio'), (REAL, 'studio')])
  return examples + [_fakes_only(i, processing) for i in range(n // 3)]


def test_a_fakes_only_source_passes_when_its_processing_matches_the_reals():
  config = SourceShortcutConfig(max_examples_per_source=60)
  report = shortcut.check_source_shortcut(_records(_with_fakes_only_source('matched')), config)
  assert report['missing_sources'] == [{'class': 'fake', 'sources': ['sdfd'],
                                        'missing_from': 'real'}]
  [row] = report['single_class_sources']
  assert row['status'] == shortcut.PROCESSING_MATCHED, row
  assert 'by design (the detection task)' in row['case']
  # Its content is told apart from the other fakes' (the probe on pixels): not a shortcut
  # of processing, and the pair is balanced in neither direction that matters here.
  assert report['passed'], report['findings']


@pytest.mark.parametrize('processing, named', [('jpeg', 'jpeg_history'), ('size', 'size')])
@pytest.mark.parametrize('with_reference', [False, True])
def test_a_fakes_only_source_is_refused_when_only_its_processing_differs(processing, named,
                                                                         with_reference):
  # Without a reference ('studio' is the only two-class source and the pools leave it out)
  # the bound is max_probe_auc; beside two two-class collections, the reference's.
  config = SourceShortcutConfig(max_examples_per_source=60)
  examples = (_three_collections if with_reference else _with_fakes_only_source)(processing)
  report = shortcut.check_source_shortcut(_records(examples), config)
  [row] = report['single_class_sources']
  assert (row['reference'] is not None) == with_reference, row
  assert row['status'] == shortcut.PROCESSING_DIFFERS, row
  assert row['auc_by_features'][named] > row['needed'] >= config.max_probe_auc
  assert named in row['case']
  assert not report['passed']
  assert any("source(s) ['sdfd'] that have no real examples, and their processing differs"
             in f for f in report['findings'])


def test_pipeline_passes_a_fakes_only_source_processed_like_the_reals(tmp_path):
  data = tmp_path / 'data'
  for index, split in enumerate(features.SPLITS):
    _write(str(data / split / 'r.tfrecord'),
           _split(1000 * index, 90, [(REAL, 'studio'), (FAKE, 'studio'), (REAL, 'studio')])
           + [_fakes_only(1000 * index + i, 'matched') for i in range(30)])
  _run(tmp_path, data, config_lib.ValidationConfig(
      source_shortcut=SourceShortcutConfig(min_examples_per_source=20)))
  assert _ran(tmp_path, 'SchemaGen')
  section = _gate_report(tmp_path)['source_shortcut']
  assert section['passed'] and section['findings'] == []
  assert [row['status'] for row in section['single_class_sources']] == [
      shortcut.PROCESSING_MATCHED]


def _prepared_by_ingestion(shared_jpeg_quality: int, n: int = 180):
  """Crops as ingestion prepares them (FacePreparer, align 'none', final JPEG at quality 95)
  under `shared_jpeg_quality`, mirroring the shared data: 'thumbs' reals and fakes are
  SIDE px JPEGs at quality 75 (gan_faces' FFHQ thumbnails: their 8x8 grid survives), 'sdfd'
  fakes are the same kind of texture stored 4x larger at quality 95 (SDFD's 768 px photos:
  the downsizing to SIDE px leaves no grid)."""
  preparer = FacePreparer(FacePreparation(align='none', output_size=SIDE,
                                          shared_jpeg_quality=shared_jpeg_quality))
  out = []
  for i in range(n + n // 3):
    source, label = ('thumbs', (REAL, FAKE, REAL)[i % 3]) if i < n else ('sdfd', FAKE)
    image = _texture(i)
    stored = (_encode(image, 75) if source == 'thumbs' else
              _encode(image.resize((SIDE * 4, SIDE * 4), Image.BICUBIC), 95))
    [face] = preparer.prepare_image(preparer.decode(stored)).faces
    record = InputRecord(path='', source=source, image_id=f'{source}-{i:05d}', label=label,
                         split='')
    out.append(make_example(record, face.encoded, face_size=0))  # align 'none' records no size
  return out


def test_the_shared_jpeg_generation_matches_a_downsized_fakes_only_source_to_jpeg_reals():
  # pipeline/configs/shared_data_clip.yaml's SDFD: without a shared JPEG generation the
  # downsized fakes carry no 8x8 grid and the reals do; one generation at the reals' own
  # quality gives every crop the same last-but-one compression.
  config = SourceShortcutConfig(max_examples_per_source=60)
  as_stored = shortcut.check_source_shortcut(_records(_prepared_by_ingestion(0)), config)
  [row] = as_stored['single_class_sources']
  assert row['status'] == shortcut.PROCESSING_DIFFERS, row
  assert 'size' not in row['auc_by_features']  # align 'none': no source size to compare
  assert row['auc_by_features']['jpeg_history'] > config.max_probe_auc
  shared = shortcut.check_source_shortcut(_records(_prepared_by_ingestion(75)), config)
  [row] = shared['single_class_sources']
  assert row['status'] == shortcut.PROCESSING_MATCHED, row
  assert shared['passed'], shared['findings']


# ------------------------------- the reference: a collection whose classes share processing


FIRST_JPEG = {'jpeg': 30, 'jpeg90': 90}  # processing -> quality of a JPEG generation before the last


def _collection(i: int, blur: float, label: int, source: str,
                processing: str = 'matched', stored: int = SIDE) -> tf.train.Example:
  """A texture of one collection (its own blur: content statistics a source's photos share),
  `stored` px, processed like every other source (`processing` 'matched') or with one planted
  difference as `_fakes_only`'s ('jpeg': quality 30 first, 'jpeg90': 90 first; 'size': twice
  as large in its source)."""
  side = stored * 2 if processing == 'size' else stored
  pixels = np.random.RandomState(70000 + i).randint(0, 255, (side, side), dtype=np.uint8)
  image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(blur * side / SIDE))
  image = image.convert('RGB')
  if processing == 'size':
    image = image.resize((stored, stored), Image.BILINEAR)
  if processing in FIRST_JPEG:
    image = Image.open(io.BytesIO(_encode(image, FIRST_JPEG[processing])))
  record = InputRecord(path='', source=source, image_id=f'{source}-{i:05d}', label=label,
                       split='')
  return make_example(record, _encode(image, 95), face_size=side)


def _three_collections(processing: str, n: int = 60, stored: int = SIDE,
                       sdfd_blur: float = 2.65):
  """'studio' (blur 2.0) and 'other' (2.4) hold both classes; 'sdfd' (2.65) only fakes.

  Every image gets the same final JPEG at 95: the collections differ in content only,
  and the JPEG-history features read that too (studio's reals against other's fakes:
  AUC 0.93; sdfd against the reals pooled: 0.88, over max_probe_auc 0.8).
  """
  examples = []
  for k in range(n):
    examples += [_collection(k, 2.0, REAL, 'studio', stored=stored),
                 _collection(1000 + k, 2.0, FAKE, 'studio', stored=stored),
                 _collection(2000 + k, 2.4, REAL, 'other', stored=stored),
                 _collection(3000 + k, 2.4, FAKE, 'other', stored=stored),
                 _collection(4000 + k, sdfd_blur, FAKE, 'sdfd', processing, stored)]
  return examples


def test_a_fakes_only_collection_processed_alike_passes_beside_an_equally_distinct_one():
  config = SourceShortcutConfig(max_examples_per_source=60)
  report = shortcut.check_source_shortcut(_records(_three_collections('matched')), config)
  [row] = report['single_class_sources']
  # Above the bound alone (the rule without a reference would stop it) ...
  assert row['auc'] > config.max_probe_auc, row
  assert row['status'] == shortcut.PROCESSING_MATCHED and row['margin'] > 0, row
  # ... and no further from the reals than a collection whose classes share processing.
  assert {(r['source'], r['class']) for r in row['references']} == {
      ('studio', 'real'), ('studio', 'fake'), ('other', 'real'), ('other', 'fake')}
  reference = min(row['references'], key=lambda r: r['auc'])
  assert row['reference']['auc'] == reference['auc'] > config.max_probe_auc
  assert row['verdict'].startswith(f"sdfd (fakes only) against the reals: {row['auc']:.2f}; "
                                   f"{reference['source']}'s {reference['class']}s against "
                                   f"the other {reference['against']}s")
  assert 'processing matched' in row['verdict']
  assert report['passed'], report['findings']


def test_the_rule_against_a_reference():
  """needed_auc: no reference, a reference + z SE, and its bounds on either side."""
  config = SourceShortcutConfig()
  assert shortcut.needed_auc(0.02, None, config) == config.max_probe_auc
  # 0.8 + 1.645 x the SE of the difference, sqrt(0.02^2 + 0.02^2).
  assert shortcut.needed_auc(0.02, {'auc': 0.8, 'se': 0.02}, config) == pytest.approx(
      0.8 + 1.645 * np.hypot(0.02, 0.02))
  assert shortcut.needed_auc(0.0, {'auc': 0.6, 'se': 0.01}, config) == config.max_probe_auc
  assert shortcut.needed_auc(0.0, {'auc': 0.99, 'se': 0.01}, config) == config.max_one_class_auc

  rng = np.random.RandomState(0)
  apart = rng.normal(4.0, 1.0, (60, 5)).astype(np.float32), rng.normal(0, 1, (60, 5))
  without = shortcut.single_class_source('fake', 'sdfd', 'real', *apart, config)
  assert without['auc'] == 1.0 and without['status'] == shortcut.PROCESSING_DIFFERS
  assert 'no source in the split holds both classes' in without['verdict']
  # A reference the features cannot go above leaves the judgement to the one-class bound.
  reference = {'source': 'k140', 'class': 'real', 'against': 'fake', 'auc': 0.995, 'se': 0.004,
               'probed': [60, 60]}
  far = shortcut.single_class_source('fake', 'sdfd', 'real', *apart, config, [reference])
  assert far['status'] == shortcut.PROCESSING_DIFFERS and far['needed'] == 0.9
  assert 'which judges' in far['finding']


# ------------------------------------------------------ processing-matched copies


def test_a_jpeg_history_the_reference_passes_is_refused_by_the_copies_drop():
  # 128 px crops, so the copies' 101 px is a reduction (as for the shared data's crops);
  # sdfd holds other's content with one JPEG generation at 90 before the final one at 95.
  # With max_one_class_auc 1 the reference judges alone, and it passes sdfd (AUC 1.00,
  # threshold 1.00); the copies (one fresh generation for all) take it to 0.69.
  config = SourceShortcutConfig(max_examples_per_source=60, max_one_class_auc=1.0)
  examples = _three_collections('jpeg90', stored=128, sdfd_blur=2.4)
  report = shortcut.check_source_shortcut(_records(examples), config)
  [row] = report['single_class_sources']
  assert row['auc'] <= row['needed'], row  # the rule without copies would pass it
  assert row['copies']['drop'] > config.max_copies_drop, row
  assert row['copies']['drop'] == pytest.approx(row['auc'] - row['copies']['auc'], abs=1e-4)
  assert row['status'] == shortcut.PROCESSING_DIFFERS, row
  assert 'jpeg_history' in row['case'] and 'the copies remove it' in row['case']
  assert (f"on copies with one fresh JPEG generation {row['copies']['auc']:.2f}" in row['verdict']
          and 'the difference was JPEG history' in row['verdict']), row['verdict']
  assert not report['passed'] and report['max_copies_drop'] == 0.1
  assert any("source(s) ['sdfd'] that have no real examples, and their processing differs"
             in f for f in report['findings'])
  # max_copies_drop 1 makes no copies: the same split passes, so the copies decided.
  off = shortcut.check_source_shortcut(_records(examples),
                                       dataclasses.replace(config, max_copies_drop=1.0))
  [row] = off['single_class_sources']
  assert row['copies'] is None and off['passed'], row


def test_copies_survive_a_source_of_the_pooled_class_with_no_readable_image():
  # A reals source whose every stored image is unreadable adds no row to the pool; the
  # copies of the pool must do without it too, not fail on it (the gate's other rows
  # still name it: too few readable examples, insufficient evidence).
  config = SourceShortcutConfig(max_examples_per_source=60, max_one_class_auc=1.0)
  records = list(_records(_three_collections('jpeg90', stored=128, sdfd_blur=2.4)))
  records += [{features.LABEL: REAL, features.IMAGE: b'not an image', features.SOURCE: b'broken',
               features.IMAGE_ID: f'broken-{i}'.encode(), features.FACE_SIZE: 0}
              for i in range(25)]
  report = shortcut.check_source_shortcut(records, config)
  rows = {row['source']: row for row in report['single_class_sources']}
  assert rows['sdfd']['copies']['auc'] is not None, rows['sdfd']
  assert rows['sdfd']['status'] == shortcut.PROCESSING_DIFFERS
  assert rows['broken']['status'] == shortcut.INSUFFICIENT


def _counting_copies(monkeypatch):
  """Counts the images `shortcut.matched_copy` copies (the real function still runs)."""
  copied = []
  real_copy = shortcut.matched_copy

  def counting(image_bytes, *args, **kwargs):
    copied.append(image_bytes)
    return real_copy(image_bytes, *args, **kwargs)
  monkeypatch.setattr(shortcut, 'matched_copy', counting)
  return copied


def test_copies_leave_a_fakes_only_collection_processed_alike_passing(monkeypatch):
  copied = _counting_copies(monkeypatch)
  config = SourceShortcutConfig(max_examples_per_source=60)
  report = shortcut.check_source_shortcut(_records(_three_collections('matched')), config)
  [row] = report['single_class_sources']
  assert row['auc'] > config.max_probe_auc, row  # so the gate probes its copies
  # Copies of the rows probed only: sdfd's 60, and the 60 reals the pool takes (30 of
  # studio's 60, 30 of other's).
  assert row['copies']['probed'] == row['probed'] == [60, 60] and len(copied) == 120
  assert row['copies']['drop'] <= config.max_copies_drop, row
  assert row['status'] == shortcut.PROCESSING_MATCHED and report['passed'], row


def test_a_row_at_or_below_max_probe_auc_makes_no_copies(monkeypatch):
  copied = _counting_copies(monkeypatch)
  config = SourceShortcutConfig(max_examples_per_source=60)
  report = shortcut.check_source_shortcut(_records(_with_fakes_only_source('matched')), config)
  [row] = report['single_class_sources']
  assert row['auc'] <= config.max_probe_auc and row['copies'] is None, row
  assert copied == [] and report['passed']
