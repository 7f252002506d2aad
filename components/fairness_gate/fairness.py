"""Group fairness from per-slice confusion counts, and the gate's verdict.

All rates are derived from counts (TP, FP, TN, FN at the decision threshold)
so that "rest" groups are exact sums of the other slices and every number in
the report can be re-derived by hand. Label 1 (fake) is the positive class:

* FPR: real photos called fake; FNR: fakes let through; TPR = 1 - FNR.
* Disparate impact DI = P(pred fake | group) / P(pred fake | reference).
  When only the reference has no "fake" prediction, DI is infinite; when
  neither side has one, DI is 0/0: undefined, and the check is insufficient
  evidence (it used to read as DI 1.0, a "pass" that compared nothing).
* DI per class, judged against `disparate_impact_range`: the FPR ratio on
  real photos (DI_real = FPR_g / FPR_r) and the TPR ratio on fakes
  (DI_fake = TPR_g / TPR_r). The paper's mixed DI also moves with each
  group's share of fakes, which says nothing about the model: with an
  audit-only real source it measures mostly which groups hold the fakes. It
  is reported beside them and judged only where the group's and the
  reference's fake shares differ by at most `max_fake_share_gap` (there it
  compares like with like); elsewhere it is "not_measurable" with the two
  shares in its reason, never a pass. A per-class DI whose two rates are
  both 0 on at least `min_group_size` examples each is 0/0: undefined, so
  "not_measurable" too (never a pass); the FPR or FNR gap, which is defined
  there (0), judges that pair. With fewer examples it is insufficient evidence.
* Average odds difference AOD = ((FPR_g - FPR_r) + (TPR_g - TPR_r)) / 2.
* FPR gap = FPR_g - FPR_r, FNR gap = FNR_g - FNR_r.

Confidence intervals come from a seeded parametric bootstrap over the counts:
each group's FPR and TPR are drawn from their Jeffreys posteriors
Beta(x + 1/2, n - x + 1/2) with the class sizes held fixed, and every metric is
recomputed per draw (percentile interval).

A rate is only judged when its denominator has at least `min_group_size`
examples; otherwise, or when the value is undefined (NaN), the check is
"insufficient evidence", which never passes. So is a check that would pass but
whose interval is wider than `max_interval_span_di` (ratios) or
`max_interval_span_difference` (AOD, gaps): a DI of 1.0 in [0.002, 1043]
is no evidence of fairness.

Predicted demographics (DemographicAnnotator): when the examples a check uses
include faces whose grouping attributes were predicted, the check is marked
`rests_on_predicted` and carries the annotator's precision for the grouping,
measured on the labelled test split: of the faces predicted into the group
(and into the reference), the share that truly belong there. The gate requires
that precision to be at least `min_annotator_precision` on at least
`min_annotator_support` faces for both sides. This is the chosen alternative to
widening intervals for annotation error: a group the annotator cannot recognise
is not judged on its predictions at all. Where the rule fails, the check is
judged on labelled faces only (`judged_on` LABELLED_ONLY): the faces whose
grouping attributes are all human or prompted labels, group and reference
restricted alike, from the Evaluator's slices by `labelled_attributes`
(`labelled_slices`), under every rule above. Its status is that judgement's,
and its reason names the labelled reals and fakes per side and the precision
that excluded the predicted ones. Two consequences, chosen deliberately:

* A pass there is a pass about the labelled faces only; the faces of sources
  without labels for the grouping are not in it, and the reason says so (the
  per-source checks still judge those sources on every face).
* A check failing on all examples but passing on labelled faces passes: at a
  precision below the bound a large share of the faces predicted into the group
  are not in it, and annotation errors may follow image properties the detector
  reacts to, so the failure says nothing reliable about the group, exactly as a
  pass would not. It stays visible (`all_examples`, the report's
  `fail_on_all_examples`).

Too few labelled faces is insufficient evidence, never a pass. Without the
`labelled_attributes` slices (examples written without the feature) a check that
would pass is insufficient evidence and a failing one still fails, its reason
naming the annotator's precision and why no labelled-only judgement was made.
Checks the user declared in
`not_measurable` are reported as such and do not block, but are never passed.
"""

