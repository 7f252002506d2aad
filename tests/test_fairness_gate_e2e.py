"""The gate end to end: real TFMA via `fakefaces gate`, and the real FairnessGate
and Pusher in a TFX LocalDagRunner pipeline (MLMD on SQLite), no mocks.

Two hand-made SavedModels (pipeline/fixtures/demo_models.py) score
generated faces: one accurate for everyone, one that also calls dark real
faces fake. Each is evaluated once (module fixtures); the TFX test reuses
those TFMA outputs as the Evaluator's.
"""

import json
import os

import tensorflow as tf

import ml_metadata as mlmd
import pytest
from tfx import v1 as tfx
from tfx import version as tfx_version

from fakefaces.components.shared import features, reports
from fakefaces.components.fairness_gate import evaluation, fairness
from fakefaces.pipeline.fixtures import demo_models
from fakefaces.components.fairness_gate.component import FairnessGate
from fakefaces.pipeline.cli import cli
from fakefaces.pipeline import config as config_lib

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

THRESHOLDS_YAML = """
min_group_size: 5
min_balanced_accuracy: 0.8
min_auc: 0.8
groupings:
  - {name: Male vs Female, feature: gender, group: Female, reference: Male}
  - {name: Black vs rest, feature: race, group: Black}
judge_each_value_of: [race, race x gender]
bootstrap_samples: 500
"""


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp('fairness_gate')
  # 280 faces: 20 reals and 20 fakes per race, 10 and 10 per race x gender.
  demo_models.write_demo_examples(str(root / 'data' / 'test.tfrecord.gz'), 280, seed=1)
  demo_models.nyquist_model(str(root / 'fair' / 'Format-Serving'))
  demo_models.dark_face_model(str(root / 'biased' / 'Format-Serving'))
  (root / 'thresholds.yaml').write_text(THRESHOLDS_YAML)
  return root


def _gate(workdir, name):
  out = workdir / f'gate_{name}'
  code = cli.main(['gate', '--model', str(workdir / name / 'Format-Serving'),
                   '--examples', str(workdir / 'data' / '*.gz'),
                   '--thresholds', str(workdir / 'thresholds.yaml'), '--out', str(out)])
  with open(out / reports.REPORT_JSON, encoding='utf-8') as f:
    return code, out, json.load(f)


@pytest.fixture(scope='module')
def fair_gate(workdir):
  return _gate(workdir, 'fair')


@pytest.fixture(scope='module')
def biased_gate(workdir):
  return _gate(workdir, 'biased')


def test_cli_blocks_the_biased_model_naming_the_group(biased_gate):
  code, out, report = biased_gate
  assert code == 1
  assert report['verdict'] == 'fail' and report['blessed'] is False
  assert report['evaluator_blessed'] is True  # accurate overall: the fairness bounds refuse it
  # Most failures first: the group the model wrongs.
  assert fairness.refusals_by_grouping(report['checks'])[0][0] == 'Black vs rest'
  black_reasons = [r for r in report['reasons'] if r.startswith('Black vs rest: ')]
  assert black_reasons[0].startswith('Black vs rest: disparate_impact ')
  black = {c['metric']: c for c in report['checks'] if c['grouping'] == 'Black vs rest'}
  assert black['fpr_gap']['status'] == 'fail' and black['fpr_gap']['value'] > 0.5
  assert black['fnr_gap']['status'] == 'pass'  # it still finds every fake
  assert 'Black vs rest' in (out / evaluation.REPORT_HTML).read_text(encoding='utf-8')


def test_cli_passes_the_fair_model(fair_gate, capsys):
  code, out, report = fair_gate
  assert code == 0, report['reasons']
  assert report['blessed'] is True and report['reasons'] == []
  overall = next(r for r in report['slices'] if r['slice'] == 'Overall')
  assert overall['n'] == 280 and overall['accuracy'] == 1.0
  # Every race and race x gender group was judged, each with a TFMA slice.
  names = {g['name'] for g in report['groupings']}
  assert {'Indian vs rest', 'Black x Female vs rest'} <= names and len(names) == 22
  assert os.path.isdir(out / 'evaluation')


