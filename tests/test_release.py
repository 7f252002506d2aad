"""Production conventions end to end: baseline, serving canary, model card.

The real release half of the pipeline (`pipeline.release_components`: the
latest-blessed-model resolver, TFX's Evaluator with a baseline, the
FairnessGate, the ServingCanary on the project's server, the Pusher and
ModelCardGen) runs in a LocalDagRunner on MLMD/SQLite, six times in a row on
one metadata store, with Importers standing in for ExampleGen and the Trainer.
The candidates are hand-made SavedModels (pipeline/fixtures/demo_models.py) on 280
generated faces (20 real + 20 fake per race), whose errors are known:

run  candidate                                  accuracy  Black vs rest FPR gap  expected
1    P: production (dark-face + corner errors)  ~0.93     ~0.48                  pushed (no baseline)
2    A: fairer, less accurate (corner errors)   ~0.85     ~0.0                   refused: accuracy drop
3    B: more accurate, less fair (dark faces)   ~0.95     ~0.75                  refused: gap grew
4    C: strictly better (Nyquist only)          1.0       0.0                    pushed
5    D: C plus a signature that fails           1.0       0.0                    refused by the canary
6    P again                                                                     baseline must be C, not D

The absolute bounds are lenient on purpose (P itself must pass them): only the
comparison with production refuses A and B.
"""

import json
import os

import ml_metadata as mlmd
import pytest
from tfx import v1 as tfx
from tfx import version as tfx_version

from fakefaces.components.model_card import executor as card_executor
from fakefaces.components.serving_canary import config as canary_config
from fakefaces.components.model_card import config as card_config
from fakefaces.pipeline import config as config_lib
from fakefaces.pipeline.fixtures import demo_models
from fakefaces.pipeline import pipeline as pipeline_lib

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

THRESHOLDS_YAML = """
min_group_size: 5
min_balanced_accuracy: 0.8
min_auc: 0.5
disparate_impact_range: [0.0, 1000000.0]
max_abs_average_odds_difference: 1.0
max_fpr_gap: 1.0
max_fnr_gap: 1.0
groupings:
  - {name: Black vs rest, feature: race, group: Black}
bootstrap_samples: 200
baseline: {max_accuracy_drop: 0.01, max_auc_drop: 0.01, max_gap_growth: 0.02}
"""
CANDIDATES = {
    'P': dict(dark_cutoff=0.38, corner_cutoff=0.30),
    'A': dict(corner_cutoff=0.40),
    'B': dict(dark_cutoff=0.42),
    'C': dict(),
}
RUNS = ['P', 'A', 'B', 'C', 'D', 'P']


def _run(root, name):
  """One release run on `name`'s model; returns what it wrote, read back from MLMD."""
  examples = tfx.dsl.Importer(
      source_uri=str(root / 'examples'), artifact_type=tfx.types.standard_artifacts.Examples,
      properties={'split_names': '["test"]'}).with_id('examples')
  model = tfx.dsl.Importer(
      source_uri=str(root / 'models' / name), artifact_type=tfx.types.standard_artifacts.Model,
      custom_properties={'tfx_version': tfx_version.__version__}).with_id('model')
  thresholds = config_lib.load_thresholds(str(root / 'thresholds.yaml'))
  release = pipeline_lib.release_components(
      examples.outputs['result'], model.outputs['result'], thresholds,
      str(root / 'serving_model'), canary_config.CanaryConfig(num_examples=4),
      card_config.ModelCardConfig())
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(root / 'metadata.sqlite'))
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='release-test', pipeline_root=str(root / 'pipeline_root'),
      components=[examples, model] + release, enable_cache=False,
      metadata_connection_config=metadata,
      beam_pipeline_args=['--direct_running_mode=in_memory', '--direct_num_workers=1']))
  store = mlmd.MetadataStore(metadata)

  def latest(type_name):
    return max(store.get_artifacts_by_type(type_name), key=lambda a: a.id)

  def read(artifact, file_name):
    with open(os.path.join(artifact.uri, file_name), encoding='utf-8') as f:
      return json.load(f)

  card = latest('fakefaces.ModelCard')
  return {
      'gate': read(latest('fakefaces.FairnessReport'), 'report.json'),
      'canary': read(latest('fakefaces.ServingCanaryReport'), 'report.json'),
      'pushed': latest('PushedModel'),
      'card': read(card, card_executor.CARD_JSON), 'card_artifact': card,
      'versions': sorted(d for d in os.listdir(root / 'serving_model') if d.isdigit())
                  if (root / 'serving_model').exists() else [],
  }


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('release')
  split = root / 'examples' / 'Split-test'
  demo_models.write_demo_examples(str(split / 'test.tfrecord.gz'), 280, seed=1)
  for name, knobs in CANDIDATES.items():
    demo_models.composed_model(str(root / 'models' / name / 'Format-Serving'), **knobs)
  demo_models.broken_signature_model(str(root / 'models' / 'D' / 'Format-Serving'))
  (root / 'thresholds.yaml').write_text(THRESHOLDS_YAML)
  results = [_run(root, name) for name in RUNS]
  return root, results