import dataclasses
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from fakefaces.components.shared import features, groupings as groupings_lib
from fakefaces.components.shared.groupings import CROSS, GroupingConfig, SliceKey
from fakefaces.components.shared.thresholds import (
    AVERAGE_ODDS_DIFFERENCE, DI_FAKE, DI_REAL, DISPARATE_IMPACT, FAIRNESS_METRICS, FNR_GAP, FPR_GAP,
    ThresholdsConfig, within_bound)

PASS, FAIL, INSUFFICIENT, NOT_MEASURABLE = 'pass', 'fail', 'insufficient_evidence', 'not_measurable'

REPORTED_METRICS = FAIRNESS_METRICS
RATIO_METRICS = (DISPARATE_IMPACT, DI_REAL, DI_FAKE)
# Which classes of examples each metric's rates use (for "rests on predicted demographics").
_METRIC_CLASSES = {DISPARATE_IMPACT: ('real', 'fake'), AVERAGE_ODDS_DIFFERENCE: ('real', 'fake'),
                   FPR_GAP: ('real',), FNR_GAP: ('fake',), DI_REAL: ('real',),
                   DI_FAKE: ('fake',)}
# Kinds of grouping label an example can rest on, most trusted first: a grouping
# label is 'predicted' when any of its attributes was predicted, else 'prompted'
# when any is a generator's prompt, else 'human'.
LABEL_KINDS = (features.HUMAN, features.PROMPTED, features.PREDICTED)
ALL_EXAMPLES, LABELLED_ONLY = 'all examples', 'labelled only'  # Check.judged_on


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
  # True when the examples this check uses include predicted demographics (see module doc).
  rests_on_predicted: bool = False
  annotator_precision: Optional[float] = None  # min of group/reference precision, test split
  # Examples this check uses (both sides, the classes its rates use) per kind of grouping
  # label: 'human', 'prompted', 'predicted' (LABEL_KINDS); empty without the annotator's report.
  label_origins: Dict[str, float] = dataclasses.field(default_factory=dict)
  # ALL_EXAMPLES, or LABELLED_ONLY when the precision rule failed and the check was
  # judged on the faces whose grouping attributes are all labelled (module doc).
  judged_on: str = 'all examples'
  # With LABELLED_ONLY: the faces with predicted grouping labels left out, and the
  # judgement on all examples ({'status', 'value', 'interval'}) it replaced.
  excluded_predicted: float = 0.0
  all_examples: Optional[Dict[str, object]] = None


# ---------------------------------------------------------------------------
# Grouping expansion


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
  """numerator / denominator with 0/0 -> NaN (undefined: no events on either side), x/0 -> inf."""
  numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
  with np.errstate(divide='ignore', invalid='ignore'):
    return numerator / denominator


def _metrics(group_fpr, group_tpr, group: Counts, ref_fpr, ref_tpr, ref: Counts
             ) -> Dict[str, np.ndarray]:
  """The fairness metrics (REPORTED_METRICS) from rates (scalars or arrays of bootstrap draws)."""

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
      DI_REAL: _ratio(group_fpr, ref_fpr),
      DI_FAKE: _ratio(group_tpr, ref_tpr),
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
          DI_REAL: list(thresholds.disparate_impact_range),
          DI_FAKE: list(thresholds.disparate_impact_range),
          AVERAGE_ODDS_DIFFERENCE: [-aod, aod], FPR_GAP: [-fpr, fpr], FNR_GAP: [-fnr, fnr]}


def _num(value) -> Optional[float]:
  """A JSON-safe number: None for missing, NaN or infinite values."""
  if value is None:
    return None
  value = float(value)
  return round(value, 6) if math.isfinite(value) else None


def _span_limit(metric: str, thresholds: ThresholdsConfig) -> float:
  return (thresholds.max_interval_span_di if metric in RATIO_METRICS
          else thresholds.max_interval_span_difference)


