"""Data validation gate: the curated schema, the DataGate's checks, and the real
TFX wiring (ImportExampleGen -> ImportSchemaGen -> StatisticsGen ->
ExampleValidator -> DataGate -> a stand-in for the Trainer) on planted TFRecords.

The unit tests compute TFDV statistics in process, one planted anomaly at a
time; the pipeline tests run LocalDagRunner twice (planted anomalies, clean
data) and once more with only the DataGate's config changed, which reuses the
cached upstream components.
"""

import dataclasses
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tfx import v1 as tfx
from tfx.types import artifact_utils, standard_artifacts

from fakefaces.components.shared import features, reports
from fakefaces.components.data_gate import coverage, executor, skew, verdict
from fakefaces.components.data_gate.config import SourceShortcutConfig
from fakefaces.components.data_gate.component import statistics_options, validation_components
from fakefaces.components.face_example_gen.executor import make_example
from fakefaces.components.face_example_gen.sources import InputRecord
from fakefaces.pipeline import config as config_lib

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

SCHEMA = tfdv.load_schema_text(config_lib.DEFAULT_SCHEMA)
DEMO_THRESHOLDS = config_lib.load_thresholds(
    os.path.join(config_lib.PROJECT_ROOT, 'pipeline', 'configs', 'demo_thresholds.yaml'))
# TFDV builds image statistics only from 100+ values, so planted splits hold more.
SPLIT_SIZE = 112
SCHEMA_FEATURES = [f.name for f in SCHEMA.feature]


