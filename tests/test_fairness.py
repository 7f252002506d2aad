"""Fairness metrics and the gate's judgement, on prediction sets built in the test.

DI and AOD are checked against fairlearn's independent implementation; planted
biased predictions must be blocked with the group named; missing evidence
must never pass.
"""

import html.parser
import math
import json

import numpy as np
import pytest
from fairlearn import metrics as fl

from fakefaces.components.shared import features, thresholds as thresholds_lib
from fakefaces.components.shared.thresholds import within_bound
from fakefaces.components.fairness_gate import evaluation, fairness, report_html
from fakefaces.pipeline import config as config_lib
from fakefaces.pipeline.config import ConfigError, GroupingConfig, ThresholdsConfig

PAPER_RACE_GENDER = [
    GroupingConfig(name='Male vs Female', feature='gender', group='Female', reference='Male'),
    GroupingConfig(name='White vs rest', feature='race', group='White'),
    GroupingConfig(name='Black vs rest', feature='race', group='Black'),
]


def _thresholds(**overrides) -> ThresholdsConfig:
  base = dict(groupings=list(PAPER_RACE_GENDER), judge_each_value_of=['race'],
              bootstrap_samples=500)
  base.update(overrides)
  return ThresholdsConfig(**base)


def _planted(flag_reals_of=None, flag_rate=0.4, fake_demographics=True, per_cell=30):
  """Per race x gender: `per_cell` reals (2 called fake) and fakes (2 missed).

  Every group has exactly the same FPR and FNR, unless `flag_reals_of` names a
  race whose reals are then called fake at `flag_rate`.
  """
  labels, scores, race, gender = [], [], [], []
  for r in features.RACES:
    for g in features.GENDERS:
      flagged = round(per_cell * flag_rate) if r == flag_reals_of else 2
      for i in range(per_cell):
        labels.append(0)
        scores.append(0.9 if i < flagged else 0.1)
        race.append(r)
        gender.append(g)
      for i in range(per_cell):
        labels.append(1)
        scores.append(0.1 if i < 2 else 0.9)
        race.append(r if fake_demographics else features.UNKNOWN)
        gender.append(g if fake_demographics else features.UNKNOWN)
  return labels, scores, {features.RACE: race, features.GENDER: gender}


def _slices(labels, scores, columns):
  return fairness.slices_from_predictions(labels, scores, columns, 0.5,
                                          crosses=[(features.RACE, features.GENDER)])


def _checks(result, grouping):
  return {c['metric']: c for c in result['checks'] if c['grouping'] == grouping}


def test_di_and_aod_agree_with_fairlearn():
  rng = np.random.default_rng(1)
  n = 3000
  race = rng.choice(features.RACES, size=n)
  gender = rng.choice(features.GENDERS, size=n)
  labels = rng.integers(0, 2, size=n)
  # Predictions that depend on the label and, unevenly, on race and gender.
  bias = np.where(race == 'Black', 0.15, 0.0) + np.where(gender == 'Female', -0.05, 0.0)
  scores = np.clip(0.3 + 0.4 * labels + bias + rng.normal(0, 0.2, size=n), 0, 1)
  predicted = (scores >= 0.5).astype(int)
  slices = _slices(labels, scores, {features.RACE: race, features.GENDER: gender})
  result = fairness.judge(slices, _thresholds(min_group_size=1))
  summaries = {g['name']: g for g in result['groupings']}
  cases = {'Black vs rest': race == 'Black', 'White vs rest': race == 'White',
           'Indian vs rest': race == 'Indian', 'Male vs Female': gender == 'Female'}
  for name, in_group in cases.items():
    frame = fl.MetricFrame(
        metrics={'sr': fl.selection_rate, 'fpr': fl.false_positive_rate,
                 'tpr': fl.true_positive_rate},
        y_true=labels, y_pred=predicted, sensitive_features=in_group)
    by = frame.by_group
    di = by.loc[True, 'sr'] / by.loc[False, 'sr']
    aod = ((by.loc[True, 'fpr'] - by.loc[False, 'fpr']) +
           (by.loc[True, 'tpr'] - by.loc[False, 'tpr'])) / 2
    ours = summaries[name]
    assert ours['disparate_impact'] == pytest.approx(di, abs=1e-6), name
    assert ours['average_odds_difference'] == pytest.approx(aod, abs=1e-6), name
    assert ours['fpr_gap'] == pytest.approx(by.loc[True, 'fpr'] - by.loc[False, 'fpr'], abs=1e-6)
    # fairlearn's two-group summaries follow from the same numbers.
    dp_ratio = fl.demographic_parity_ratio(labels, predicted, sensitive_features=in_group)
    assert min(ours['disparate_impact'], 1 / ours['disparate_impact']) == pytest.approx(
        dp_ratio, abs=1e-6)
    eo_diff = fl.equalized_odds_difference(labels, predicted, sensitive_features=in_group)
    assert max(abs(ours['fpr_gap']), abs(ours['fnr_gap'])) == pytest.approx(eo_diff, abs=1e-6)
  # The planted race effect is what the gate flags.
  assert summaries['Black vs rest']['disparate_impact'] > 1.25