def _judge(grouping: str, metric: str, value: float, interval: Optional[List[float]],
           bound: List[float], lacking: List[str], thresholds: ThresholdsConfig,
           zero_events: str = '', not_judged: str = '') -> Check:
  low, high = bound
  check = Check(grouping, metric, _num(value), interval and [_num(v) for v in interval],
                bound, PASS)
  span = _span_limit(metric, thresholds)
  if metric in thresholds.not_measurable:
    check.status = NOT_MEASURABLE
    check.reason = f'{metric} declared not measurable on this data (thresholds not_measurable)'
  elif not_judged:
    check.status = NOT_MEASURABLE
    check.reason = f'{metric} not judged: {not_judged}'
  elif lacking:
    check.status, check.lacking = INSUFFICIENT, lacking
    check.reason = (f'{metric} insufficient evidence: {"; ".join(lacking)} '
                    f'(need {thresholds.min_group_size})')
  elif zero_events:
    check.status = INSUFFICIENT
    check.reason = f'{metric}: insufficient evidence: {zero_events}'
  elif math.isnan(value):
    check.status = INSUFFICIENT
    check.reason = f'{metric}: insufficient evidence: undefined (division by zero)'
  elif not within_bound(value, bound):
    check.status = FAIL
    check.reason = f'{metric} {value:.4f} outside [{low:g}, {high:g}]'
  elif span and (interval is None or None in interval or interval[1] - interval[0] > span):
    check.status = INSUFFICIENT
    check.reason = (f'{metric}: insufficient evidence: {value:.4f} is inside [{low:g}, {high:g}] '
                    f'but its {thresholds.confidence_level:.0%} interval {interval} is wider '
                    f'than {span:g} (max_interval_span_'
                    f'{"di" if metric in RATIO_METRICS else "difference"})')
  elif thresholds.judge_on == 'interval' and (interval is None or
                                              not within_bound(interval[0], bound) or
                                              not within_bound(interval[1], bound)):
    check.status = INSUFFICIENT
    check.reason = (f'{metric}: insufficient evidence: {value:.4f} is inside [{low:g}, {high:g}] '
                    f'but its {thresholds.confidence_level:.0%} interval {interval} is not')
  return check


def label_kinds(check: Dict[str, object]) -> str:
  """Which kinds of grouping label a check (as reported) rests on: 'human+prompted', ...,
  with ' (labelled only)' when predicted ones were left out; 'not recorded' without the
  annotator's report."""
  origins = check.get('label_origins') or {}
  kinds = [kind for kind in LABEL_KINDS if origins.get(kind)]
  text = '+'.join(kinds) if kinds else ('none' if origins else 'not recorded')
  return f'{text} ({LABELLED_ONLY})' if check.get('judged_on') == LABELLED_ONLY else text


def _origins(annotation: Dict[str, object], metric: str, kinds: Sequence[str]
             ) -> Dict[str, float]:
  """Examples a metric uses (both sides, its classes) per kind of grouping label; 0 for
  the LABEL_KINDS not in `kinds`."""
  return {kind: sum(annotation[side][f'{kind}_{c}'] for side in ('group', 'reference')
                    for c in _METRIC_CLASSES[metric]) if kind in kinds else 0
          for kind in LABEL_KINDS}


def precision_problems(annotation: Dict[str, object], thresholds: ThresholdsConfig
                       ) -> List[str]:
  """Why the annotator's precision for a grouping's sides fails the rule ([] when it holds)."""
  precision = annotation['precision']
  problems = []
  for side in ('group', 'reference'):
    value, n, name = precision[side], precision[f'n_{side}'], annotation[side]['name']
    if n < thresholds.min_annotator_support:
      problems.append(f'the annotator\'s precision for {name} rests on {n} labelled test faces '
                      f'(need {thresholds.min_annotator_support})')
    elif value < thresholds.min_annotator_precision:
      problems.append(f'the annotator\'s precision for {name} is {value:.3f} '
                      f'(< min_annotator_precision {thresholds.min_annotator_precision:g})')
  return problems