def _overall(gate, metric):
  return next(r for r in gate['production']['overall'] if r['metric'] == metric)


def _black_fpr_gap(gate):
  return next(r for r in gate['production']['gaps']
              if r['grouping'] == 'Black vs rest' and r['metric'] == 'fpr_gap')


def test_first_run_has_no_baseline_and_is_pushed_on_absolute_bounds(runs):
  root, results = runs
  first = results[0]
  assert first['gate']['blessed'] is True, first['gate']['reasons']
  assert first['gate']['production']['production_model_uri'] is None
  assert first['canary']['passed'] is True
  assert first['pushed'].custom_properties['pushed'].int_value == 1
  assert len(first['versions']) == 1


def test_fairer_but_less_accurate_candidate_is_refused(runs):
  root, results = runs
  gate = results[1]['gate']
  assert gate['blessed'] is False
  assert gate['production']['production_model_uri'] == str(root / 'models' / 'P')
  # Balanced accuracy, each model at its own operating point (here both explicit 0.5).
  accuracy = _overall(gate, 'balanced_accuracy')
  assert accuracy['status'] == 'regressed' and accuracy['change'] < -0.05
  assert _black_fpr_gap(gate)['growth'] < -0.3  # much fairer than production...
  assert all(r['status'] != 'regressed' for r in gate['production']['gaps'])
  assert gate['evaluator_blessed'] is False  # ...but TFMA's change threshold refused it
  assert any('balanced_accuracy changed by' in r for r in gate['reasons']), gate['reasons']
  assert results[1]['pushed'].custom_properties['pushed'].int_value == 0
  assert len(results[1]['versions']) == 1


def test_more_accurate_but_less_fair_candidate_is_refused(runs):
  _, results = runs
  gate = results[2]['gate']
  assert gate['blessed'] is False
  assert _overall(gate, 'accuracy')['change'] > 0.01  # more accurate than production...
  gap = _black_fpr_gap(gate)
  assert gap['status'] == 'regressed' and gap['growth'] > 0.2  # ...and less fair
  assert any(r.startswith('vs production: Black vs rest: |fpr_gap| grew') for r in gate['reasons'])
  assert results[2]['pushed'].custom_properties['pushed'].int_value == 0
  assert len(results[2]['versions']) == 1


def test_strictly_better_candidate_is_pushed_with_its_card(runs):
  root, results = runs
  run = results[3]
  assert run['gate']['blessed'] is True, run['gate']['reasons']
  assert run['gate']['production']['production_model_uri'] == str(root / 'models' / 'P')
  assert run['pushed'].custom_properties['pushed'].int_value == 1
  assert len(run['versions']) == 2
  # The card sits beside the pushed version, in MLMD, and as HTML.
  version_dir = root / 'serving_model' / run['versions'][-1]
  assert (version_dir / 'saved_model.pb').is_file()
  card = json.loads((version_dir / card_executor.CARD_JSON).read_text())
  assert card['model_details']['deployment']['version'] == run['versions'][-1]
  html = (version_dir / card_executor.CARD_HTML).read_text()
  assert html.startswith('<!DOCTYPE html>') and 'Black vs rest' in html
  # No ingestion in this pipeline: the card says its data's licences are unknown, naming none.
  assert 'licences of its data are unknown here' in html and 'iBUG' not in html
  assert run['card_artifact'].custom_properties['pushed'].int_value == 1
  assert {'name': 'demo'} == {'name': card['model_parameters']['data'][0]['name']}
  assert card['model_parameters']['data'][0]['evaluated']['examples'] == 280
  metrics = card['quantitative_analysis']['performance_metrics']
  assert any(m['type'] == 'fpr' and 'confidence_interval' in m for m in metrics)
  # The source's AUC and balanced accuracy; the one grouping's mixed DI, AOD, FPR and FNR
  # gaps, and its DI per class (FPR ratio on reals, TPR ratio on fakes).
  assert len(card['quantitative_analysis']['fairness']['checks']) == 8
  assert card['model_parameters']['operating_point']['decision_threshold'] == 0.5
  assert 'Operating point: "fake" when P(fake) &ge; 0.5' in html


