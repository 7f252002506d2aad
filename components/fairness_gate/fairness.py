"""Group fairness from per-slice confusion counts, and the gate's verdict.

All rates are derived from counts (TP, FP, TN, FN at the decision threshold)
so that "rest" groups are exact sums of the other slices and every number in
the report can be re-derived by hand. Label 1 (fake) is the positive class:

* FPR: real photos called fake; FNR: fakes let through; TPR = 1 - FNR.
* Disparate impact DI = P(pred fake | group) / P(pred fake | reference).
  When neither side has a single "fake" prediction the two are treated
  identically and DI is 1; when only the reference has none, DI is infinite.
* Average odds difference AOD = ((FPR_g - FPR_r) + (TPR_g - TPR_r)) / 2.
* FPR gap = FPR_g - FPR_r, FNR gap = FNR_g - FNR_r.

Confidence intervals come from a seeded parametric bootstrap over the counts:
each group's FPR and TPR are drawn from their Jeffreys posteriors
Beta(x + 1/2, n - x + 1/2) with the class sizes held fixed, and every metric is
recomputed per draw (percentile interval).

A rate is only judged when its denominator has at least `min_group_size`
examples; otherwise, or when the value is undefined (NaN), the check is
"insufficient evidence", which never passes. Checks the user declared in
`not_measurable` are reported as such and do not block, but are never passed.
"""

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from components.config_base import ConfigError
from components import groupings as groupings_lib
from components.fairness_gate.config import ThresholdsConfig
from components.groupings import GroupingConfig, SliceKey

PASS, FAIL, INSUFFICIENT, NOT_MEASURABLE = 'pass', 'fail', 'insufficient_evidence', 'not_measurable'

DISPARATE_IMPACT = 'disparate_impact'
AVERAGE_ODDS_DIFFERENCE = 'average_odds_difference'
FPR_GAP = 'fpr_gap'
FNR_GAP = 'fnr_gap'
FAIRNESS_METRICS = (DISPARATE_IMPACT, AVERAGE_ODDS_DIFFERENCE, FPR_GAP, FNR_GAP)
JUDGE_ON = ('estimate', 'interval')
TFMA_INTERVAL_METHODS = ('off', 'jackknife', 'poisson_bootstrap')


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
  metric: str  # one of FAIRNESS_METRICS
  value: Optional[float]
  interval: Optional[List[float]]  # [low, high] at thresholds.confidence_level
  bound: List[float]  # [low, high]
  status: str  # PASS | FAIL | INSUFFICIENT | NOT_MEASURABLE
  reason: str = ''
  lacking: List[str] = dataclasses.field(default_factory=list)  # e.g. 'Black has 0 fakes'


# ---------------------------------------------------------------------------
# Configuration checks and grouping expansion


def validate_thresholds(thresholds: ThresholdsConfig, where: str = 'thresholds') -> None:
  """Raises ConfigError naming the field for any value the gate cannot use."""
  low_high = thresholds.disparate_impact_range
  if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1]:
    raise ConfigError(f'{where}.disparate_impact_range must be [low, high] with 0 <= low <= '
                      f'high, got {low_high}')
  if not 0.0 < thresholds.decision_threshold < 1.0:
    raise ConfigError(f'{where}.decision_threshold must be in (0, 1), '
                      f'got {thresholds.decision_threshold}')
  for name in ('max_abs_average_odds_difference', 'max_fpr_gap', 'max_fnr_gap'):
    if getattr(thresholds, name) < 0:
      raise ConfigError(f'{where}.{name} must be >= 0, got {getattr(thresholds, name)}')
  if thresholds.min_group_size < 1:
    raise ConfigError(f'{where}.min_group_size must be >= 1, got {thresholds.min_group_size}')
  if not 0.5 <= thresholds.confidence_level < 1.0:
    raise ConfigError(f'{where}.confidence_level must be in [0.5, 1), '
                      f'got {thresholds.confidence_level}')
  if thresholds.bootstrap_samples < 100:
    raise ConfigError(f'{where}.bootstrap_samples must be >= 100, '
                      f'got {thresholds.bootstrap_samples}')
  if thresholds.judge_on not in JUDGE_ON:
    raise ConfigError(f'{where}.judge_on must be one of {list(JUDGE_ON)}, '
                      f'got {thresholds.judge_on!r}')
  if thresholds.tfma_confidence_intervals not in TFMA_INTERVAL_METHODS:
    raise ConfigError(f'{where}.tfma_confidence_intervals must be one of '
                      f'{list(TFMA_INTERVAL_METHODS)}, got {thresholds.tfma_confidence_intervals!r}')
  for i, metric in enumerate(thresholds.not_measurable):
    if metric not in FAIRNESS_METRICS:
      raise ConfigError(f'{where}.not_measurable[{i}]: {metric!r} is not one of '
                        f'{list(FAIRNESS_METRICS)}')
  groupings_lib.check_groupings(thresholds.groupings, thresholds.judge_each_value_of, where)