def _predicted_note(check: Check, predicted: float, annotation: Dict[str, object]) -> str:
  """Marks a check whose examples include predicted demographics; returns the note saying so."""
  precision = annotation['precision']
  check.rests_on_predicted = True
  known = [precision[side] for side in ('group', 'reference') if precision[side] is not None]
  check.annotator_precision = _num(min(known)) if len(known) == 2 else None
  shown = 'n/a' if check.annotator_precision is None else f'{check.annotator_precision:.3f}'
  return (f'rests on predicted demographics ({predicted:g} of its examples; annotator precision '
          f'{shown})')


def _mark_predicted(check: Check, predicted: float, annotation: Dict[str, object],
                    problems: List[str], unavailable: str = '') -> None:
  """The precision rule without labelled-only evidence: a would-be pass is insufficient
  evidence, a failure keeps failing with the annotator's precision in its reason.
  `unavailable`: why the check could not be judged on labelled faces only."""
  note = _predicted_note(check, predicted, annotation)
  if problems:
    note = f'{note}: ' + '; '.join(problems) + (f'; {unavailable}' if unavailable else '')
  if problems and check.status == PASS:
    check.status = INSUFFICIENT
    check.reason = f'{check.metric}: insufficient evidence: {note}'
  else:
    check.reason = f'{check.reason}; {note}' if check.reason else note


def _side_sizes(label: str, c: Counts) -> str:
  return f'{label} {c.negatives:g} reals and {c.positives:g} fakes'


def _labelled_only(check: Check, labelled: Check, predicted: float,
                   annotation: Dict[str, object], problems: List[str],
                   sides: Tuple[Tuple[str, Counts], Tuple[str, Counts]]) -> Check:
  """`labelled` (the check judged on labelled faces only) with the evidence in its reason and
  `check` (the judgement on all examples) kept beside it."""
  _predicted_note(labelled, predicted, annotation)  # records the annotator's precision
  labelled.rests_on_predicted = False  # judged without them
  labelled.judged_on, labelled.excluded_predicted = LABELLED_ONLY, predicted
  labelled.all_examples = {'status': check.status, 'value': check.value,
                           'interval': check.interval}
  labelled.label_origins = _origins(annotation, check.metric, features.LABELLED_ORIGINS)
  kinds = ', '.join(f'{kind} {n:g}' for kind, n in labelled.label_origins.items() if n)
  verdict = labelled.reason or (
      f'{check.metric} {labelled.value:.4f} inside [{labelled.bound[0]:g}, '
      f'{labelled.bound[1]:g}]')
  all_value = 'n/a' if check.value is None else f'{check.value:.4f}'
  labelled.reason = (
      f'{verdict}; judged on labelled faces only ({"; ".join(_side_sizes(*s) for s in sides)}; '
      f'labels: {kinds or "none"}): {predicted:g} faces with predicted '
      f'{CROSS.join(annotation["attributes"])} left out: ' + '; '.join(problems)
      + '. Faces without labels for the grouping (those of unlabelled '
      f'sources) are not in this judgement; on all examples it was {check.status} '
      f'({all_value})')
  return labelled


def _rates(label: str, c: Counts, level: float) -> Dict[str, object]:
  return {'name': label, 'counts': dataclasses.asdict(c), 'n': c.total,
          'fpr': _num(c.fpr), 'fpr_interval': rate_interval(c.fp, c.negatives, level),
          'fnr': _num(c.fnr), 'fnr_interval': rate_interval(c.fn, c.positives, level),
          'tpr': _num(c.tpr), 'positive_rate': _num(c.positive_rate)}


@dataclasses.dataclass
class AnnotationEvidence:
  """What the DemographicAnnotator's report says about the evaluated (test) split.

  `rows`: (label, demographics, per-attribute source, count) of every test
  example after annotation; `pairs`: (human, thresholded prediction) of every
  fully labelled test face; `accuracy`: per attribute, on those faces.
  """
  rows: List[Tuple[int, Dict[str, str], Dict[str, str], int]]
  pairs: List[Tuple[Dict[str, str], Dict[str, str]]]
  accuracy: Dict[str, Optional[float]]

  @classmethod
  def from_report(cls, report: Dict[str, object]) -> 'AnnotationEvidence':
    attributes = [c[len('true_'):] for c in report['test_pairs_columns'] if c.startswith('true_')]
    k = len(attributes)
    rows = []
    for row in report['evaluated']:
      rows.append((int(row[0]), dict(zip(attributes, row[1:1 + k])),
                   dict(zip(attributes, row[1 + k:1 + 2 * k])), int(row[-1])))
    pairs = [(dict(zip(attributes, p[:k])), dict(zip(attributes, p[k:])))
             for p in report['test_pairs']]
    accuracy = {a: (report['evaluation'].get(a) or {}).get('accuracy') for a in attributes}
    return cls(rows, pairs, accuracy)