def test_fair_predictions_pass():
  result = fairness.judge(_slices(*_planted()), _thresholds())
  assert result['verdict'] == fairness.PASS, [c for c in result['checks'] if c['status'] != 'pass']
  assert {g['name'] for g in result['groupings']} >= {'Indian vs rest', 'Black vs rest'}


def test_planted_bias_against_one_race_is_blocked_and_named():
  result = fairness.judge(_slices(*_planted(flag_reals_of='Indian')), _thresholds())
  assert result['verdict'] == fairness.FAIL
  indian = _checks(result, 'Indian vs rest')
  assert indian['fpr_gap']['status'] == fairness.FAIL
  assert indian['disparate_impact']['status'] == fairness.FAIL
  assert indian['average_odds_difference']['status'] == fairness.FAIL
  assert indian['fnr_gap']['status'] == fairness.PASS  # fakes were treated alike
  report = evaluation.assemble_report(_slices(*_planted(flag_reals_of='Indian')), [],
                                      _thresholds(), True, [], 'model', 'eval')
  assert report['blessed'] is False
  assert any(r.startswith('Indian vs rest: fpr_gap') for r in report['reasons'])
  refused = [l for l in evaluation.format_summary(report).splitlines() if l.startswith('  - ')]
  assert refused[0].startswith('  - Indian vs rest: disparate_impact')  # the worst comes first


def test_empty_slice_is_insufficient_evidence_never_pass():
  thresholds = _thresholds(groupings=[GroupingConfig(name='age 70+ vs rest', feature='age',
                                                     group='more than 70')],
                           judge_each_value_of=[])
  labels, scores, columns = _planted()
  columns[features.AGE] = ['20-29'] * len(labels)  # nobody over 70
  result = fairness.judge(_slices(labels, scores, columns), thresholds)
  assert result['verdict'] == fairness.INSUFFICIENT
  for check in result['checks']:
    assert check['status'] == fairness.INSUFFICIENT
    assert 'more than 70 has 0' in check['reason'] and 'insufficient evidence' in check['reason']
  report = evaluation.assemble_report(_slices(labels, scores, columns), [], thresholds, True, [],
                                      'model', 'eval')
  assert report['verdict'] == 'insufficient_evidence' and report['blessed'] is False
  assert all('insufficient evidence' in r for r in report['reasons'])


