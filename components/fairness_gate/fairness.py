"""Group fairness from per-slice confusion counts, and the gate's verdict.

All rates are derived from counts (TP, FP, TN, FN at the decision threshold)
so that "rest" groups are exact sums of the other slices and every number in
the report can be re-derived by hand. Label 1 (fake) is the positive class:

* FPR: real photos called fake; FNR: fakes let through.
* Disparate impact DI = P(pred fake | group) / P(pred fake | reference).
* Average odds difference AOD = ((FPR_g - FPR_r) + (TPR_g - TPR_r)) / 2.

A rate is only judged when its denominator has at least `min_group_size`
examples; otherwise the check is "insufficient evidence", which never passes.
"""

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Tuple

from components import features
from pipeline.config import GroupingConfig, ThresholdsConfig

SliceKey = Tuple[Tuple[str, str], ...]  # (('race', 'Black'), ('gender', 'Female'))
PASS, FAIL, INSUFFICIENT = 'pass', 'fail', 'insufficient_evidence'
CROSS = ' x '


@dataclasses.dataclass
class Counts:
  tp: float = 0.0
  fp: float = 0.0
  tn: float = 0.0
  fn: float = 0.0

  def __add__(self, other: 'Counts') -> 'Counts':
    return Counts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

  @property
  def negatives(self) -> float:  # real photos
    return self.fp + self.tn

  @property
  def positives(self) -> float:  # fakes
    return self.tp + self.fn

  @property
  def total(self) -> float:
    return self.negatives + self.positives

  @property
  def fpr(self) -> float:
    return self.fp / self.negatives if self.negatives else math.nan

  @property
  def tpr(self) -> float:
    return self.tp / self.positives if self.positives else math.nan

  @property
  def fnr(self) -> float:
    return self.fn / self.positives if self.positives else math.nan

  @property
  def positive_rate(self) -> float:  # P(pred fake)
    return (self.tp + self.fp) / self.total if self.total else math.nan


@dataclasses.dataclass
class Check:
  grouping: str
  metric: str  # 'disparate_impact' | 'average_odds_difference' | 'fpr_gap' | 'fnr_gap'
  value: Optional[float]
  bound: str
  status: str  # PASS | FAIL | INSUFFICIENT
  reason: str = ''


def _grouping_features(grouping: GroupingConfig) -> Tuple[str, ...]:
  return tuple(f.strip() for f in grouping.feature.split(CROSS))


def _slice_for(feature_names: Tuple[str, ...], values: Tuple[str, ...]) -> SliceKey:
  return tuple(zip(feature_names, values))


def group_counts(slices: Dict[SliceKey, Counts], grouping: GroupingConfig
                 ) -> Tuple[Counts, Counts, str, str]:
  """(group counts, reference counts, group label, reference label).

  The reference `rest` sums every other slice of the same feature(s) whose
  values are all known; images without the demographic never count as "rest".
  """
  names = _grouping_features(grouping)
  group_values = tuple(v.strip() for v in grouping.group.split(CROSS))
  if len(group_values) != len(names):
    raise ValueError(f'grouping {grouping.name!r}: group {grouping.group!r} does not match '
                     f'feature {grouping.feature!r}')
  key_set = set(names)
  same_feature_slices = {
      key: counts for key, counts in slices.items() if {k for k, _ in key} == key_set
  }

  def lookup(values: Tuple[str, ...]) -> Counts:
    wanted = dict(zip(names, values))
    for key, counts in same_feature_slices.items():
      if dict(key) == wanted:
        return counts
    return Counts()

  group = lookup(group_values)
  if grouping.reference == 'rest':
    reference = Counts()
    for key, counts in same_feature_slices.items():
      values = dict(key)
      if (tuple(values[n] for n in names) != group_values and
          features.UNKNOWN not in values.values()):
        reference = reference + counts
    reference_label = f'not {grouping.group}'
  else:
    reference = lookup(tuple(v.strip() for v in grouping.reference.split(CROSS)))
    reference_label = grouping.reference
  return group, reference, grouping.group, reference_label