def label_kind(sources: Iterable[Optional[str]]) -> str:
  """The kind of a grouping label from its attributes' sources (LABEL_KINDS' rule)."""
  sources = set(sources)
  return next((kind for kind in (features.PREDICTED, features.PROMPTED) if kind in sources),
              features.HUMAN)


def annotation_summary(grouping: GroupingConfig, evidence: AnnotationEvidence
                       ) -> Dict[str, object]:
  """Per side: reals/fakes and, per label kind (`{kind}_{real,fake}`), how many rest on
  human, prompted or predicted grouping labels; the annotator's precision for each
  side on the labelled test faces."""
  group, reference = groupings_lib.groups_of(grouping)
  names = group.feature_names
  out: Dict[str, object] = {'attributes': list(names),
                            'annotator_accuracy': {n: _num(evidence.accuracy.get(n))
                                                   for n in names}}
  for side, members in (('group', group), ('reference', reference)):
    counts = {'name': members.name, 'real': 0, 'fake': 0,
              **{f'{kind}_{cls}': 0 for kind in LABEL_KINDS for cls in ('real', 'fake')}}
    for label, demographics, sources, n in evidence.rows:
      if not members.contains(demographics):
        continue
      cls = 'fake' if label == 1 else 'real'
      counts[cls] += n
      counts[f'{label_kind(sources.get(name) for name in names)}_{cls}'] += n
    out[side] = counts
  precision = {}
  for side, members in (('group', group), ('reference', reference)):
    called = [true for true, predicted in evidence.pairs if members.contains(predicted)]
    right = sum(members.contains(true) for true in called)
    precision[side] = right / len(called) if called else None
    precision[f'n_{side}'] = len(called)
  out['precision'] = precision
  return out


def _zero_events(metric: str, group: Counts, reference: Counts, labels: Tuple[str, str]) -> str:
  """Why a ratio compares zero events with zero events ('' when it does not)."""
  if metric == DISPARATE_IMPACT:
    events = (group.tp + group.fp, reference.tp + reference.fp)
    what = 'examples predicted fake'
  elif metric == DI_REAL:
    events, what = (group.fp, reference.fp), 'real photos predicted fake'
  elif metric == DI_FAKE:
    events, what = (group.tp, reference.tp), 'fakes detected'
  else:
    return ''
  if any(events):
    return ''
  return (f'0 {what} in {labels[0]} and 0 in {labels[1]}: the ratio compares nothing '
          '(0/0 is not evidence of equal treatment)')


def _fake_share(c: Counts) -> float:
  return c.positives / c.total if c.total else math.nan


def mixed_di_not_judged(shares: Tuple[float, float], labels: Tuple[str, str],
                        max_gap: float) -> str:
  """Why the mixed DI is not judged ('' when it is): the two sides' fake shares differ.

  The mixed DI compares P(called fake) over reals and fakes together; when one
  side holds a larger share of fakes it is called fake more often however fair
  the model is. Undefined shares (no examples) are left to the size checks.
  """
  if any(math.isnan(v) for v in shares) or abs(shares[0] - shares[1]) <= max_gap + 1e-12:
    return ''
  return (f'fakes are {shares[0]:.3f} of {labels[0]} and {shares[1]:.3f} of {labels[1]}, more '
          f'than max_fake_share_gap {max_gap:g} apart: the mixed DI would measure the fake '
          'share, not the model (disparate_impact_real and disparate_impact_fake are judged)')