def test_unlabelled_fakes_make_fnr_checks_insufficient_unless_declared():
  planted = _planted(fake_demographics=False)  # like FairFace + GAN faces
  strict = fairness.judge(_slices(*planted), _thresholds())
  black = _checks(strict, 'Black vs rest')
  assert black['fpr_gap']['status'] == fairness.PASS
  assert black['fnr_gap']['status'] == fairness.INSUFFICIENT
  assert 'Black has 0 fakes' in black['fnr_gap']['reason']
  assert strict['verdict'] == fairness.INSUFFICIENT

  # The TPR ratio on fakes (disparate_impact_fake) needs fake demographics too.
  declared = _thresholds(not_measurable=['fnr_gap', 'average_odds_difference',
                                         'disparate_impact_fake'])
  # Without source slices the accuracy bounds are judged on all examples, with TFMA's AUC.
  overall_auc = [{'slice': evaluation.OVERALL, 'features': {}, 'auc': 0.95}]
  report = evaluation.assemble_report(_slices(*planted), overall_auc, declared, True, [], 'm',
                                      'e')
  assert report['verdict'] == fairness.PASS and report['blessed'] is True
  statuses = {c['status'] for c in report['checks'] if c['metric'] == 'fnr_gap'}
  assert statuses == {fairness.NOT_MEASURABLE}  # reported, never 'pass'
  assert 'Black vs rest: fnr_gap' in report['not_measured']
  assert 'NOT passed' in evaluation.format_summary(report)
  assert any(w.startswith('no evaluated fake carries a known race') for w in report['data_warnings'])
  # The declaration does not hide a real FPR bias.
  biased = _planted(flag_reals_of='Black', fake_demographics=False)
  assert fairness.judge(_slices(*biased), declared)['verdict'] == fairness.FAIL


def test_evaluator_refusal_blocks_even_a_fair_model():
  report = evaluation.assemble_report(_slices(*_planted()), [], _thresholds(), False,
                                      ['binary_accuracy 0.5 on Overall, needs >= 0.8'], 'm', 'e')
  assert report['blessed'] is False and report['verdict'] == fairness.FAIL
  assert report['fairness_verdict'] == fairness.PASS
  assert report['reasons'][0].startswith(evaluation.EVALUATOR_NOT_BLESSED)


def test_intervals_are_seeded_cover_the_estimate_and_can_gate():
  slices = _slices(*_planted(flag_reals_of='Indian', flag_rate=0.15))
  first = fairness.judge(slices, _thresholds())
  again = fairness.judge(slices, _thresholds())
  assert first == again
  for g in first['groupings']:
    for metric in thresholds_lib.FAIRNESS_METRICS:
      low, high = g[f'{metric}_interval']
      assert low <= g[metric] + 1e-9 and g[metric] - 1e-9 <= high, (g['name'], metric)
  # Indian FPR 0.15 vs 0.067: the estimate of the FPR gap (0.083) is inside a
  # 0.1 bound, but not its whole interval: 'interval' mode says so.
  lenient = dict(max_fpr_gap=0.1, max_abs_average_odds_difference=0.1,
                 disparate_impact_range=[0.5, 2.0])
  by_estimate = _checks(fairness.judge(slices, _thresholds(**lenient)), 'Indian vs rest')
  by_interval = _checks(fairness.judge(slices, _thresholds(judge_on='interval', **lenient)),
                        'Indian vs rest')
  assert by_estimate['fpr_gap']['status'] == fairness.PASS
  assert by_interval['fpr_gap']['status'] == fairness.INSUFFICIENT
  assert 'interval' in by_interval['fpr_gap']['reason']