def expand_groupings(thresholds: ThresholdsConfig,
                     slices: Dict[SliceKey, Counts]) -> List[GroupingConfig]:
  """The configured groupings plus each value of `judge_each_value_of` against the rest."""
  return groupings_lib.expand(thresholds.groupings, thresholds.judge_each_value_of, slices)


# ---------------------------------------------------------------------------
# Group counts and metrics


def slices_from_predictions(labels: Sequence[int], scores: Sequence[float],
                            columns: Dict[str, Sequence[str]], decision_threshold: float,
                            crosses: Sequence[Tuple[str, ...]] = ()
                            ) -> Dict[SliceKey, Counts]:
  """Per-slice counts like TFMA's (overall, each column, each cross) from raw predictions.

  For judging predictions made elsewhere (and for tests): `scores` are
  P(fake), predicted fake when >= `decision_threshold`, as TFMA counts them.
  """
  labels = np.asarray(labels).astype(int)
  predicted = np.asarray(scores, dtype=float) >= decision_threshold
  outcome = {'tp': (labels == 1) & predicted, 'fp': (labels == 0) & predicted,
             'tn': (labels == 0) & ~predicted, 'fn': (labels == 1) & ~predicted}
  slices = {(): Counts(**{k: float(v.sum()) for k, v in outcome.items()})}
  for names in [(name,) for name in columns] + [tuple(c) for c in crosses]:
    keys = list(zip(*(np.asarray(columns[n]) for n in names)))
    for value in sorted(set(keys)):
      mask = np.array([k == value for k in keys])
      slices[tuple(sorted(zip(names, value)))] = Counts(
          **{k: float((v & mask).sum()) for k, v in outcome.items()})
  return slices


def group_counts(slices: Dict[SliceKey, Counts], grouping: GroupingConfig
                 ) -> Tuple[Counts, Counts, str, str]:
  """(group counts, reference counts, group label, reference label).

  The reference `rest` sums every other slice of the same feature(s) whose
  values are all known; images without the demographic never count as "rest".
  """
  group, reference = groupings_lib.groups_of(grouping)
  reference_label = f'not {grouping.group}' if reference.rest else grouping.reference
  return (groupings_lib.sum_members(slices, group, Counts()),
          groupings_lib.sum_members(slices, reference, Counts()), grouping.group, reference_label)


def _ratio(numerator, denominator):
  """numerator / denominator with 0/0 -> 1 (identical treatment) and x/0 -> inf."""
  numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
  with np.errstate(divide='ignore', invalid='ignore'):
    out = numerator / denominator
  return np.where((denominator == 0) & (numerator == 0), 1.0, out)


def _metrics(group_fpr, group_tpr, group: Counts, ref_fpr, ref_tpr, ref: Counts
             ) -> Dict[str, np.ndarray]:
  """The four fairness metrics from rates (scalars or arrays of bootstrap draws)."""

  def positive_rate(fpr, tpr, c: Counts):
    if not c.total:
      return np.full(np.shape(fpr), np.nan)
    fp = np.nan_to_num(fpr) * c.negatives if c.negatives else 0.0
    tp = np.nan_to_num(tpr) * c.positives if c.positives else 0.0
    return (fp + tp) / c.total

  return {
      DISPARATE_IMPACT: _ratio(positive_rate(group_fpr, group_tpr, group),
                               positive_rate(ref_fpr, ref_tpr, ref)),
      AVERAGE_ODDS_DIFFERENCE: ((np.asarray(group_fpr) - ref_fpr) +
                                (np.asarray(group_tpr) - ref_tpr)) / 2,
      FPR_GAP: np.asarray(group_fpr) - ref_fpr,
      FNR_GAP: (1 - np.asarray(group_tpr)) - (1 - np.asarray(ref_tpr)),
  }