def labelled_slices(slices: Dict[SliceKey, Counts], names: Sequence[str]
                    ) -> Optional[Dict[SliceKey, Counts]]:
  """Slices on exactly `names`, counting only examples whose `names` are all labelled.

  Sums the `names` x labelled_attributes slices whose labelled attributes cover
  `names` (eval_config.LABELLED_SLICES). None when the evaluation holds no such
  slice: its examples lack labelled_attributes (they were not annotated).
  """
  wanted = set(names) | {features.LABELLED_ATTRIBUTES}
  out: Optional[Dict[SliceKey, Counts]] = None
  for key, counts in slices.items():
    if {k for k, _ in key} != wanted:
      continue
    out = {} if out is None else out
    values = dict(key)
    if features.labelled_covers(values.pop(features.LABELLED_ATTRIBUTES), names):
      reduced = tuple(sorted(values.items()))
      out[reduced] = out.get(reduced, Counts()) + counts
  return out


def _judge_counts(grouping: GroupingConfig, group: Counts, reference: Counts,
                  labels: Tuple[str, str], thresholds: ThresholdsConfig,
                  rng: np.random.Generator
                  ) -> Tuple[Dict[str, float], Dict[str, Optional[List[float]]], List[Check]]:
  """(values, intervals, one Check per metric) of `group` against `reference`."""
  n = thresholds.min_group_size
  group_label, reference_label = labels

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
      DI_REAL: negatives,
      DI_FAKE: positives,
  }
  values = fairness_metrics(group, reference)
  intervals = bootstrap_intervals(group, reference, thresholds.bootstrap_samples,
                                  thresholds.confidence_level, rng)
  bounds = _bounds(thresholds)
  shares = (_fake_share(group), _fake_share(reference))
  mixed_not_judged = mixed_di_not_judged(shares, labels, thresholds.max_fake_share_gap)
  not_judged = {DISPARATE_IMPACT: mixed_not_judged}
  for m, gap in ((DI_REAL, FPR_GAP), (DI_FAKE, FNR_GAP)):
    zero = _zero_events(m, group, reference, labels)
    if zero and not shortfalls[m]:
      # Both rates are 0 on enough examples: the ratio is undefined, the gap (0) is not,
      # and judges this pair. Reported as not measurable: never a pass, never blocking.
      not_judged[m] = f'{zero}; the ratio is undefined, {gap} judges this pair'
  checks = [_judge(grouping.name, m, values[m], intervals[m], bounds[m], shortfalls[m], thresholds,
                   _zero_events(m, group, reference, labels), not_judged.get(m, ''))
            for m in FAIRNESS_METRICS]
  return values, intervals, checks


def _apply_annotation(checks: List[Check], slices: Dict[SliceKey, Counts],
                      grouping: GroupingConfig, annotated: Dict[str, object],
                      thresholds: ThresholdsConfig, labelled_rng: np.random.Generator
                      ) -> Tuple[List[Check], Optional[Dict[str, object]]]:
  """The precision rule (module doc) on a grouping's checks; (checks, labelled-only summary).

  Where the rule fails for a check on predicted demographics, the check is judged
  on labelled faces only when the evaluation holds labelled_attributes slices.
  """
  problems = precision_problems(annotated, thresholds)
  labelled = None  # (checks, group counts, reference counts, labels) on labelled faces
  unavailable = ''
  out = []
  for check in checks:
    check.label_origins = _origins(annotated, check.metric, LABEL_KINDS)
    predicted = check.label_origins[features.PREDICTED]
    if not predicted or check.metric in thresholds.not_measurable:
      out.append(check)
      continue
    if problems and labelled is None and not unavailable:
      restricted = labelled_slices(slices, annotated['attributes'])
      if restricted is None:
        unavailable = (f'not judged on labelled faces only: the evaluation has no slices by '
                       f'{features.LABELLED_ATTRIBUTES} (examples written without it)')
      else:
        group, reference, group_label, reference_label = group_counts(restricted, grouping)
        _, _, labelled_checks = _judge_counts(
            grouping, group, reference, (group_label, reference_label), thresholds,
            labelled_rng)
        labelled = ({c.metric: c for c in labelled_checks}, group, reference,
                    (group_label, reference_label))
    if problems and labelled is not None:
      by_metric, group, reference, labels = labelled
      out.append(_labelled_only(check, by_metric[check.metric], predicted, annotated, problems,
                                ((labels[0], group), (labels[1], reference))))
      continue
    if check.status in (PASS, FAIL, INSUFFICIENT):
      _mark_predicted(check, predicted, annotated, problems, unavailable)
    out.append(check)
  summary = None
  if labelled is not None:
    _, group, reference, labels = labelled
    summary = {'group': _rates(labels[0], group, thresholds.confidence_level),
               'reference': _rates(labels[1], reference, thresholds.confidence_level)}
  return out, summary


