"""The model card is a document people can read, and its JSON follows the Model Card Toolkit schema.

The card is built from a FairnessGate report shaped like the gate writes it
(slices with counts and intervals, checks of every status, the thresholds), so
every assertion is about what a reader sees: integers as integers, checks
grouped by verdict, limitations naming exactly what failed or was not measured.
"""

import json
import re

import jsonschema
import pytest

from fakefaces.components.model_card import card as card_lib
from fakefaces.components.model_card.config import ModelCardConfig

NOTE = 'Trained on generated demo data only: it detects nothing in real photos.'


def _slice(name, features, n, real, fake, fpr, fnr):
  return {'slice': name, 'features': features, 'n': float(n), 'real': real, 'fake': fake,
          'accuracy': 0.9, 'auc': 0.95, 'precision': 0.88, 'recall': 0.91, 'fpr': fpr, 'fnr': fnr,
          'fpr_interval': [max(0.0, fpr - 0.05), fpr + 0.05],
          'fnr_interval': [max(0.0, fnr - 0.05), fnr + 0.05], 'tfma_intervals': {}}


REPORT = {
    'verdict': 'fail', 'blessed': False, 'reasons': ['Black vs rest: fpr_gap 0.3 outside bounds'],
    'confidence_level': 0.95, 'decision_threshold': 0.5,  # as the FairnessGate writes it
    'slices': [_slice('Overall', {}, 300, 150, 150, 0.1, 0.08),
               _slice('source:demo', {'source': 'demo'}, 300, 150, 150, 0.1, 0.08),
               _slice('race:Black', {'race': 'Black'}, 40, 20, 20, 0.3, 0.1)],
    'checks': [
        {'grouping': 'Black vs rest', 'metric': 'fpr_gap', 'value': 0.3, 'interval': [0.1, 0.5],
         'bound': [-0.05, 0.05], 'status': 'fail', 'reason': 'fpr_gap 0.3000 outside [-0.05, 0.05]'},
        {'grouping': 'age 0-2 vs rest', 'metric': 'fnr_gap', 'value': None, 'status':
         'insufficient_evidence', 'reason': 'age 0-2 has 0 fakes'},
        {'grouping': 'Male vs Female', 'metric': 'disparate_impact', 'value': 1.0,
         'interval': [0.9, 1.1], 'bound': [0.8, 1.25], 'status': 'pass', 'reason': ''}],
}
INGEST = {'by_source': {'demo': {'written': 1000, 'no_face': 0, 'unreadable': 0}}}


@pytest.fixture(scope='module')
def card():
  return card_lib.build_card(ModelCardConfig(training_data_note=NOTE), '/models/1', REPORT,
                             {'passed': True, 'calls': [{'ok': True}, {'ok': True}]},
                             {'pushed': True, 'version': '17', 'destination': '/serving/17'},
                             ingest=INGEST,
                             graphics=[{'name': 'learning curve', 'image': 'iVBORw0KGgo='}])


def test_card_json_is_valid_against_the_model_card_toolkit_schema(card):
  with open(card_lib.SCHEMA_FILE, encoding='utf-8') as f:
    schema = json.load(f)
  jsonschema.validate(json.loads(json.dumps(card)), schema)
  with pytest.raises(jsonschema.ValidationError):  # the check can fail: extra top-level keys
    jsonschema.validate(dict(card, fairness={}), schema)


def test_counts_are_integers_and_rates_keep_decimals(card):
  metrics = card['quantitative_analysis']['performance_metrics']
  counts = [m['value'] for m in metrics if m['type'] == 'n']
  assert counts == ['300', '300', '40']
  assert {m['value'] for m in metrics if m['type'] == 'fpr'} == {'0.1000', '0.3000'}
  page = card_lib.render_html(card)
  assert '300.0000' not in page and '>300<' in page
  assert card['model_parameters']['data'][0]['faces'] == 1000


def test_limitations_come_from_what_this_model_failed_or_did_not_measure(card):
  text = [item['description'] for item in card['considerations']['limitations']]
  assert text[0] == NOTE
  assert any(t.startswith('FAILED: Black vs rest: fpr_gap') for t in text)
  assert any(t.startswith('INSUFFICIENT EVIDENCE: age 0-2 vs rest: fnr_gap') for t in text)
  assert not any('disparate_impact' in t for t in text)
  assert any('Trained and evaluated only on: demo (1000 faces ingested' in t for t in text)


def test_html_reads_as_a_document(card):
  page = card_lib.render_html(card)
  # Summary before the details; the training note before everything else.
  assert page.index(NOTE) < page.index('<h2>Summary</h2>') < page.index('<h2>Limitations</h2>')
  assert 'P(fake) &ge; 0.5' in page
  # Checks grouped by verdict, failures first, each group with its count.
  order = [m.group(1) for m in re.finditer(r'<h3 id="checks-(\w+)">', page)]
  assert order == ['fail', 'insufficient_evidence', 'pass']
  assert 'Failed</span> 1 check<' in page
  # No Python dict dumps, no bare booleans.
  assert "{'" not in page and 'True' not in page and 'None' not in page
  assert '<svg' in page and 'FPR per group' in page  # the per-group rate plot with intervals
  assert 'data:image/png;base64,iVBORw0KGgo=' in page
  assert 'Serving canary: 2 of 2 signature calls' in page


def test_a_source_with_one_class_is_named_as_a_confound():
  report = dict(REPORT, slices=REPORT['slices'] + [
      _slice('source:fairface', {'source': 'fairface'}, 100, 100, 0, 0.02, 0.0)])
  card = card_lib.build_card(ModelCardConfig(), 'm', report, None, {'pushed': False})
  text = [item['description'] for item in card['considerations']['limitations']]
  assert [t for t in text if t.startswith('Source confound')] == [
      t for t in text if t.startswith('Source confound: fairface contributes only real photos')]
  assert len([t for t in text if t.startswith('Source confound')]) == 1


def test_identical_unmeasured_checks_are_one_limitation_with_their_count():
  check = {'grouping': 'race', 'metric': 'fnr_gap', 'status': 'not_measurable',
           'reason': 'no labelled fakes'}
  items = card_lib.limitations({'checks': [dict(check) for _ in range(6)]}, None, {'skipped': False})
  text = [i['description'] for i in items]
  assert text.count('NOT MEASURED: race: fnr_gap (no labelled fakes) [6 checks]') == 1
  assert not any(t == 'NOT MEASURED: race: fnr_gap (no labelled fakes)' for t in text)