def test_stricter_group_size_is_insufficient_evidence_exit_2(workdir, fair_gate):
  """Same TFMA output, stricter minimum group size: judged again without TFMA."""
  _, out, _ = fair_gate
  thresholds = config_lib.load_thresholds(str(workdir / 'thresholds.yaml'))
  thresholds.min_group_size = 11  # race x gender groups hold 10 reals
  report = evaluation.build_report(str(out / 'evaluation'), thresholds, True, 'fair',
                                   decision_threshold=0.5)
  assert report['verdict'] == 'insufficient_evidence'
  assert any('Black x Female has 10 real photos (need 11)' in r for r in report['reasons'])
  from fakefaces.pipeline.cli.commands import gate  # pylint: disable=g-import-not-at-top
  assert gate.exit_code(report['verdict']) == 2


def _one_class(source: str, out: str, keep: int) -> str:
  """The test records of one label only, as ../shared/field_cases/gate_one_class/make_oneclass.py
  writes them (there from the demo's test split)."""
  with tf.io.TFRecordWriter(out, options='GZIP') as writer:
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(source), compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      if example.features.feature[features.LABEL].int64_list.value[0] == keep:
        writer.write(record.numpy())
  return out


@pytest.mark.parametrize('keep, missing', [(features.REAL, 'fakes'), (features.FAKE, 'real photos')])
def test_one_class_examples_are_insufficient_evidence_exit_2(workdir, capsys, keep, missing):
  """Field case gate_one_class: AUC and balanced accuracy are undefined with one class.

  Before, TFMA's AUC of 0 on a one-class slice read as a failed bound: FAIL, exit 1,
  while the summary printed "auc n/a". Undefined is insufficient evidence: exit 2, and
  the report names what is missing; no check rests on a 0/0.
  """
  examples = _one_class(str(workdir / 'data' / '*.gz'),
                        str(workdir / f'one_class_{keep}.tfrecord.gz'), keep)
  out = workdir / f'gate_one_class_{keep}'
  code = cli.main(['gate', '--model', str(workdir / 'fair' / 'Format-Serving'),
                   '--examples', examples, '--thresholds', str(workdir / 'thresholds.yaml'),
                   '--out', str(out)])
  printed = capsys.readouterr().out
  report = json.loads((out / reports.REPORT_JSON).read_text(encoding='utf-8'))
  assert code == 2, report['reasons']
  assert report['verdict'] == 'insufficient_evidence' and report['blessed'] is False
  assert report['evaluator_verdict'] == 'insufficient_evidence'  # not 'fail'
  assert not [c for c in report['checks'] if c['status'] == 'fail']
  assert any('no source holds both classes' in r and f'0 {missing}' in r
             for r in report['reasons']), report['reasons']
  assert any('auc is undefined on Overall' in r for r in report['reasons']), report['reasons']
  # The one class there is judged on the one rate it defines (the fair model is right).
  (source,) = [c for c in report['source_checks'] if c['grouping'] == 'source demo']
  assert source['metric'] == ('fpr' if keep == features.REAL else 'tpr')
  assert source['status'] == 'pass'
  assert 'INSUFFICIENT_EVIDENCE' in printed and '0 ' + missing in printed


