"""The FairnessGate on predicted demographics: measurable TPR/FNR/AOD,
marked as resting on the annotator, and never a pass on 0-vs-0 evidence."""

import collections

from fakefaces.components.shared import features
from fakefaces.components.fairness_gate import evaluation, fairness, report_html
from fakefaces.pipeline.config import GroupingConfig, ThresholdsConfig

BLACK = [GroupingConfig(name='Black vs rest', feature='race', group='Black')]
RACES = ('White', 'Black', 'East Asian', 'Indian')


def _thresholds(**overrides) -> ThresholdsConfig:
  base = dict(groupings=list(BLACK), judge_each_value_of=[], bootstrap_samples=500,
              min_annotator_precision=0.8, min_annotator_support=20)
  base.update(overrides)
  return ThresholdsConfig(**base)


def _planted(missed_black_fakes=0.5, per_race=100):
  """Reals with human race labels (5% called fake); fakes with *predicted* race.

  Fakes are caught at 95% except the Black ones, caught at 1 - missed_black_fakes.
  Returns (labels, scores, race, source per example).
  """
  labels, scores, race, source = [], [], [], []
  for r in RACES:
    for i in range(per_race):
      labels.append(0)
      scores.append(0.9 if i < per_race * 0.05 else 0.1)
      race.append(r)
      source.append(features.HUMAN)
    missed = missed_black_fakes if r == 'Black' else 0.05
    for i in range(per_race):
      labels.append(1)
      scores.append(0.1 if i < per_race * missed else 0.9)
      race.append(r)
      source.append(features.PREDICTED)
  return labels, scores, race, source


def _annotator_report(labels, race, source, black_precision=0.95, per_race=100):
  """An annotator report.json as the DemographicAnnotator writes it (race only varies)."""
  evaluated = collections.Counter(
      (label, 'Male', r, '20-29', 'human', s, 'human') for label, r, s in zip(labels, race, source))
  pairs = []
  for r in RACES:
    for i in range(per_race):
      # Faces predicted as r: a share (1 - precision) are truly another race.
      wrong = r == 'Black' and i >= per_race * black_precision or (
          r != 'Black' and i >= per_race * 0.95)
      true = ('White' if r != 'White' else 'Indian') if wrong else r
      pairs.append(['Male', true, '20-29', 'Male', r, '20-29'])
  right = sum(p[1] == p[4] for p in pairs)
  return {
      'test_split': 'test',
      'evaluation': {'race': {'n': len(pairs), 'accuracy': right / len(pairs)},
                     'gender': {'n': len(pairs), 'accuracy': 1.0},
                     'age': {'n': len(pairs), 'accuracy': 1.0}},
      'test_pairs_columns': ['true_gender', 'true_race', 'true_age', 'predicted_gender',
                             'predicted_race', 'predicted_age'],
      'test_pairs': pairs,
      'evaluated': [list(k) + [n] for k, n in evaluated.items()],
  }


def _judge(labels, scores, race, report, **overrides):
  slices = fairness.slices_from_predictions(labels, scores, {features.RACE: race}, 0.5)
  return evaluation.assemble_report(slices, [], _thresholds(**overrides), True, [], 'model',
                                    'evaluation', report)


def _checks(report, grouping='Black vs rest'):
  return {c['metric']: c for c in report['checks'] if c['grouping'] == grouping}