def _jpeg(side: int = 16, seed: int = 0, fmt: str = 'JPEG') -> bytes:
  pixels = np.random.RandomState(seed).randint(0, 255, (side, side, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format=fmt)
  return buf.getvalue()


SMALL_IMAGE = _jpeg()


def _example(i: int, *, label=None, race=None, gender=None, age=None, image=SMALL_IMAGE,
             drop=()) -> tf.train.Example:
  """A clean example cycling through race x gender x age and both labels, with overrides."""
  record = InputRecord(
      path='', source='planted', image_id=f'planted-{i:04d}',
      label=i % 2 if label is None else label, split='',
      gender=gender or features.GENDERS[(i // 2) % 2],
      race=race or features.RACES[(i // 4) % len(features.RACES)],
      age=age or features.AGES[i % len(features.AGES)])
  example = make_example(record, image, face_size=100)
  for name in drop:
    if name in example.features.feature:  # the annotator's features are not written at ingestion
      del example.features.feature[name]
  return example


def _clean(n: int = SPLIT_SIZE, start: int = 0):
  return [_example(i) for i in range(start, start + n)]


def _write(path: str, examples) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for example in examples:
      writer.write(example.SerializeToString())
  return path


def _validate(tmp_path, examples, environment=None):
  path = _write(str(tmp_path / 'data.tfrecord'), examples)
  stats = tfdv.generate_statistics_from_tfrecord(
      path, stats_options=tfdv.StatsOptions(schema=SCHEMA, enable_semantic_domain_stats=True))
  return tfdv.validate_statistics(stats, SCHEMA, environment=environment)


# ---------------------------------------------------------------- the schema


def test_schema_vocabularies_match_the_feature_contract():
  domains = {d.name: list(d.value) for d in SCHEMA.string_domain}
  for feature, vocabulary in features.VOCABULARIES.items():
    assert domains[feature] == list(vocabulary) + [features.UNKNOWN], feature
  assert domains[features.DEMOGRAPHICS_SOURCE] == list(features.DEMOGRAPHICS_SOURCES)
  assert domains[features.LABELLED_ATTRIBUTES] == list(features.LABELLED_ATTRIBUTES_VALUES)
  assert sorted(f.name for f in SCHEMA.feature) == sorted(
      [features.IMAGE, features.LABEL, features.FACE_SIZE, features.FACE_DESCRIPTOR,
       *features.STRING_FEATURES, features.DEMOGRAPHICS_SOURCE, features.LABELLED_ATTRIBUTES,
       *features.CONFIDENCE_FEATURES.values()])


def test_clean_data_has_no_anomalies(tmp_path):
  anomalies = _validate(tmp_path, _clean())
  assert not executor.anomaly_rows({'train': anomalies})


def test_serving_needs_only_the_image(tmp_path):
  image_only = [_example(i, drop=[n for n in SCHEMA_FEATURES if n != features.IMAGE])
                for i in range(SPLIT_SIZE)]
  assert not executor.anomaly_rows({'serving': _validate(tmp_path, image_only, 'SERVING')})
  rows = executor.anomaly_rows({'train': _validate(tmp_path, image_only, 'TRAINING')})
  assert {r['feature'] for r in rows} >= {features.LABEL, features.RACE}

PLANTED = {
    'unknown race value': (dict(race='Martian'), 'race', 'ENUM_TYPE_UNEXPECTED_STRING_VALUES',
                           'Martian'),
    'age written as a date': (dict(age='9-Mar'), 'age', 'ENUM_TYPE_UNEXPECTED_STRING_VALUES',
                              '9-Mar'),
    'missing label': (dict(drop=[features.LABEL]), 'label', 'FEATURE_TYPE_LOW_FRACTION_PRESENT',
                      'present in fewer examples'),
    'label 2': (dict(label=2), 'label', 'INT_TYPE_BIG_INT', 'large value: 2'),
    'empty image bytes': (dict(image=b''), 'image', 'LOW_SUPPORTED_IMAGE_FRACTION', 'images'),
    'image over the size limit': (dict(image=_jpeg(640, fmt='PNG')), 'image',
                                  'MAX_IMAGE_BYTE_SIZE_EXCEEDED', 'The largest image has bytes'),
}


@pytest.mark.parametrize('name', sorted(PLANTED))
def test_each_planted_anomaly_stops_with_its_name(tmp_path, name):
  overrides, feature, kind, detail = PLANTED[name]
  anomalies = _validate(tmp_path, _clean() + [_example(SPLIT_SIZE, **overrides)])
  blocking, _ = verdict.split_allowed(executor.anomaly_rows({'test': anomalies}), [])
  assert (feature, kind) in {(r['feature'], r['kind']) for r in blocking}
  message = verdict.failure_message(blocking, {'short_groups': []}, False)
  assert f'[test] {feature}: {kind}: ' in message and detail in message


def test_allow_list_accepts_a_kind_or_a_feature_kind_pair():
  rows = [{'split': 'test', 'feature': 'race', 'kind': 'ENUM_TYPE_UNEXPECTED_STRING_VALUES',
           'description': ''},
          {'split': 'test', 'feature': 'age', 'kind': 'ENUM_TYPE_UNEXPECTED_STRING_VALUES',
           'description': ''}]
  blocking, accepted = verdict.split_allowed(rows, ['race:ENUM_TYPE_UNEXPECTED_STRING_VALUES'])
  assert [r['feature'] for r in blocking] == ['age'] and [r['feature'] for r in accepted] == ['race']
  assert not verdict.split_allowed(rows, ['ENUM_TYPE_UNEXPECTED_STRING_VALUES'])[0]


def _verdict(config=None, anomalies=(), short=(), coverage_error='', shortcut_findings=(),
             shortcut_error=''):
  """verdict.judge on hand-made findings."""
  coverage_report = ({'split': 'test', 'error': coverage_error} if coverage_error else
                     {'split': 'test', 'min_examples_per_class': 5, 'groups': [
                         {'group': g, 'real': 0, 'fake': 9, 'short_by': {'real': 5, 'fake': 0}}
                         for g in short],
                      'short_groups': list(short)})
  shortcut_report = {'split': 'train', 'findings': list(shortcut_findings)}
  if shortcut_error:
    shortcut_report['error'] = shortcut_error
  rows = [{'split': 'test', 'feature': f, 'kind': k, 'description': 'd'} for f, k in anomalies]
  return verdict.judge(config or config_lib.ValidationConfig(), {'test': 10}, rows, [],
                       coverage_report, shortcut_report)


def test_verdict_names_what_stops_the_run_first_anomalies_then_groups_then_shortcut():
  clean = _verdict()
  assert clean.passed and clean.stopped_by is None and clean.report['passed']
  assert clean.report['examples'] == {'test': 10} and clean.message == ''
  anomaly = ('race', 'ENUM_TYPE_UNEXPECTED_STRING_VALUES')
  everything = dict(anomalies=[anomaly], short=['race=Black'], shortcut_findings=['s'])
  stop = config_lib.ValidationConfig(on_short_group='stop')
  assert _verdict(stop, **everything).stopped_by == verdict.ANOMALIES
  assert _verdict(stop, short=['race=Black'], shortcut_findings=['s']).stopped_by == (
      verdict.COVERAGE)
  assert _verdict(stop, shortcut_findings=['s']).stopped_by == verdict.SHORTCUT
  # A check that could not read the data stops as an anomaly would, naming why.
  broken = _verdict(coverage_error='race is INT64')
  assert broken.stopped_by == verdict.ANOMALIES and 'race is INT64' in broken.message
  assert _verdict(shortcut_error='no split').stopped_by == verdict.SHORTCUT


def test_verdict_reports_but_does_not_stop_on_what_the_config_accepts():
  anomaly = ('race', 'ENUM_TYPE_UNEXPECTED_STRING_VALUES')
  accepting = config_lib.ValidationConfig(
      allowed_anomalies=['race:ENUM_TYPE_UNEXPECTED_STRING_VALUES'],
      source_shortcut=SourceShortcutConfig(on_shortcut='warn'))
  result = _verdict(accepting, anomalies=[anomaly], short=['race=Black'],
                    shortcut_findings=['s'])
  assert result.passed, result.message
  assert [r['feature'] for r in result.report['allowed_anomalies']] == ['race']
  assert result.report['coverage']['short_groups'] == ['race=Black']
  assert result.report['source_shortcut']['findings'] == ['s']


@pytest.mark.parametrize('field,value,needle', [
    ('on_short_group', 'skip', 'validation.on_short_group'),
    ('allowed_anomalies', ['race:NOT_A_KIND'], 'validation.allowed_anomalies[0]'),
    ('max_skew_linf', 1.5, 'validation.max_skew_linf'),
    ('min_examples_per_class', -1, 'validation.min_examples_per_class'),
])
def test_bad_validation_config_names_the_field(field, value, needle):
  config = dataclasses.replace(config_lib.ValidationConfig(), **{field: value})
  with pytest.raises(config_lib.ConfigError, match=needle.replace('[', r'\[')):
    executor.check_config(config)


# ----------------------------------------------------- image check fallback


def _examples_artifact(root, splits):
  artifact = standard_artifacts.Examples()
  artifact.uri = str(root)
  artifact.split_names = artifact_utils.encode_split_names(list(splits))
  for split, examples in splits.items():
    _write(os.path.join(str(root), f'Split-{split}', 'data.tfrecord'), examples)
  return artifact


def test_small_split_with_an_empty_image_is_caught_by_the_gate(tmp_path):
  # 30 values: too few for TFDV's image statistics, so ExampleValidator is silent.
  examples = _clean(29) + [_example(29, image=b'')]
  assert not executor.anomaly_rows({'test': _validate(tmp_path, examples)})
  artifact = _examples_artifact(tmp_path / 'examples', {'test': examples})
  stats = {'test': tfdv.generate_statistics_from_tfrecord(
      _write(str(tmp_path / 'small.tfrecord'), examples),
      stats_options=statistics_options()).datasets[0]}
  rows = executor.image_fallback_rows(SCHEMA, stats, artifact)
  assert [(r['split'], r['feature'], r['kind']) for r in rows] == [
      ('test', 'image', 'LOW_SUPPORTED_IMAGE_FRACTION')]
  assert '1 of 30 values' in rows[0]['description'] and 'planted-0029' in rows[0]['description']


# ------------------------------------------------------------- slice coverage


def test_judged_groups_cover_groupings_races_and_intersections():
  names = [g.name for g in coverage.thresholds_groups(DEMO_THRESHOLDS, {})]
  assert 'gender=Female' in names and 'gender=Male' in names
  assert 'race: not White' in names and 'age: not more than 70' in names
  assert all(f'race={r}' in names and f'race: not {r}' in names for r in features.RACES)
  assert 'race x gender=Black x Female' in names
  # 6 groupings x (group, reference) + 5 more races x (value, rest) + 14 intersections
  assert len(names) == len(set(names)) == 2 * 6 + 2 * 5 + 14


def test_groups_of_a_feature_without_vocabulary_come_from_the_data():
  thresholds = dataclasses.replace(DEMO_THRESHOLDS, groupings=[], judge_each_value_of=['source'])
  records = [{features.LABEL: 0, features.SOURCE: b'fairface'},
             {features.LABEL: 1, features.SOURCE: b'stylegan'}]
  counts = coverage.count_examples(records, coverage.needed_features(thresholds))
  names = [g.name for g in coverage.thresholds_groups(thresholds, counts)]
  assert names[:4] == ['source=fairface', 'source: not fairface', 'source=stylegan',
                       'source: not stylegan']


def test_group_without_fakes_is_short_by_the_missing_count():
  records = [{features.LABEL: 0, features.RACE: b'Indian', features.GENDER: b'Male'}] * 4 + [
      {features.LABEL: 1, features.RACE: b'White', features.GENDER: b'Male'}] * 5
  counts = coverage.count_examples(records, [features.GENDER, features.RACE])
  groups = [coverage.Group((features.RACE,), ('Indian',)),
            coverage.Group((features.RACE,), ('Indian',), rest=True)]
  indian, rest = coverage.check_coverage(counts, groups, min_per_class=3)
  assert (indian['real'], indian['fake'], indian['short_by']) == (4, 0, {'real': 0, 'fake': 3})
  assert coverage.describe_short(indian) == 'race=Indian: 0 fake (short by 3)'
  assert (rest['real'], rest['fake']) == (0, 5) and coverage.is_short(rest)


# ------------------------------------------------------------------- skew


def test_linf_distance_flags_real_skew_but_not_sampling_noise():
  big = skew.linf_distance({'White': 500, 'Black': 500}, {'White': 800, 'Black': 200}, 0.1, 4.0)
  assert big['linf'] == pytest.approx(0.3) and big['value'] in ('White', 'Black')
  assert big['exceeded']
  # The same 15-point gap on 20 examples is within noise; on 2000 it is not.
  assert not skew.linf_distance({'a': 10, 'b': 10}, {'a': 13, 'b': 7}, 0.1, 4.0)['exceeded']
  assert skew.linf_distance({'a': 1000, 'b': 1000}, {'a': 1300, 'b': 700}, 0.1, 4.0)['exceeded']
  assert not skew.linf_distance({'a': 1, 'b': 1}, {'a': 1, 'b': 1}, 0.1, 0.0)['exceeded']


def test_skew_splits_leave_an_audit_only_test_split_out_of_the_skew_check():
  stats = {'train': 'T', 'eval': 'E', 'test': 'X'}
  assert skew.compared_splits(stats, [], 'train') == stats
  assert skew.compared_splits(stats, ['eval'], 'train') == {'train': 'T', 'eval': 'E'}


# --------------------------------------------------------- the real pipeline

PLANTED_IN_PIPELINE = [  # (example overrides, anomaly kind, text the message must hold)
    (dict(race='Martian'), 'ENUM_TYPE_UNEXPECTED_STRING_VALUES', 'Martian'),
    (dict(age='9-Mar'), 'ENUM_TYPE_UNEXPECTED_STRING_VALUES', '9-Mar'),
    (dict(drop=[features.LABEL]), 'FEATURE_TYPE_LOW_FRACTION_PRESENT', '[test] label'),
    (dict(label=2), 'INT_TYPE_BIG_INT', 'Unexpectedly large value: 2'),
    (dict(image=b''), 'LOW_SUPPORTED_IMAGE_FRACTION', '[test] image'),
    (dict(image=_jpeg(640, fmt='PNG')), 'MAX_IMAGE_BYTE_SIZE_EXCEEDED', 'max allowed byte size'),
]


def _run(root, data_dir, validation: config_lib.ValidationConfig):
  """ImportExampleGen over data_dir/{train,eval,test}, the validation chain, a Trainer stand-in."""
  example_gen = tfx.components.ImportExampleGen(
      input_base=str(data_dir), input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name=s, pattern=f'{s}/*') for s in features.SPLITS]))
  schema_gen = tfx.components.ImportSchemaGen(schema_file=config_lib.DEFAULT_SCHEMA)
  statistics_gen, example_validator, data_gate = validation_components(
      example_gen.outputs['examples'], schema_gen.outputs['schema'], validation, DEMO_THRESHOLDS)
  # Stands in for the Trainer: ordered after the gate exactly as pipeline.py orders it.
  after_gate = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'])
  after_gate.add_upstream_node(data_gate)
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='data-validation-test', pipeline_root=str(root / 'pipeline_root'),
      components=[example_gen, schema_gen, statistics_gen, example_validator, data_gate,
                  after_gate],
      enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / 'metadata.sqlite')),
      beam_pipeline_args=['--direct_running_mode=in_memory', '--direct_num_workers=1']))