@pytest.mark.parametrize('change, message', [
    ({'--model': 'missing_model'}, 'no saved_model.pb'),
    ({'--examples': 'nothing_here_*.gz'}, 'no file matches'),
    ({'--examples': 'thresholds.yaml'}, "unknown key(s) ['bootstrap_samples'"),
    ({'--thresholds': 'bad_thresholds.yaml'}, 'bad_thresholds.yaml.not_measurable[0]'),
    ({'--examples': 'not_a_record.gz'}, 'truncated or corrupt TFRecord file'),
    ({'--annotations': 'no_annotations'}, 'no_annotations: no report.json there'),
])
def test_cli_bad_input_exits_2_naming_it(workdir, capsys, change, message):
  (workdir / 'bad_thresholds.yaml').write_text('not_measurable: [tpr]\n')
  (workdir / 'not_a_record.gz').write_text('hello')
  (workdir / 'no_annotations').mkdir(exist_ok=True)
  args = {'--model': str(workdir / 'fair' / 'Format-Serving'),
          '--examples': str(workdir / 'data' / '*.gz'),
          '--thresholds': str(workdir / 'thresholds.yaml'), '--out': str(workdir / 'bad_out')}
  args.update({k: str(workdir / v) for k, v in change.items()})
  assert cli.main(['gate'] + [x for kv in args.items() for x in kv]) == 2
  err = capsys.readouterr().err
  assert 'bad input' in err and message in err, err