def evaluate_grouping(slices: Dict[SliceKey, Counts], grouping: GroupingConfig,
                      thresholds: ThresholdsConfig, rng: np.random.Generator,
                      annotation: Optional[AnnotationEvidence] = None,
                      labelled_rng: Optional[np.random.Generator] = None
                      ) -> Tuple[Dict[str, object], List[Check]]:
  """(summary, checks) of one grouping.

  `labelled_rng` draws the intervals of checks judged on labelled faces only (a
  generator of its own, so the other checks' intervals do not depend on them).
  """
  group, reference, group_label, reference_label = group_counts(slices, grouping)
  labels = (group_label, reference_label)
  values, intervals, checks = _judge_counts(grouping, group, reference, labels, thresholds, rng)
  shares = (_fake_share(group), _fake_share(reference))
  summary = {
      'name': grouping.name, 'feature': grouping.feature,
      'fake_share': [_num(v) for v in shares],  # [group, reference]: positives / examples
      'group': _rates(group_label, group, thresholds.confidence_level),
      'reference': _rates(reference_label, reference, thresholds.confidence_level),
  }
  for m in REPORTED_METRICS:
    summary[m] = _num(values[m])
    summary[f'{m}_interval'] = intervals[m] and [_num(v) for v in intervals[m]]
    if m in RATIO_METRICS:
      summary[f'{m}_zero_events'] = _zero_events(m, group, reference, labels) or None
  if annotation:
    annotated = annotation_summary(grouping, annotation)
    checks, labelled = _apply_annotation(
        checks, slices, grouping, annotated, thresholds,
        labelled_rng or np.random.default_rng(thresholds.bootstrap_seed))
    summary['annotation'] = annotated
    summary['rests_on_predicted'] = sorted({c.metric for c in checks if c.rests_on_predicted})
    if labelled:
      summary['labelled_only'] = labelled
  return summary, checks


# ---------------------------------------------------------------------------
# Per-source accuracy: AUC and balanced accuracy where both classes are present

AUC, BALANCED_ACCURACY, FPR, TPR = 'auc', 'balanced_accuracy', 'fpr', 'tpr'
SOURCE_METRICS = (AUC, BALANCED_ACCURACY, FPR, TPR)


def balanced_accuracy(c: Counts) -> float:
  """(TPR + TNR) / 2; NaN unless both classes are present (never 0, never a pass)."""
  return (c.tpr + 1 - c.fpr) / 2 if c.positives and c.negatives else math.nan


def _source_check(where: str, metric: str, value: Optional[float], bound: List[float],
                  lacking: List[str], thresholds: ThresholdsConfig) -> Check:
  check = Check(where, metric, _num(value), None, bound, PASS)
  low, high = bound
  if lacking:
    check.status, check.lacking = INSUFFICIENT, lacking
    check.reason = (f'{metric} insufficient evidence: {"; ".join(lacking)} '
                    f'(need {thresholds.min_group_size})')
  elif value is None or math.isnan(value):
    check.status = INSUFFICIENT
    check.reason = f'{metric}: insufficient evidence: undefined on these examples'
  elif not within_bound(value, bound):
    check.status = FAIL
    check.reason = f'{metric} {value:.4f} outside [{low:g}, {high:g}]'
  return check