def fairness_metrics(group: Counts, reference: Counts) -> Dict[str, float]:
  """Point estimates of DI, AOD, FPR gap and FNR gap (NaN when undefined)."""
  values = _metrics(group.fpr, group.tpr, group, reference.fpr, reference.tpr, reference)
  return {k: float(v) for k, v in values.items()}


def _draw_rate(rng: np.random.Generator, hits: float, n: float, samples: int) -> np.ndarray:
  if not n:
    return np.full(samples, np.nan)
  return rng.beta(hits + 0.5, n - hits + 0.5, size=samples)


def bootstrap_intervals(group: Counts, reference: Counts, samples: int, level: float,
                        rng: np.random.Generator) -> Dict[str, Optional[List[float]]]:
  """Percentile intervals of each metric under the parametric (Jeffreys) bootstrap."""
  draws = _metrics(_draw_rate(rng, group.fp, group.negatives, samples),
                   _draw_rate(rng, group.tp, group.positives, samples), group,
                   _draw_rate(rng, reference.fp, reference.negatives, samples),
                   _draw_rate(rng, reference.tp, reference.positives, samples), reference)
  tail = (1 - level) / 2 * 100
  intervals = {}
  for name, values in draws.items():
    values = values[~np.isnan(values)]
    intervals[name] = ([float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
                       if values.size >= samples // 2 else None)
  return intervals


def rate_interval(hits: float, n: float, level: float) -> Optional[List[float]]:
  """Jeffreys interval of a binomial rate (the per-slice FPR/FNR error bars)."""
  if not n:
    return None
  from scipy import stats  # pylint: disable=g-import-not-at-top
  tail = (1 - level) / 2
  return [float(stats.beta.ppf(tail, hits + 0.5, n - hits + 0.5)) if hits else 0.0,
          float(stats.beta.ppf(1 - tail, hits + 0.5, n - hits + 0.5)) if hits < n else 1.0]


# ---------------------------------------------------------------------------
# Judging


def _bounds(thresholds: ThresholdsConfig) -> Dict[str, List[float]]:
  aod, fpr, fnr = (thresholds.max_abs_average_odds_difference, thresholds.max_fpr_gap,
                   thresholds.max_fnr_gap)
  return {DISPARATE_IMPACT: list(thresholds.disparate_impact_range),
          AVERAGE_ODDS_DIFFERENCE: [-aod, aod], FPR_GAP: [-fpr, fpr], FNR_GAP: [-fnr, fnr]}


def _num(value) -> Optional[float]:
  """A JSON-safe number: None for missing, NaN or infinite values."""
  if value is None:
    return None
  value = float(value)
  return round(value, 6) if math.isfinite(value) else None


def _judge(grouping: str, metric: str, value: float, interval: Optional[List[float]],
           bound: List[float], lacking: List[str], thresholds: ThresholdsConfig) -> Check:
  low, high = bound
  check = Check(grouping, metric, _num(value), interval and [_num(v) for v in interval],
                bound, PASS)
  if metric in thresholds.not_measurable:
    check.status = NOT_MEASURABLE
    check.reason = f'{metric} declared not measurable on this data (thresholds not_measurable)'
  elif lacking:
    check.status, check.lacking = INSUFFICIENT, lacking
    check.reason = (f'{metric} insufficient evidence: {"; ".join(lacking)} '
                    f'(need {thresholds.min_group_size})')
  elif math.isnan(value):
    check.status = INSUFFICIENT
    check.reason = f'{metric}: insufficient evidence: undefined (division by zero)'
  elif not low <= value <= high:
    check.status = FAIL
    check.reason = f'{metric} {value:.4f} outside [{low:g}, {high:g}]'
  elif thresholds.judge_on == 'interval' and (interval is None or interval[0] < low or
                                              interval[1] > high):
    check.status = INSUFFICIENT
    check.reason = (f'{metric}: insufficient evidence: {value:.4f} is inside [{low:g}, {high:g}] '
                    f'but its {thresholds.confidence_level:.0%} interval {interval} is not')
  return check


def _rates(label: str, c: Counts, level: float) -> Dict[str, object]:
  return {'name': label, 'counts': dataclasses.asdict(c), 'n': c.total,
          'fpr': _num(c.fpr), 'fpr_interval': rate_interval(c.fp, c.negatives, level),
          'fnr': _num(c.fnr), 'fnr_interval': rate_interval(c.fn, c.positives, level),
          'tpr': _num(c.tpr), 'positive_rate': _num(c.positive_rate)}


def evaluate_grouping(slices: Dict[SliceKey, Counts], grouping: GroupingConfig,
                      thresholds: ThresholdsConfig, rng: np.random.Generator
                      ) -> Tuple[Dict[str, object], List[Check]]:
  group, reference, group_label, reference_label = group_counts(slices, grouping)
  n = thresholds.min_group_size

  def lacking(what: str, *pairs: Tuple[str, float]) -> List[str]:
    return [f'{label} has {count:g} {what}' for label, count in pairs if count < n]

  negatives = lacking('real photos', (group_label, group.negatives),
                      (reference_label, reference.negatives))
  positives = lacking('fakes', (group_label, group.positives),
                      (reference_label, reference.positives))
  shortfalls = {
      DISPARATE_IMPACT: lacking('examples', (group_label, group.total),
                                (reference_label, reference.total)),
      AVERAGE_ODDS_DIFFERENCE: negatives + positives,
      FPR_GAP: negatives,
      FNR_GAP: positives,
  }
  values = fairness_metrics(group, reference)
  intervals = bootstrap_intervals(group, reference, thresholds.bootstrap_samples,
                                  thresholds.confidence_level, rng)
  bounds = _bounds(thresholds)
  checks = [_judge(grouping.name, m, values[m], intervals[m], bounds[m], shortfalls[m], thresholds)
            for m in FAIRNESS_METRICS]
  summary = {
      'name': grouping.name, 'feature': grouping.feature,
      'group': _rates(group_label, group, thresholds.confidence_level),
      'reference': _rates(reference_label, reference, thresholds.confidence_level),
  }
  for m in FAIRNESS_METRICS:
    summary[m] = _num(values[m])
    summary[f'{m}_interval'] = intervals[m] and [_num(v) for v in intervals[m]]
  return summary, checks


def verdict_of(statuses: Iterable[str]) -> str:
  statuses = set(statuses)
  return FAIL if FAIL in statuses else INSUFFICIENT if INSUFFICIENT in statuses else PASS


def judge(slices: Dict[SliceKey, Counts], thresholds: ThresholdsConfig,
          groupings: Optional[Sequence[GroupingConfig]] = None) -> Dict[str, object]:
  """Evaluates every grouping; the verdict is PASS only if no check fails or lacks evidence."""
  rng = np.random.default_rng(thresholds.bootstrap_seed)
  summaries, checks = [], []
  for grouping in (expand_groupings(thresholds, slices) if groupings is None else groupings):
    summary, grouping_checks = evaluate_grouping(slices, grouping, thresholds, rng)
    summaries.append(summary)
    checks.extend(grouping_checks)
  return {'verdict': verdict_of(c.status for c in checks), 'groupings': summaries,
          'checks': [dataclasses.asdict(c) for c in checks],
          'bounds': _bounds(thresholds), 'min_group_size': thresholds.min_group_size,
          'confidence_level': thresholds.confidence_level, 'judge_on': thresholds.judge_on,
          'not_measurable': list(thresholds.not_measurable)}


def refusals_by_grouping(checks: Sequence[Dict[str, object]]) -> List[Tuple[str, str]]:
  """(grouping, one-line reason) per refused grouping, most failures first.

  Failures are listed with their values; shortfalls are said once per
  grouping ('insufficient evidence for fnr_gap, ...: Black has 0 fakes').
  """
  refused: Dict[str, List[Dict[str, object]]] = {}
  for c in checks:
    if c['status'] in (FAIL, INSUFFICIENT):
      refused.setdefault(c['grouping'], []).append(c)
  ranked = sorted(refused.items(), key=lambda item: (-sum(c['status'] == FAIL for c in item[1]),
                                                      -len(item[1])))
  lines = []
  for grouping, grouping_checks in ranked:
    parts = [c['reason'] for c in grouping_checks if c['status'] == FAIL]
    short = [c for c in grouping_checks if c['status'] == INSUFFICIENT]
    if short:
      details = []
      for c in short:
        for detail in c['lacking'] or [c['reason'].split('insufficient evidence: ', 1)[-1]]:
          if detail not in details:
            details.append(detail)
      parts.append(f"insufficient evidence for {', '.join(c['metric'] for c in short)}: "
                   + '; '.join(details))
    lines.append((grouping, '; '.join(parts)))
  return lines