def test_disparate_impact_edge_cases():
  nobody_flagged = {(): fairness.Counts(tn=100, fn=100),
                    (('race', 'Black'),): fairness.Counts(tn=50, fn=50),
                    (('race', 'White'),): fairness.Counts(tn=50, fn=50)}
  grouping = [GroupingConfig(name='Black vs rest', feature='race', group='Black')]
  result = fairness.judge(nobody_flagged, _thresholds(groupings=grouping, judge_each_value_of=[]))
  # 0 predicted fakes on both sides: DI is 0/0, never a pass (not 1.0).
  assert result['groupings'][0]['disparate_impact'] is None
  di = _checks(result, 'Black vs rest')['disparate_impact']
  assert di['status'] == fairness.INSUFFICIENT and '0/0' in di['reason']
  assert result['verdict'] != fairness.PASS
  only_group_flagged = dict(nobody_flagged)
  only_group_flagged[(('race', 'Black'),)] = fairness.Counts(fp=40, tn=10, tp=50)
  result = fairness.judge(only_group_flagged,
                          _thresholds(groupings=grouping, judge_each_value_of=[]))
  di = _checks(result, 'Black vs rest')['disparate_impact']
  assert di['status'] == fairness.FAIL and 'inf' in di['reason']


def test_judge_each_value_expands_vocabulary_and_crosses():
  slices = _slices(*_planted())
  groupings = fairness.expand_groupings(
      _thresholds(judge_each_value_of=['race', 'race x gender']), slices)
  names = [g.name for g in groupings]
  assert names.count('White vs rest') == 1  # configured once, not duplicated
  assert 'Latino_Hispanic vs rest' in names and 'Black x Female vs rest' in names
  assert len(names) == 3 + 5 + 14  # White and Black were configured already
  result = fairness.judge(slices, _thresholds(judge_each_value_of=['race x gender']))
  assert result['verdict'] == fairness.PASS


@pytest.mark.parametrize('overrides, field', [
    ({'not_measurable': ['tpr']}, 'not_measurable[0]'),
    ({'judge_each_value_of': ['ethnicity']}, 'judge_each_value_of[0]'),
    ({'disparate_impact_range': [1.25, 0.8]}, 'disparate_impact_range'),
    ({'judge_on': 'median'}, 'judge_on'),
    ({'tfma_confidence_intervals': 'bayes'}, 'tfma_confidence_intervals'),
    ({'groupings': [GroupingConfig(name='x', feature='race x gender', group='Black')]},
     'groupings[0].group'),
])
def test_bad_thresholds_name_the_field(overrides, field):
  with pytest.raises(ConfigError, match=field.replace('[', r'\[').replace(']', r'\]')):
    thresholds_lib.validate_thresholds(_thresholds(**overrides), 'th.yaml')


def test_thresholds_file_rejects_unknown_key(tmp_path):
  path = tmp_path / 'th.yaml'
  path.write_text('min_group_size: 5\nmax_aod: 0.1\n')
  with pytest.raises(ConfigError, match=r"th.yaml: unknown key\(s\) \['max_aod'\]"):
    config_lib.load_thresholds(str(path))
  for name in ('thresholds.yaml', 'demo_thresholds.yaml'):
    thresholds_lib.validate_thresholds(config_lib.load_thresholds(
        str(config_lib.PROJECT_ROOT) + f'/pipeline/configs/{name}'))