def test_every_pushed_version_has_a_card_naming_failed_and_unmeasured_checks(runs):
  root, results = runs
  for version in results[-1]['versions']:
    card = json.loads((root / 'serving_model' / version / card_executor.CARD_JSON).read_text())
    assert card['model_details']['deployment']['pushed'] is True
  # The production model P passed lenient bounds, yet its card names what the gate saw.
  card = results[0]['card']
  limitations = [item['description'] for item in card['considerations']['limitations']]
  assert any(text.startswith('Trained and evaluated only on: demo') for text in limitations)
  refused = results[2]['card']  # B: refused, documented in MLMD all the same
  assert any('|fpr_gap| grew' in text for text in
             (item['description'] for item in refused['considerations']['limitations']))
  assert results[2]['card_artifact'].custom_properties['pushed'].int_value == 0


def test_card_lists_every_not_passed_check():
  from fakefaces.components.model_card import card as card_lib  # pylint: disable=g-import-not-at-top
  checks = [{'grouping': 'Black vs rest', 'metric': 'fpr_gap', 'value': 0.3, 'status': 'fail',
             'reason': 'fpr_gap 0.3000 outside [-0.05, 0.05]'},
            {'grouping': 'age 0-2 vs rest', 'metric': 'fnr_gap', 'value': None,
             'status': 'insufficient_evidence', 'reason': 'age 0-2 has 0 fakes'},
            {'grouping': 'Male vs Female', 'metric': 'average_odds_difference', 'value': None,
             'status': 'not_measurable', 'reason': 'declared'},
            {'grouping': 'Male vs Female', 'metric': 'disparate_impact', 'value': 1.0,
             'status': 'pass', 'reason': ''}]
  card = card_lib.build_card(card_config.ModelCardConfig(), 'm', {'checks': checks},
                             None, {'pushed': False})
  text = '\n'.join(item['description'] for item in card['considerations']['limitations'])
  assert 'FAILED: Black vs rest: fpr_gap' in text
  assert 'INSUFFICIENT EVIDENCE: age 0-2 vs rest: fnr_gap' in text
  assert 'NOT MEASURED: Male vs Female: average_odds_difference' in text
  assert 'disparate_impact' not in text
  assert card['quantitative_analysis']['fairness']['failed'] == ['Black vs rest: fpr_gap']
  assert 'no demographic annotator was used' in text
  annotator_report = {'test_split': 'test', 'features': 'clip_embedding',
                      'descriptor': 'CLIP ViT-B/16 image embedding',
                      'evaluation': {'race': {'accuracy': 0.91, 'n': 588, 'coverage': 0.7,
                                              'min_confidence': 0.5, 'confident_accuracy': 0.95,
                                              'confusion': [[1]]}}}
  annotated = card_lib.build_card(card_config.ModelCardConfig(), 'm', {'checks': []}, None,
                                  {'pushed': False}, annotator=annotator_report)
  assert annotated['model_parameters']['demographic_annotator']['used'] is True
  assert annotated['model_parameters']['demographic_annotator']['accuracy_by_attribute']['race'] == {
      'accuracy': 0.91, 'n': 588, 'coverage': 0.7, 'min_confidence': 0.5,
      'confident_accuracy': 0.95}
  # The card says which features the annotator's classifiers read.
  assert annotated['model_parameters']['demographic_annotator']['features'] == 'clip_embedding'
  assert 'Features: clip_embedding (CLIP ViT-B/16 image embedding)' in card_lib.render_html(annotated)


def test_model_failing_a_signature_call_is_never_pushed(runs):
  root, results = runs
  run = results[4]
  assert run['gate']['blessed'] is True  # accurate and fair: only the canary can stop it
  assert run['canary']['passed'] is False
  assert demo_models.BROKEN_SIGNATURE in run['canary']['signatures']
  assert any(p.startswith('explain (real input)') for p in run['canary']['problems'])
  bad = [c for c in run['canary']['calls'] if c['signature'] == 'from_examples']
  assert [c['code'] for c in bad] == ['OK', 'INVALID_ARGUMENT']
  assert run['pushed'].custom_properties['pushed'].int_value == 0
  assert len(run['versions']) == 2
  assert any('Serving canary: explain' in item['description']
             for item in run['card']['considerations']['limitations'])


def test_gate_blessed_but_canary_refused_model_never_becomes_production(runs):
  root, results = runs
  assert results[4]['gate']['production']['production_model_uri'] == str(root / 'models' / 'C')
  last = results[5]['gate']  # P again, after D: the baseline is still C
  assert last['production']['production_model_uri'] == str(root / 'models' / 'C')
  assert last['blessed'] is False