def judge_sources(slices: Dict[SliceKey, Counts], auc: Dict[SliceKey, Optional[float]],
                  thresholds: ThresholdsConfig, feature: str = 'source') -> List[Check]:
  """Accuracy checks per source (the `feature` slices; all examples when there are none).

  A source holding both classes is judged on AUC (`auc`: TFMA's per slice, None
  where undefined) and balanced accuracy; a source of real photos only on its
  FPR, one of fakes only on its TPR: the only rates it defines. Each class a
  metric uses needs `min_group_size` examples. When no source holds both
  classes, AUC and balanced accuracy are judged nowhere: one more check says so
  (insufficient evidence), so a test set without fakes can never pass.
  """
  n = thresholds.min_group_size
  sources = sorted(k for k in slices if len(k) == 1 and k[0][0] == feature)
  named = [(f'{feature} {k[0][1]}', k) for k in sources] or [('all examples', ())]
  checks = []
  both_anywhere = False
  for where, key in named:
    c = slices[key]
    reals = [] if c.negatives >= n else [f'{where} has {c.negatives:g} real photos']
    fakes = [] if c.positives >= n else [f'{where} has {c.positives:g} fakes']
    if c.negatives and c.positives:
      both_anywhere = True
      checks.append(_source_check(where, AUC, auc.get(key), [thresholds.min_auc, 1.0],
                                  reals + fakes, thresholds))
      checks.append(_source_check(where, BALANCED_ACCURACY, balanced_accuracy(c),
                                  [thresholds.min_balanced_accuracy, 1.0], reals + fakes,
                                  thresholds))
    elif c.negatives:
      checks.append(_source_check(where, FPR, c.fpr, [0.0, thresholds.max_one_class_fpr],
                                  reals, thresholds))
    elif c.positives:
      checks.append(_source_check(where, TPR, c.tpr, [thresholds.min_one_class_tpr, 1.0],
                                  fakes, thresholds))
  if not both_anywhere:
    total = slices.get((), Counts())
    missing = 'fakes' if total.negatives else 'real photos' if total.positives else 'examples'
    checks.append(Check(
        'all sources', f'{AUC}, {BALANCED_ACCURACY}', None, None,
        [thresholds.min_auc, 1.0], INSUFFICIENT,
        f'insufficient evidence: AUC and balanced accuracy are undefined: no source holds both '
        f'classes (the examples hold {total.negatives:g} real photos and {total.positives:g} '
        f'fakes; 0 {missing})', [f'0 {missing} in the evaluated examples']))
  return checks


def verdict_of(statuses: Iterable[str]) -> str:
  statuses = set(statuses)
  return FAIL if FAIL in statuses else INSUFFICIENT if INSUFFICIENT in statuses else PASS


def judge(slices: Dict[SliceKey, Counts], thresholds: ThresholdsConfig,
          groupings: Optional[Sequence[GroupingConfig]] = None,
          annotation: Optional[AnnotationEvidence] = None) -> Dict[str, object]:
  """Evaluates every grouping; the verdict is PASS only if no check fails or lacks evidence.

  `annotation`: the DemographicAnnotator's evidence, when the evaluated
  examples may carry predicted demographics (marks and judges those checks).
  """
  rng = np.random.default_rng(thresholds.bootstrap_seed)
  labelled_rng = np.random.default_rng([thresholds.bootstrap_seed, 1])
  summaries, checks = [], []
  for grouping in (expand_groupings(thresholds, slices) if groupings is None else groupings):
    summary, grouping_checks = evaluate_grouping(slices, grouping, thresholds, rng, annotation,
                                                 labelled_rng)
    summaries.append(summary)
    checks.extend(grouping_checks)
  return {'verdict': verdict_of(c.status for c in checks), 'groupings': summaries,
          'checks': [dataclasses.asdict(c) for c in checks],
          'bounds': _bounds(thresholds), 'min_group_size': thresholds.min_group_size,
          'confidence_level': thresholds.confidence_level, 'judge_on': thresholds.judge_on,
          'not_measurable': list(thresholds.not_measurable),
          'annotator_accuracy': annotation.accuracy if annotation else None}


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
