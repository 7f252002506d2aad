"""DemographicAnnotator: never overwrites a human label; its report is re-derivable by hand."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from fakefaces.components.shared import features
from fakefaces.components.shared.config_base import ConfigError, from_dict
from fakefaces.components.demographic_annotator import annotate, executor
from fakefaces.components.demographic_annotator.config import AnnotatorConfig, validate
from fakefaces.pipeline.fixtures import demo_records


def _example(**values) -> tf.train.Example:
  example = tf.train.Example()
  for name in features.DEMOGRAPHIC_FEATURES:
    example.features.feature[name].bytes_list.value.append(
        values.get(name, features.UNKNOWN).encode())
  return example


def test_evaluate_matches_hand_computed_accuracy_on_a_planted_set():
  vocabulary = ('Male', 'Female')
  true = ['Male', 'Male', 'Male', 'Female', 'Female', 'unknown']
  predicted = ['Male', 'Female', 'Male', 'Female', 'Male', 'Male']
  confidence = [0.95, 0.55, 0.85, 0.9, 0.6, 0.99]
  result = annotate.evaluate(true, predicted, confidence, 0.8, vocabulary)
  # The unlabelled face is not scored: 5 faces, 3 right.
  assert result['n'] == 5 and result['correct'] == 3
  assert result['accuracy'] == pytest.approx(3 / 5)
  assert result['confusion'] == [[2, 1], [1, 1]]  # rows true (Male, Female), columns predicted
  assert result['per_class']['Male'] == {'support': 3, 'recall': 2 / 3, 'precision': 2 / 3}
  # At confidence >= 0.8 three faces get a value (0.95, 0.85, 0.9), all three right.
  assert result['n_confident'] == 3 and result['coverage'] == pytest.approx(3 / 5)
  assert result['confident_accuracy'] == 1.0


def test_annotate_example_never_overwrites_a_human_label():
  example = _example(gender='Female')
  proposal = {'gender': ('Male', 0.99), 'race': ('Black', 0.9), 'age': ('20-29', 0.1)}
  example, sources = annotate.annotate_example(
      example, proposal, {'gender': 0.5, 'race': 0.5, 'age': 0.4})
  assert annotate.human_labels(example) == {'gender': 'Female', 'race': 'Black', 'age': 'unknown'}
  assert sources == {'gender': 'human', 'race': 'predicted', 'age': 'unknown'}
  feature = example.features.feature
  assert feature['gender_confidence'].float_list.value[0] == 1.0
  assert feature['race_confidence'].float_list.value[0] == pytest.approx(0.9)
  assert feature['age_confidence'].float_list.value[0] == 0.0
  assert feature['demographics_source'].bytes_list.value[0] == b'human'
  assert annotate.attribute_sources(example) == sources


def test_a_prediction_at_confidence_one_is_read_back_as_predicted():
  # A confident softmax can round to 1.0 in float32: the confidence alone would read it as a label.
  example, sources = annotate.annotate_example(
      _example(gender='Female'), {'race': ('Black', 1.0)}, {'gender': 0.5, 'race': 0.5, 'age': 0.4})
  assert example.features.feature['race_confidence'].float_list.value[0] == 1.0
  assert sources['race'] == 'predicted'
  assert annotate.attribute_sources(example) == sources
  assert example.features.feature['labelled_attributes'].bytes_list.value[0] == b'gender'


def test_config_errors_name_the_field():
  with pytest.raises(ConfigError, match='annotator.min_confidence_race'):
    validate(AnnotatorConfig(min_confidence_race=1.5))
  with pytest.raises(ConfigError, match='annotator.test_split'):
    validate(AnnotatorConfig(test_split='train'))


def test_features_are_checked_at_config_load(tmp_path):
  with pytest.raises(ConfigError, match=r"annotator.features 'clip' is not one of"):
    from_dict(AnnotatorConfig, {'features': 'clip'}, 'annotator')
  corrupted = tmp_path / 'clip_encoder.int8.onnx'
  corrupted.write_bytes(b'not the weights')
  with pytest.raises(ConfigError, match=r'annotator.backbone_weights clip_embedding: .*sha256'):
    from_dict(AnnotatorConfig, {'features': 'clip_embedding',
                                'backbone_weights': str(corrupted)}, 'annotator')
  assert from_dict(AnnotatorConfig, {'features': 'clip_embedding'}, 'annotator').features == (
      'clip_embedding')  # the installed package's file, checked


def _read(pattern):
  files = sorted(glob.glob(pattern))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
  """Demo examples whose fakes lost their demographics (as GAN fakes come), then annotated."""
  root = tmp_path_factory.mktemp('annotator')
  raw = root / 'raw'
  demo_records.write_tfrecords(str(raw), num_images=120, seed=3)
  planted_dir = root / 'planted'
  originals = {}
  for split in features.SPLITS:
    examples = _read(str(raw / f'Split-{split}' / '*'))
    os.makedirs(planted_dir / f'Split-{split}')
    with tf.io.TFRecordWriter(str(planted_dir / f'Split-{split}' / 'data.gz'), 'GZIP') as w:
      for i, example in enumerate(examples):
        if example.features.feature['label'].int64_list.value[0] == features.FAKE:
          for name in features.DEMOGRAPHIC_FEATURES:
            example.features.feature[name].bytes_list.value[:] = [b'unknown']
        elif i % 5 == 0:  # a real face with only a human gender label
          for name in (features.RACE, features.AGE):
            example.features.feature[name].bytes_list.value[:] = [b'unknown']
        originals[example.features.feature['image_id'].bytes_list.value[0]] = (
            annotate.human_labels(example))
        w.write(example.SerializeToString())
  config = AnnotatorConfig(min_train_per_class=2, min_confidence_gender=0.6,
                           min_confidence_race=0.3, min_confidence_age=0.2,
                           progress_interval_seconds=1e9)
  report = executor.run_standalone(str(planted_dir), str(root / 'out'), config)
  return root / 'out', originals, report


def test_annotator_never_overwrites_a_human_label_and_fills_only_unknowns(planted):
  out, originals, report = planted
  seen, predicted = 0, 0
  for split in features.SPLITS:
    for example in _read(str(out / 'examples' / f'Split-{split}' / '*')):
      before = originals[example.features.feature['image_id'].bytes_list.value[0]]
      after = annotate.human_labels(example)
      sources = annotate.attribute_sources(example)
      for name in features.DEMOGRAPHIC_FEATURES:
        if before[name] != features.UNKNOWN:
          assert after[name] == before[name] and sources[name] == features.HUMAN
        else:
          assert sources[name] in (features.PREDICTED, features.UNKNOWN)
          assert after[name] in features.VOCABULARIES[name] + (features.UNKNOWN,)
          predicted += sources[name] == features.PREDICTED
      seen += 1
  assert seen == len(originals)
  assert predicted > 0  # the fakes did get demographics
  assert report['filled']['test']['race']['predicted'] > 0


def test_report_accuracy_matches_hand_computed_from_predictions_csv(planted):
  out, _, report = planted
  with open(out / 'annotations' / executor.PREDICTIONS_FILE) as f:
    rows = [r for r in csv.DictReader(f) if r['split'] == 'test']
  for name in features.DEMOGRAPHIC_FEATURES:
    scored = [r for r in rows if r[f'{name}_source'] == 'human']
    right = sum(r[f'{name}_value'] == r[f'{name}_proposal'] for r in scored)
    result = report['evaluation'][name]
    assert result['n'] == len(scored) > 0
    assert result['accuracy'] == pytest.approx(right / len(scored))
    assert np.sum(result['confusion']) == len(scored)
  assert os.path.exists(out / 'annotations' / executor.CLASSIFIERS_FILE)


def test_annotated_examples_satisfy_the_curated_schema(planted):
  """The DataGate's ExampleValidator must accept the annotator's new features."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  from fakefaces.components.shared.config_base import DEFAULT_SCHEMA
  from fakefaces.components.data_gate import executor as gate_executor
  out, _, _ = planted
  schema = tfdv.load_schema_text(DEFAULT_SCHEMA)
  stats = tfdv.generate_statistics_from_tfrecord(
      str(out / 'examples' / 'Split-train' / '*.gz'),
      stats_options=tfdv.StatsOptions(schema=schema, enable_semantic_domain_stats=True))
  anomalies = tfdv.validate_statistics(stats, schema)
  assert not gate_executor.anomaly_rows({'train': anomalies})


def test_nothing_to_fill_skips_the_work_and_says_so(tmp_path):
  """Every demo face carries its labels: no descriptor is computed, every example passes through."""
  raw = tmp_path / 'raw'
  demo_records.write_tfrecords(str(raw), num_images=60, seed=5)
  report = executor.run_standalone(str(raw), str(tmp_path / 'out'),
                                   AnnotatorConfig(progress_interval_seconds=1e9))
  assert report['skipped'] and 'nothing to fill' in report['skipped']
  assert report['faces_described'] == 0
  assert set(report['faces_lacking_demographics'].values()) == {0}
  for split in features.SPLITS:
    before = _read(str(raw / f'Split-{split}' / '*'))
    after = _read(str(tmp_path / 'out' / 'examples' / f'Split-{split}' / '*'))
    assert [annotate.human_labels(e) for e in after] == [annotate.human_labels(e) for e in before]
    assert all(set(annotate.attribute_sources(e).values()) == {features.HUMAN} for e in after)
  assert all(not v['predicted'] for split in report['filled'].values() for v in split.values())


def test_one_unlabelled_face_is_enough_to_run(planted):
  _, _, report = planted
  assert report['skipped'] is None and report['faces_described'] > 0