def _ran(root, component: str) -> bool:
  return bool(tf.io.gfile.glob(str(root / 'pipeline_root' / component / '*' / '*')))


def _gate_report(root):
  (path,) = tf.io.gfile.glob(str(root / 'pipeline_root' / 'DataGate' / 'report' / '*' /
                                 reports.REPORT_JSON))
  with open(path) as f:
    return json.load(f)


def test_pipeline_stops_on_every_planted_anomaly_and_skew(tmp_path):
  data = tmp_path / 'data'
  _write(str(data / 'train' / 'r.tfrecord'), _clean())
  _write(str(data / 'eval' / 'r.tfrecord'), _clean(start=SPLIT_SIZE))
  planted = [_example(1000 + i, **overrides)
             for i, (overrides, _, _) in enumerate(PLANTED_IN_PIPELINE)]
  # Two thirds White where train has one seventh: demographic skew the gate must name.
  skewed = [_example(2000 + i, race='White' if i % 3 else None) for i in range(SPLIT_SIZE)]
  _write(str(data / 'test' / 'r.tfrecord'), skewed + planted)

  with pytest.raises(executor.DataAnomaliesError) as error:
    _run(tmp_path, data, config_lib.ValidationConfig())
  message = str(error.value)
  for _, kind, text in PLANTED_IN_PIPELINE:
    assert kind in message and text in message, (kind, text, message)
  assert '[test] race: COMPARATOR_L_INFTY_HIGH' in message
  assert not _ran(tmp_path, 'SchemaGen'), 'the step after the gate ran despite anomalies'
  assert '[train]' not in message and '[eval]' not in message

  # Accepting every kind on purpose lets the run through (only the gate re-executes).
  kinds = sorted({kind for _, kind, _ in PLANTED_IN_PIPELINE} |
                 {'INVALID_FEATURE_SHAPE', 'race:COMPARATOR_L_INFTY_HIGH'})
  _run(tmp_path, data, config_lib.ValidationConfig(allowed_anomalies=kinds))
  assert _ran(tmp_path, 'SchemaGen')
  report = _gate_report(tmp_path)
  assert report['passed'] is True and report['anomalies'] == []
  assert {r['kind'] for r in report['allowed_anomalies']} == {k.split(':')[-1] for k in kinds}