class _Collector(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.tags, self.urls = [], []

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    self.urls += [v for k, v in attrs if k in ('src', 'href') and v]


def test_html_report_is_self_contained(tmp_path):
  labels, scores, columns = _planted(flag_reals_of='Black')
  slices = _slices(labels, scores, columns)
  rows = [dict({'slice': evaluation.slice_label(k), 'features': dict(k), 'n': c.total,
                'accuracy': (c.tp + c.tn) / c.total, 'tfma_intervals': {}},
               **evaluation._rates_from_counts(c, 0.95)) for k, c in slices.items()]  # pylint: disable=protected-access
  report = evaluation.assemble_report(slices, rows, _thresholds(), True, [], 'm', 'e')
  json_path, html_path = evaluation.write_report(report, str(tmp_path))
  assert json.load(open(json_path))['verdict'] == 'fail'
  text = open(html_path, encoding='utf-8').read()
  parser = _Collector()
  parser.feed(text)
  assert parser.urls == [] and 'script' not in parser.tags and 'link' not in parser.tags
  assert parser.tags.count('svg') == 6  # 4 fairness metrics + per-slice FPR and FNR
  assert 'Black vs rest' in text and 'Table 9' in text and 'Tables 4-8' in text
  assert report_html.render(report) == text


def test_auc_is_undefined_on_one_class_slices():
  only_reals = evaluation._rates_from_counts(fairness.Counts(tp=0, fp=3, tn=5, fn=0), 0.95)  # pylint: disable=protected-access
  assert only_reals['auc'] is None and only_reals['fnr_interval'] is None
  both = evaluation._rates_from_counts(fairness.Counts(tp=1, fp=3, tn=5, fn=2), 0.95)  # pylint: disable=protected-access
  assert 'auc' not in both  # TFMA's value stands


def _source_rows(slices, auc):
  """TFMA-like metric rows: `auc` per source name (None: TFMA gave none)."""
  return [{'slice': evaluation.slice_label(k), 'features': dict(k),
           'auc': auc.get(dict(k).get(features.SOURCE))} for k in slices]


def _audit_and_gan(gan_tpr=0.9, gan_fpr=0.05, audit_fpr=0.04, n=100):
  """A GAN source with both classes and an audit source of reals only (the shared data's mix)."""
  labels, scores, source = [], [], []
  for name, reals, fakes, fpr, tpr in (('gan', n, n, gan_fpr, gan_tpr),
                                       ('audit', 4 * n, 0, audit_fpr, 0.0)):
    labels += [0] * reals + [1] * fakes
    scores += [0.9 if i < round(fpr * reals) else 0.1 for i in range(reals)]
    scores += [0.9 if i < round(tpr * fakes) else 0.1 for i in range(fakes)]
    source += [name] * (reals + fakes)
  return labels, scores, {features.SOURCE: source}


def _source_checks(report):
  return {(c['grouping'], c['metric']): c for c in report['source_checks']}


def test_balanced_accuracy_bound_cannot_be_carried_by_audit_reals():
  # Catches 40% of the fakes: plain accuracy 0.87 on this mostly-real set would have
  # passed a 0.8 bound; balanced accuracy (0.40 + 0.95) / 2 = 0.675 does not.
  labels, scores, columns = _audit_and_gan(gan_tpr=0.4)
  slices = fairness.slices_from_predictions(labels, scores, columns, 0.5)
  overall = slices[()]
  assert (overall.tp + overall.tn) / overall.total > 0.8
  report = evaluation.assemble_report(slices, _source_rows(slices, {'gan': 0.9}), _thresholds(),
                                      True, [], 'm', 'e')
  checks = _source_checks(report)
  assert checks[('source gan', 'balanced_accuracy')]['status'] == fairness.FAIL
  assert checks[('source gan', 'balanced_accuracy')]['value'] == pytest.approx(0.675)
  assert checks[('source gan', 'auc')]['status'] == fairness.PASS
  assert report['verdict'] == fairness.FAIL
  assert any(r.startswith('source gan: balanced_accuracy 0.6750') for r in report['reasons'])


def test_one_class_source_is_judged_on_its_fpr_only():
  labels, scores, columns = _audit_and_gan(audit_fpr=0.04)
  slices = fairness.slices_from_predictions(labels, scores, columns, 0.5)
  report = evaluation.assemble_report(slices, _source_rows(slices, {'gan': 0.95, 'audit': 0.0}),
                                      _thresholds(), True, [], 'm', 'e')
  checks = _source_checks(report)
  # TFMA's AUC of 0 on the reals-only source is never read: it is judged on FPR alone.
  assert [m for g, m in checks if g == 'source audit'] == ['fpr']
  assert checks[('source audit', 'fpr')]['status'] == fairness.PASS
  assert {m for g, m in checks if g == 'source gan'} == {'auc', 'balanced_accuracy'}
  assert all(c['status'] == fairness.PASS for c in checks.values())
  # The same source calling 12% of its reals fake fails its bound (max_one_class_fpr 0.08).
  labels, scores, columns = _audit_and_gan(audit_fpr=0.12)
  slices = fairness.slices_from_predictions(labels, scores, columns, 0.5)
  failing = _source_checks(evaluation.assemble_report(
      slices, _source_rows(slices, {'gan': 0.95}), _thresholds(), True, [], 'm', 'e'))
  assert failing[('source audit', 'fpr')]['status'] == fairness.FAIL


def test_undefined_accuracy_metrics_are_insufficient_never_zero_or_pass():
  labels, scores, columns = _audit_and_gan()
  reals_only = [i for i, label in enumerate(labels) if label == 0]
  slices = fairness.slices_from_predictions(
      [labels[i] for i in reals_only], [scores[i] for i in reals_only],
      {features.SOURCE: [columns[features.SOURCE][i] for i in reals_only]}, 0.5)
  assert math.isnan(fairness.balanced_accuracy(slices[()]))
  # The Evaluator "failed" AUC and balanced accuracy only because they are undefined.
  report = evaluation.assemble_report(
      slices, _source_rows(slices, {}), _thresholds(), False, [], 'm', 'e',
      evaluator_undefined=['auc is undefined on Overall: it holds 500 real photos and 0 fakes'])
  assert report['verdict'] == fairness.INSUFFICIENT and report['blessed'] is False
  assert report['evaluator_verdict'] == fairness.INSUFFICIENT
  everything = _source_checks(report)[('all sources', 'auc, balanced_accuracy')]
  assert everything['status'] == fairness.INSUFFICIENT and everything['value'] is None
  assert '0 fakes' in everything['reason']
  # A source with both classes but TFMA's AUC missing (undefined) is insufficient, not 0.
  labels, scores, columns = _audit_and_gan()
  slices = fairness.slices_from_predictions(labels, scores, columns, 0.5)
  checks = _source_checks(evaluation.assemble_report(slices, _source_rows(slices, {}),
                                                     _thresholds(), True, [], 'm', 'e'))
  assert checks[('source gan', 'auc')]['status'] == fairness.INSUFFICIENT


def _grouped(real_fpr, fake_tpr, fakes, n_real=100):
  """Per race (White, Black): n_real reals called fake at real_fpr[race], `fakes[race]` fakes
  caught at fake_tpr[race]."""
  labels, scores, race = [], [], []
  for r in ('White', 'Black'):
    labels += [0] * n_real + [1] * fakes[r]
    scores += [0.9 if i < round(real_fpr[r] * n_real) else 0.1 for i in range(n_real)]
    scores += [0.9 if i < round(fake_tpr[r] * fakes[r]) else 0.1 for i in range(fakes[r])]
    race += [r] * (n_real + fakes[r])
  return fairness.slices_from_predictions(labels, scores, {features.RACE: race}, 0.5)


BLACK_VS_REST = [GroupingConfig(name='Black vs rest', feature='race', group='Black')]


def test_disparate_impact_is_judged_per_class_and_mixed_only_where_fake_shares_match():
  thresholds = _thresholds(groupings=BLACK_VS_REST, judge_each_value_of=[])
  # Same FPR and TPR for both groups, but White holds most of the fakes: the mixed DI
  # measures the fake share (the paper's 0.12 for Black vs rest on the shared data).
  slices = _grouped({'White': 0.04, 'Black': 0.04}, {'White': 0.9, 'Black': 0.9},
                    {'White': 300, 'Black': 30})
  result = fairness.judge(slices, thresholds)
  checks = _checks(result, 'Black vs rest')
  summary = result['groupings'][0]
  assert summary['disparate_impact'] < 0.5  # mixed DI: far outside [0.8, 1.25]
  assert checks['disparate_impact']['status'] == fairness.NOT_MEASURABLE
  assert 'max_fake_share_gap' in checks['disparate_impact']['reason']
  assert checks['disparate_impact_real']['status'] == fairness.PASS
  assert checks['disparate_impact_real']['value'] == pytest.approx(1.0)
  assert checks['disparate_impact_fake']['status'] == fairness.PASS
  assert result['verdict'] == fairness.PASS
  # Matching fake shares: the mixed DI is judged again.
  matched = _grouped({'White': 0.04, 'Black': 0.04}, {'White': 0.9, 'Black': 0.9},
                     {'White': 100, 'Black': 100})
  assert _checks(fairness.judge(matched, thresholds), 'Black vs rest')[
      'disparate_impact']['status'] == fairness.PASS
  # Reals of one group called fake twice as often: the FPR ratio on reals refuses it.
  biased = _grouped({'White': 0.04, 'Black': 0.08}, {'White': 0.9, 'Black': 0.9},
                    {'White': 300, 'Black': 30})
  biased_checks = _checks(fairness.judge(biased, thresholds), 'Black vs rest')
  assert biased_checks['disparate_impact_real']['status'] == fairness.FAIL
  assert biased_checks['disparate_impact_real']['value'] == pytest.approx(2.0)
  # Fakes of one group caught less often: the TPR ratio on fakes refuses it.
  missed = _grouped({'White': 0.04, 'Black': 0.04}, {'White': 0.9, 'Black': 0.5},
                    {'White': 100, 'Black': 100})
  assert _checks(fairness.judge(missed, thresholds), 'Black vs rest')[
      'disparate_impact_fake']['status'] == fairness.FAIL


def test_per_class_di_of_zero_over_zero_is_never_a_pass():
  thresholds = _thresholds(groupings=BLACK_VS_REST, judge_each_value_of=[])
  # No real photo called fake on either side, with enough reals: the ratio is undefined
  # (not measurable, never passed); the FPR gap, 0, judges the pair.
  slices = _grouped({'White': 0.0, 'Black': 0.0}, {'White': 0.9, 'Black': 0.9},
                    {'White': 100, 'Black': 100})
  checks = _checks(fairness.judge(slices, thresholds), 'Black vs rest')
  assert checks['disparate_impact_real']['status'] == fairness.NOT_MEASURABLE
  assert checks['disparate_impact_real']['value'] is None
  assert checks['fpr_gap']['status'] == fairness.PASS
  # With too few reals it is insufficient evidence.
  small = _grouped({'White': 0.0, 'Black': 0.0}, {'White': 0.9, 'Black': 0.9},
                   {'White': 100, 'Black': 100}, n_real=10)
  assert _checks(fairness.judge(small, thresholds), 'Black vs rest')[
      'disparate_impact_real']['status'] == fairness.INSUFFICIENT


def test_a_perfect_auc_a_rounding_error_above_one_is_inside_its_bound():
  # TFMA gave a perfect model's AUC as 1 plus a float's last bits on a CPU training in
  # bfloat16, and the gate refused it: "auc 1.0000 outside [0, 1]".
  labels, scores, columns = _audit_and_gan()
  slices = fairness.slices_from_predictions(labels, scores, columns, 0.5)
  above_one = float(np.nextafter(np.float32(1), np.float32(2)))  # 1 + 1.2e-7
  report = evaluation.assemble_report(
      slices, _source_rows(slices, {'gan': above_one}),
      _thresholds(min_auc=0.0), True, [], 'm', 'e')
  assert _source_checks(report)[('source gan', 'auc')]['status'] == fairness.PASS
  # The tolerance is a rounding error's, not a loophole: a real excess still fails.
  assert within_bound(1 + 1e-7, [0, 1]) and within_bound(-1e-7, [0, 1])
  assert not within_bound(1.001, [0, 1]) and not within_bound(0.799, [0.8, 1])
  assert not within_bound(math.nan, [0, 1])