def _judge(grouping: str, metric: str, value: float, low: float, high: float,
           enough: bool, shortfall: str) -> Check:
  bound = f'[{low:g}, {high:g}]'
  if not enough:
    return Check(grouping, metric, None if math.isnan(value) else value, bound, INSUFFICIENT,
                 shortfall)
  if math.isnan(value):
    return Check(grouping, metric, None, bound, INSUFFICIENT, 'undefined (division by zero)')
  status = PASS if low <= value <= high else FAIL
  reason = '' if status == PASS else f'{metric} {value:.4f} outside {bound}'
  return Check(grouping, metric, value, bound, status, reason)


def evaluate_grouping(slices: Dict[SliceKey, Counts], grouping: GroupingConfig,
                      thresholds: ThresholdsConfig) -> Tuple[Dict[str, object], List[Check]]:
  group, reference, group_label, reference_label = group_counts(slices, grouping)
  n = thresholds.min_group_size

  def short(what: str, *pairs: Tuple[str, float]) -> str:
    lacking = [f'{label} has {count:g} {what}' for label, count in pairs if count < n]
    return f'insufficient evidence: {"; ".join(lacking)} (need {n})' if lacking else ''

  negatives_short = short('real photos', (group_label, group.negatives),
                          (reference_label, reference.negatives))
  positives_short = short('fakes', (group_label, group.positives),
                          (reference_label, reference.positives))
  total_short = short('examples', (group_label, group.total), (reference_label, reference.total))
  di = (group.positive_rate / reference.positive_rate
        if reference.positive_rate else math.nan)
  aod = ((group.fpr - reference.fpr) + (group.tpr - reference.tpr)) / 2
  fpr_gap = group.fpr - reference.fpr
  fnr_gap = group.fnr - reference.fnr
  low_di, high_di = thresholds.disparate_impact_range
  checks = [
      _judge(grouping.name, 'disparate_impact', di, low_di, high_di, not total_short, total_short),
      _judge(grouping.name, 'average_odds_difference', aod,
             -thresholds.max_abs_average_odds_difference, thresholds.max_abs_average_odds_difference,
             not (negatives_short or positives_short), negatives_short or positives_short),
      _judge(grouping.name, 'fpr_gap', fpr_gap, -thresholds.max_fpr_gap, thresholds.max_fpr_gap,
             not negatives_short, negatives_short),
      _judge(grouping.name, 'fnr_gap', fnr_gap, -thresholds.max_fnr_gap, thresholds.max_fnr_gap,
             not positives_short, positives_short),
  ]

  def rates(label: str, c: Counts) -> Dict[str, object]:
    return {'name': label, 'counts': dataclasses.asdict(c), 'fpr': _num(c.fpr),
            'fnr': _num(c.fnr), 'tpr': _num(c.tpr), 'positive_rate': _num(c.positive_rate)}

  summary = {
      'name': grouping.name, 'feature': grouping.feature,
      'group': rates(group_label, group), 'reference': rates(reference_label, reference),
      'disparate_impact': _num(di), 'average_odds_difference': _num(aod),
      'fpr_gap': _num(fpr_gap), 'fnr_gap': _num(fnr_gap),
  }
  return summary, checks


def _num(value: float) -> Optional[float]:
  return None if value is None or math.isnan(value) else round(float(value), 6)


def judge(slices: Dict[SliceKey, Counts], thresholds: ThresholdsConfig,
          groupings: Optional[Iterable[GroupingConfig]] = None) -> Dict[str, object]:
  """Evaluates every grouping; the verdict is PASS only if every check passes."""
  summaries, checks = [], []
  for grouping in (thresholds.groupings if groupings is None else groupings):
    summary, grouping_checks = evaluate_grouping(slices, grouping, thresholds)
    summaries.append(summary)
    checks.extend(grouping_checks)
  statuses = {c.status for c in checks}
  verdict = FAIL if FAIL in statuses else INSUFFICIENT if INSUFFICIENT in statuses else PASS
  return {'verdict': verdict, 'groupings': summaries,
          'checks': [dataclasses.asdict(c) for c in checks]}