@pytest.fixture(scope='module')
def clean_run(tmp_path_factory):
  """Clean data whose test split has no fakes for race=Indian; on_short_group: insufficient."""
  root = tmp_path_factory.mktemp('clean_run')
  data = root / 'data'
  _write(str(data / 'train' / 'r.tfrecord'), _clean())
  _write(str(data / 'eval' / 'r.tfrecord'), _clean(start=SPLIT_SIZE))
  test = [_example(i, label=0 if _example(i).features.feature[features.RACE].bytes_list.value[0]
                   == b'Indian' else None) for i in range(2 * SPLIT_SIZE, 3 * SPLIT_SIZE)]
  _write(str(data / 'test' / 'r.tfrecord'), test)
  validation = config_lib.ValidationConfig(min_examples_per_class=3, on_short_group='insufficient')
  _run(root, data, validation)
  return root, data, validation


def test_clean_data_passes_and_reports_a_group_without_fakes(clean_run):
  root, _, _ = clean_run
  assert _ran(root, 'SchemaGen'), 'the step after the gate did not run on clean data'
  report = _gate_report(root)
  assert report['passed'] is True and report['anomalies'] == []
  assert report['examples'] == {'train': SPLIT_SIZE, 'eval': SPLIT_SIZE, 'test': SPLIT_SIZE}
  groups = {row['group']: row for row in report['coverage']['groups']}
  assert groups['race=Indian']['fake'] == 0 and groups['race=Indian']['real'] == 16
  assert groups['race=Indian']['status'] == 'insufficient_evidence'
  assert groups['race=Indian']['short_by'] == {'real': 0, 'fake': 3}
  assert set(report['coverage']['short_groups']) == {
      'race=Indian', 'race x gender=Indian x Male', 'race x gender=Indian x Female'}
  assert groups['race=White']['status'] == 'ok'
  skew_rows = {(r['split'], r['feature']): r for r in report['skew']['rows']}
  assert set(skew_rows) == {(s, f) for s in ('eval', 'test') for f in ('gender', 'race', 'age')}
  assert not any(r['exceeded'] for r in skew_rows.values())


def test_short_group_stops_the_run_when_configured(clean_run):
  root, data, validation = clean_run
  with pytest.raises(executor.SliceCoverageError) as error:
    _run(root, data, dataclasses.replace(validation, on_short_group='stop'))
  message = str(error.value)
  assert 'race=Indian: 0 fake (short by 3)' in message
  assert "split 'test'" in message