def test_planted_tpr_gap_on_predicted_demographics_is_flagged_and_named():
  labels, scores, race, source = _planted(missed_black_fakes=0.5)
  report = _judge(labels, scores, race, _annotator_report(labels, race, source))
  checks = _checks(report)
  fnr = checks['fnr_gap']
  assert fnr['status'] == fairness.FAIL
  assert fnr['value'] == 0.45  # Black fakes missed 50%, the rest 5%
  assert fnr['rests_on_predicted'] and 'predicted demographics' in fnr['reason']
  assert fnr['annotator_precision'] == 0.95
  assert checks['average_odds_difference']['status'] == fairness.FAIL
  assert checks['average_odds_difference']['rests_on_predicted']
  # FPR is measured on reals, whose race is a human label: not marked.
  assert checks['fpr_gap']['status'] == fairness.PASS
  assert not checks['fpr_gap']['rests_on_predicted']
  grouping = report['groupings'][0]
  assert grouping['disparate_impact_fake'] == round(0.5 / 0.95, 6)  # TPR ratio on fakes
  assert grouping['disparate_impact_real'] == 1.0  # FPR ratio on reals
  assert grouping['annotation']['group']['predicted_fake'] == 100
  assert 'Black vs rest: fnr_gap' in report['rests_on_predicted']
  assert report['annotator']['evaluation']['race']['accuracy'] < 1
  assert not report['blessed']
  summary = evaluation.format_summary(report)
  assert 'rest on predicted demographics' in summary
  page = report_html.render(report)
  assert 'Demographic annotator' in page and 'precision 0.950 (n 100)' in page
  assert '0.450 <span class="muted">' in page and ' *</td>' in page


def test_fair_model_on_accurate_predictions_passes_but_inaccurate_ones_do_not():
  labels, scores, race, source = _planted(missed_black_fakes=0.05)
  good = _judge(labels, scores, race, _annotator_report(labels, race, source, 0.95))
  assert good['fairness_verdict'] == fairness.PASS, good['reasons']
  assert _checks(good)['fnr_gap']['rests_on_predicted']
  # The annotator calls 40% of non-Black faces "Black": a group it cannot recognise
  # is not judged on its predictions.
  poor = _judge(labels, scores, race, _annotator_report(labels, race, source, 0.6))
  fnr = _checks(poor)['fnr_gap']
  assert fnr['status'] == fairness.INSUFFICIENT
  assert 'precision for race=Black is 0.600' in fnr['reason']
  assert poor['fairness_verdict'] == fairness.INSUFFICIENT
  # Checks on human-labelled reals alone are unaffected.
  assert _checks(poor)['fpr_gap']['status'] == fairness.PASS


def test_di_on_zero_predicted_fakes_on_both_sides_is_never_a_pass():
  """No real with demographics called fake, no fake with demographics: DI compares 0
  with 0, which must never pass (at 1.0, inside [0.002, 1043])."""
  labels, scores, race = [], [], []
  for r in RACES:
    labels += [0] * 100
    scores += [0.1] * 100
    race += [r] * 100
  labels += [1] * 100
  scores += [0.9] * 100
  race += [features.UNKNOWN] * 100
  for judge_on in ('estimate', 'interval'):
    report = _judge(labels, scores, race, None, judge_on=judge_on, min_group_size=1)
    di = _checks(report)['disparate_impact']
    assert di['status'] == fairness.INSUFFICIENT, judge_on
    assert '0/0' in di['reason']
    assert report['verdict'] != fairness.PASS
    assert report['groupings'][0]['disparate_impact_real_zero_events']


def test_an_interval_wider_than_the_configured_span_is_insufficient_not_a_pass():
  # 40 reals and 40 fakes per race, same rates everywhere: estimates in bounds, intervals wide.
  labels, scores, race, _ = _planted(missed_black_fakes=0.05, per_race=40)
  lenient = dict(min_group_size=1, disparate_impact_range=[0.5, 2.0],
                 max_abs_average_odds_difference=0.2, max_fpr_gap=0.2, max_fnr_gap=0.2)
  loose = _checks(_judge(labels, scores, race, None, **lenient))
  assert loose['fpr_gap']['status'] == fairness.PASS
  strict = _checks(_judge(labels, scores, race, None, max_interval_span_difference=0.1,
                          max_interval_span_di=0.1, **lenient))
  for metric in ('fpr_gap', 'disparate_impact'):
    assert strict[metric]['status'] == fairness.INSUFFICIENT, metric
    assert 'wider than' in strict[metric]['reason']