def test_truncated_or_corrupt_gate_inputs_are_bad_input_exit_2(workdir, field_case, tmp_path,
                                                                capsys):
  """Field case gate_truncated_examples: the examples cut to 60% (an interrupted copy) were
  "a bound failed", exit 1, after a 58-line Beam traceback. Every input the gate reads, damaged,
  is bad input: exit 2, one line naming the file, no report written."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  (source,) = tf.io.gfile.glob(str(workdir / 'data' / '*.gz'))
  truncated = tmp_path / 'test_cut.tfrecord.gz'
  subprocess.run([sys.executable, os.path.join(field_case('gate_truncated_examples'),
                                               'make_truncated.py'), source, str(truncated)],
                 check=True, capture_output=True, timeout=120)
  broken_model = tmp_path / 'broken_model'
  broken_model.mkdir()
  (broken_model / 'saved_model.pb').write_bytes(b'\x08\x01 not a protobuf' * 10)
  annotations = tmp_path / 'annotations'
  annotations.mkdir()
  (annotations / reports.REPORT_JSON).write_text('{"classes": [', encoding='utf-8')
  base = {'--model': str(workdir / 'fair' / 'Format-Serving'),
          '--examples': str(workdir / 'data' / '*.gz'),
          '--thresholds': str(workdir / 'thresholds.yaml')}
  cases = [({'--examples': str(truncated)}, f'--examples {truncated}: truncated or corrupt TFRecord'),
           ({'--model': str(broken_model)}, f'--model {broken_model}: cannot be loaded as a SavedModel'),
           ({'--annotations': str(annotations)}, f'--annotations {annotations}: unreadable')]
  for i, (change, message) in enumerate(cases):
    out = tmp_path / f'out{i}'
    args = dict(base, **change, **{'--out': str(out)})
    assert cli.main(['gate'] + [x for kv in args.items() for x in kv]) == 2, change
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('fakefaces gate: bad input: '), captured.err
    assert message in lines[0] and 'Traceback' not in captured.err, lines
    assert not (out / reports.REPORT_JSON).exists()


def _run_gate_pipeline(root, model_dir, evaluation_dir, thresholds_file):
  """Importers stand in for Trainer and Evaluator; FairnessGate and Pusher are the real ones."""
  evaluator_blessed = int(evaluation.validation_ok(evaluation_dir))
  model = tfx.dsl.Importer(
      source_uri=model_dir, artifact_type=tfx.types.standard_artifacts.Model,
      custom_properties={'tfx_version': tfx_version.__version__}).with_id('model')
  evaluated = tfx.dsl.Importer(
      source_uri=evaluation_dir,
      artifact_type=tfx.types.standard_artifacts.ModelEvaluation).with_id('evaluation')
  evaluator_blessing = tfx.dsl.Importer(
      source_uri=evaluation_dir, artifact_type=tfx.types.standard_artifacts.ModelBlessing,
      custom_properties={'blessed': evaluator_blessed}).with_id('evaluator_blessing')
  gate = FairnessGate(evaluation=evaluated.outputs['result'],
                      evaluator_blessing=evaluator_blessing.outputs['result'],
                      model=model.outputs['result'],
                      thresholds=config_lib.load_thresholds(thresholds_file))
  serving_dir = os.path.join(root, 'serving_model')
  pusher = tfx.components.Pusher(
      model=model.outputs['result'], model_blessing=gate.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)))
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(root, 'metadata.sqlite'))
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='fairness-gate-test', pipeline_root=os.path.join(root, 'pipeline_root'),
      components=[model, evaluated, evaluator_blessing, gate, pusher], enable_cache=False,
      metadata_connection_config=metadata))
  store = mlmd.MetadataStore(metadata)
  (blessing,) = store.get_artifacts_by_type('ModelBlessing')[-1:]
  (pushed,) = store.get_artifacts_by_type('PushedModel')
  (report,) = store.get_artifacts_by_type('fakefaces.FairnessReport')
  return blessing, pushed, report, serving_dir


@pytest.mark.parametrize('name, fixture', [('biased', 'biased_gate'), ('fair', 'fair_gate')])
def test_pusher_ships_only_what_the_gate_blesses(workdir, request, name, fixture):
  _, out, _ = request.getfixturevalue(fixture)
  root = workdir / f'tfx_{name}'
  blessing, pushed, report, serving_dir = _run_gate_pipeline(
      str(root), str(workdir / name), str(out / 'evaluation'), str(workdir / 'thresholds.yaml'))
  blessed = blessing.custom_properties['blessed'].int_value
  assert blessing.custom_properties['current_model'].string_value == str(workdir / name)
  assert 'current_model_id' in blessing.custom_properties
  assert os.path.exists(os.path.join(blessing.uri, 'BLESSED' if blessed else 'NOT_BLESSED'))
  with open(os.path.join(report.uri, reports.REPORT_JSON), encoding='utf-8') as f:
    gate_report = json.load(f)
  assert os.path.isfile(os.path.join(report.uri, evaluation.REPORT_HTML))
  if name == 'biased':
    assert blessed == 0 and gate_report['verdict'] == 'fail'
    assert 'Black vs rest' in blessing.custom_properties['reasons'].string_value
    assert pushed.custom_properties['pushed'].int_value == 0
    assert not os.path.exists(serving_dir) or not os.listdir(serving_dir)
  else:
    assert blessed == 1 and gate_report['blessed'] is True
    assert pushed.custom_properties['pushed'].int_value == 1
    (version,) = os.listdir(serving_dir)
    assert os.path.isfile(os.path.join(serving_dir, version, 'saved_model.pb'))


def test_cli_ingests_a_pipeline_config_and_evaluates_its_test_split(workdir, tmp_path, capsys):
  from fakefaces.pipeline import demo_data  # pylint: disable=g-import-not-at-top
  manifest = demo_data.generate(str(tmp_path / 'demo'), num_images=60, seed=2)
  config = tmp_path / 'pipeline.yaml'
  config.write_text(f'ingest:\n  sources: [{{kind: manifest, path: {manifest}, name: demo}}]\n'
                    '  face: {align: none, output_size: 128}\n')
  thresholds = tmp_path / 'gender_only.yaml'
  thresholds.write_text('min_group_size: 3\ngroupings:\n'
                        '  - {name: Male vs Female, feature: gender, group: Female, '
                        'reference: Male}\n')
  out = tmp_path / 'out'
  code = cli.main(['gate', '--model', str(workdir / 'fair' / 'Format-Serving'),
                   '--examples', str(config), '--thresholds', str(thresholds),
                   '--out', str(out)])
  printed = capsys.readouterr().out
  assert code == 0, printed
  assert 'fairness gate: PASS (BLESSED)' in printed
  assert os.listdir(out / 'examples' / 'Split-test')
  assert sorted(os.listdir(out / 'examples')) == ['Split-eval', 'Split-test', 'Split-train']
  report = json.loads((out / reports.REPORT_JSON).read_text())
  overall = next(r for r in report['slices'] if r['slice'] == 'Overall')
  assert overall['accuracy'] == 1.0 and 0 < overall['n'] < 60  # the test split only
