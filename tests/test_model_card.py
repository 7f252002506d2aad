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


# ---- what a person reads (issue 34, found on the demo model's card) -----------------------------

def _svg_ticks(svg: str):
  return [float(t) for t in re.findall(r'text-anchor="middle">(-?[0-9.]+)</text>', svg)]


def test_an_interval_beside_n_a_is_explained_where_it_appears():
  """The demo card showed 'n/a' and '[0.0848, 1739]' for a 0/0 ratio with no word of what that
  interval is; the explanation follows the table it appears in, and only there."""
  ratio = {'grouping': 'Black vs rest', 'metric': 'disparate_impact_real', 'value': None,
           'interval': [0.0014, 827.1], 'bound': [0.0, 1e6], 'status': 'not_measurable',
           'reason': 'the ratio is undefined (0/0)'}
  report = dict(REPORT, checks=REPORT['checks'] + [ratio])
  html = card_lib.render_html(card_lib.build_card(ModelCardConfig(), 'm', report, None,
                                                  {'pushed': False}, ingest=INGEST))
  unmeasured = html[html.index('id="checks-not_measurable"'):]
  unmeasured = unmeasured[:unmeasured.index('</table>') + 600]
  assert '[0.0014, 827.1000] \u2020' in unmeasured, unmeasured
  note = re.search(r'<p class="muted undefined-note">(.*?)</p>', unmeasured).group(1)
  assert 'undefined' in note and 'bootstrap' in note and '[0.0014, 827.1000]' in note, note
  assert 'confidence interval' in html  # what the interval column is, for every row
  plain = card_lib.render_html(card_lib.build_card(ModelCardConfig(), 'm', REPORT, None,
                                                   {'pushed': False}, ingest=INGEST))
  assert 'undefined-note' not in plain  # no interval beside n/a: nothing to explain


def test_rate_plots_stay_within_0_and_1_and_say_what_the_axis_is(card):
  html = card_lib.render_html(card)
  plots = re.findall(r'<svg.*?</svg>', html)
  assert len(plots) == 2  # FPR and FNR per group
  for svg in plots:
    ticks = _svg_ticks(svg)
    assert ticks and min(ticks) == 0.0 and max(ticks) == 1.0, ticks
    assert 'a rate, from 0 to 1' in svg


def test_plot_axis_never_runs_past_0_or_1_for_rates_and_labels_a_ratio():
  from fakefaces.components.shared.interval_plot import interval_plot  # pylint: disable=import-outside-toplevel
  rates = interval_plot([('a', 0.02, [0.0, 0.1], None), ('b', 0.9, [0.7, 1.0], None)])
  assert min(_svg_ticks(rates)) == 0.0 and max(_svg_ticks(rates)) == 1.0, _svg_ticks(rates)
  gaps = interval_plot([('a', -0.2, [-1.0, 0.3], None)])
  assert min(_svg_ticks(gaps)) == -1.0 and max(_svg_ticks(gaps)) > 0.3, _svg_ticks(gaps)
  ratio = interval_plot([('a', 1.4, [0.5, 3.0], None)], band=[0.8, 1.25], reference=1.0,
                        axis_label='ratio of two rates (1: parity; may exceed 1)')
  assert max(_svg_ticks(ratio)) > 3.0 and 'may exceed 1' in ratio


def _ingest_with(sources, face_align):
  return dict(INGEST, inputs={'sources': sources,
                              'face': {'align': face_align, 'detector': 'hog+cnn'}})


def test_data_and_licence_text_come_from_the_run():
  """The demo card named dlib alignment and FairFace/FFHQ for a model trained on generated
  crops taken as they are: the text is generated from the run's ingest report."""
  demo = _ingest_with([{'name': 'demo', 'kind': 'manifest', 'path': 'runs/demo_data/manifest.csv',
                        'role': 'train', 'align': 'none', 'demographics': 'human'}], 'none')
  texts = [lic['custom_text'] for lic in card_lib.build_card(
      ModelCardConfig(), 'm', REPORT, None, {'pushed': False}, ingest=demo)['model_details']['licenses']]
  joined = ' '.join(texts)
  assert 'runs/demo_data/manifest.csv' in joined and 'no face detection or alignment' in joined
  for absent in ('dlib', 'iBUG', 'FairFace', 'FFHQ'):
    assert absent not in joined, joined
  real = _ingest_with([
      {'name': 'fairface', 'kind': 'fairface', 'path': '/data/fairface', 'role': 'audit',
       'align': 'dlib', 'demographics': 'human'},
      {'name': 'k140', 'kind': 'kaggle140k', 'path': '/data/k140', 'role': 'train', 'align': 'none',
       'demographics': 'human'}], 'dlib')
  card = card_lib.build_card(ModelCardConfig(), 'm', REPORT, None, {'pushed': False}, ingest=real)
  joined = ' '.join(lic['custom_text'] for lic in card['model_details']['licenses'])
  assert 'CC-BY-4.0' in joined and 'FFHQ' in joined and 'iBUG 300-W' in joined
  assert 'Faces of fairface were aligned' in joined  # only the source dlib aligned
  with open(card_lib.SCHEMA_FILE, encoding='utf-8') as f:
    jsonschema.validate(json.loads(json.dumps(card)), json.load(f))
  unknown = card_lib.build_card(ModelCardConfig(), 'm', REPORT, None, {'pushed': False},
                                ingest=INGEST)['model_details']['licenses']
  assert 'not recorded' in unknown[0]['custom_text'] and 'FairFace' not in str(unknown)
