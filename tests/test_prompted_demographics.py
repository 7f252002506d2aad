"""Prompted demographics (SDFD: what a generator was asked for) keep their origin from the
manifest to the gate report: ingestion marks them, the annotator neither replaces nor learns
from them, and every fairness check says which kind of label it rests on."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from fakefaces.components.shared import features
from fakefaces.components.demographic_annotator import annotate, executor as annotator
from fakefaces.components.demographic_annotator.config import AnnotatorConfig
from fakefaces.components.face_example_gen import sources
from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig
from fakefaces.components.face_example_gen.executor import make_example
from fakefaces.components.fairness_gate import evaluation, fairness, report_html
from fakefaces.components.model_card import card
from fakefaces.pipeline import config as config_lib
from fakefaces.pipeline.fixtures import demo_records


def _manifest(tmp_path, name, rows):
  path = tmp_path / name / 'labels.csv'
  os.makedirs(path.parent, exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=['path', 'label', 'gender', 'race', 'age', 'image_id'])
    writer.writeheader()
    writer.writerows(rows)
  return str(path)


def test_a_prompted_source_marks_its_examples_and_no_other_source_changes(tmp_path):
  prompted = _manifest(tmp_path, 'sdfd', [
      {'path': 'a.jpg', 'label': 'fake', 'gender': 'Female', 'race': 'Black', 'age': ''},
      {'path': 'b.jpg', 'label': 'fake', 'gender': '', 'race': '', 'age': ''},
      {'path': 'c.jpg', 'label': 'fake', 'gender': 'Male', 'race': 'Indian', 'age': '3-9'}])
  human = _manifest(tmp_path, 'people', [
      {'path': 'p.jpg', 'label': 'real', 'gender': 'Male', 'race': 'White', 'age': '20-29'},
      # A person's judgement of an SDFD image replaces the prompt: its race only.
      {'path': '../sdfd/c.jpg', 'label': 'fake', 'race': 'East Asian', 'image_id': 'sdfd/c'}])
  records = {r.image_id: r for r in sources.list_inputs(IngestConfig(sources=[
      SourceConfig(kind='manifest', path=prompted, name='sdfd', demographics='prompted'),
      SourceConfig(kind='manifest', path=human, name='people')]))}
  assert records['sdfd/a'].prompted and records['sdfd/b'].prompted
  assert not records['people/p'].prompted
  relabelled = records['sdfd/c']
  assert not relabelled.prompted
  assert (relabelled.gender, relabelled.race, relabelled.age) == ('unknown', 'East Asian',
                                                                  'unknown')

  def origin(record):
    example = make_example(record, b'jpeg', face_size=10)
    return example.features.feature[features.DEMOGRAPHICS_SOURCE].bytes_list.value

  assert list(origin(records['sdfd/a'])) == [b'prompted']
  assert list(origin(records['sdfd/b'])) == []  # nothing known: nothing prompted
  assert list(origin(records['people/p'])) == []  # human sources: the records as before
  with pytest.raises(ValueError, match=r'ingest.sources\[0\].demographics'):
    sources.list_inputs(IngestConfig(sources=[
        SourceConfig(kind='manifest', path=prompted, demographics='asked')]))


def _read(pattern):
  return [tf.train.Example.FromString(r.numpy()) for r in
          tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type='GZIP')]


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
  """Demo examples: reals with human labels; fakes with a prompted gender and race (age not
  stated, as most SDFD prompts), run through the real DemographicAnnotator."""
  root = tmp_path_factory.mktemp('prompted')
  before = {}

  def prompt(split, example):
    del split  # every split alike
    fields = example.features.feature
    if fields[features.LABEL].int64_list.value[0] == features.FAKE:
      fields[features.AGE].bytes_list.value[:] = [b'unknown']
      fields[features.DEMOGRAPHICS_SOURCE].bytes_list.value[:] = [b'prompted']
    before[fields[features.IMAGE_ID].bytes_list.value[0]] = annotate.demographics_of(example)

  demo_records.write_edited(str(root / 'in'), num_images=120, seed=5, edit=prompt)
  config = AnnotatorConfig(min_train_per_class=2, min_confidence_gender=0.0,
                           min_confidence_race=0.0, min_confidence_age=0.0,
                           progress_interval_seconds=1e9)
  report = annotator.run_standalone(str(root / 'in'), str(root / 'out'), config)
  after = {split: _read(str(root / 'out' / 'examples' / f'Split-{split}' / '*'))
           for split in features.SPLITS}
  return before, after, report


def test_the_annotator_keeps_prompted_labels_and_learns_only_from_human_ones(annotated):
  before, after, report = annotated
  fakes = 0
  for example in [e for split in features.SPLITS for e in after[split]]:
    was = before[example.features.feature[features.IMAGE_ID].bytes_list.value[0]]
    now, origin = annotate.demographics_of(example), annotate.attribute_sources(example)
    if example.features.feature[features.LABEL].int64_list.value[0] == features.FAKE:
      fakes += 1
      assert (now['gender'], now['race']) == (was['gender'], was['race'])
      assert (origin['gender'], origin['race']) == ('prompted', 'prompted')
      assert origin['age'] in ('predicted', 'unknown')
      assert annotate.string_feature(example, features.DEMOGRAPHICS_SOURCE) == 'prompted'
    else:
      assert now == was and set(origin.values()) == {'human'}
  assert fakes > 0
  assert report['filled']['test']['race']['prompted'] > 0
  # The classifiers learned and were scored on the reals' human labels only.
  trained = sum(report['training']['race']['train_counts'].values())
  assert trained == report['filled']['train']['race']['human'] > 0
  assert report['evaluation']['race']['n'] == report['filled']['test']['race']['human']


def test_the_gate_report_says_each_check_rests_on_prompted_labels(annotated):
  _, after, annotation_report = annotated
  test = after[features.TEST]  # the examples the annotator's report counts
  labels = [e.features.feature[features.LABEL].int64_list.value[0] for e in test]
  race = [annotate.string_feature(e, features.RACE) for e in test]
  scores = np.where(np.asarray(labels) == 1, 0.9, 0.1)
  slices = fairness.slices_from_predictions(labels, scores, {features.RACE: race}, 0.5)
  thresholds = config_lib.ThresholdsConfig(
      groupings=[config_lib.GroupingConfig(name='race', feature='race', group=race[0])],
      judge_each_value_of=[], min_group_size=1, bootstrap_samples=100)
  report = evaluation.assemble_report(slices, [], thresholds, True, [], 'model', 'evaluation',
                                      annotation_report)
  checks = {c['metric']: c for c in report['checks'] if c['grouping'] == 'race'}
  # Fakes carry prompted race, reals human race, and nothing of race is predicted.
  assert fairness.label_kinds(checks['fnr_gap']) == 'prompted'
  assert fairness.label_kinds(checks['fpr_gap']) == 'human'
  assert fairness.label_kinds(checks['average_odds_difference']) == 'human+prompted'
  assert not checks['fnr_gap']['rests_on_predicted']
  assert 'race: fnr_gap' in report['label_kinds']['prompted']
  assert 'race: fnr_gap' not in report['label_kinds']['predicted']
  assert 'prompted' in evaluation.format_summary(report)
  page = report_html.render(report)
  assert 'human; prompted' in page and 'prompted (what a generator was asked for)' in page
  limits = [item['description'] for item in card.limitations(report, None, annotation_report)]
  assert any(line.startswith(f"{len(report['label_kinds']['prompted'])} fairness checks rest on "
                             'prompted demographics') and 'race: fnr_gap' in line
             for line in limits), limits


SDFD_CONFIG = os.path.join(config_lib.PROJECT_ROOT, 'pipeline', 'configs', 'shared_data_sdfd.yaml')


def test_the_sdfd_config_loads_with_prompted_fakes_and_an_audit_collection(monkeypatch):
  monkeypatch.chdir(config_lib.PROJECT_ROOT)  # its paths are relative to the repository root
  config = config_lib.load_config(SDFD_CONFIG)
  by_name = {s.name or s.kind: s for s in config.ingest.sources}
  assert by_name['sdfd'].kind == 'manifest' and by_name['sdfd'].demographics == 'prompted'
  assert by_name['sdfd'].role == 'train'
  assert by_name['utkface'].role == 'audit' and by_name['utkface'].demographics == 'human'
  assert by_name['fairface'].role == 'audit'


def test_sdfd_rows_are_listed_as_prompted_and_utkface_only_in_the_test_split(faces_data):
  config = config_lib.load_config(SDFD_CONFIG)
  for source in config.ingest.sources:  # the shared data wherever the fixture found it
    source.path = os.path.join(faces_data, source.path.split('shared/data/', 1)[1])
  config.ingest.limit_per_source = 40
  records = sources.list_inputs(config.ingest)
  sdfd = [r for r in records if r.source == 'sdfd']
  utk = [r for r in records if r.source == 'utkface']
  assert len(sdfd) == 40 and not any(r.problem for r in sdfd)
  assert all(r.prompted and r.label == features.FAKE for r in sdfd)
  assert any(r.race != features.UNKNOWN for r in sdfd)
  assert {r.split for r in sdfd} > {features.TRAIN}  # hash-split: trained on, and judged
  assert len(utk) == 40 and {r.split for r in utk} == {features.TEST}
  assert not any(r.prompted for r in utk) and all(r.label == features.REAL for r in utk)


def test_annotator_steps_are_pure_functions_of_faces_and_proposals():
  """The annotator's scoring step on hand-made faces: a prompted face (read_face gives it no
  human labels) is neither scored nor paired; it is still described when it lacks a value."""
  human = tf.train.Example()
  prompted = tf.train.Example()
  for example, origin in ((human, b''), (prompted, b'prompted')):
    for name, value in ((features.GENDER, b'Female'), (features.RACE, b'Black'),
                        (features.AGE, b'20-29')):
      example.features.feature[name].bytes_list.value.append(value)
    if origin:
      example.features.feature[features.AGE].bytes_list.value[:] = [b'unknown']
      example.features.feature[features.DEMOGRAPHICS_SOURCE].bytes_list.value.append(origin)
  faces = [annotator.read_face(human), annotator.read_face(prompted)]
  assert faces[1].human == {'gender': 'unknown', 'race': 'unknown', 'age': 'unknown'}
  config = AnnotatorConfig()
  assert [annotator.needs_descriptor(f, features.TRAIN, config) for f in faces] == [True, True]
  assert not annotator.needs_descriptor(faces[0], features.EVAL, config)  # nothing to fill
  proposals = [{'gender': ('Female', 0.9), 'race': ('White', 0.9), 'age': ('20-29', 0.9)}] * 2
  evaluation_, pairs = annotator.evaluate_test_split(faces, proposals, {a: 0.5 for a in
                                                                        annotate.ATTRIBUTES})
  assert evaluation_['race']['n'] == 1 and evaluation_['race']['accuracy'] == 0.0
  assert pairs == [['Female', 'Black', '20-29', 'Female', 'White', '20-29']]
