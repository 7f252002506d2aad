"""What a model must achieve to be pushed: accuracy and fairness bounds, groupings, intervals.

A contract shared by the layers, not one component's config: the FairnessGate
judges a model by it, the DataGate reads its groupings and group sizes to check
that the data can be judged at all (slice coverage), and the Evaluator's TFMA
config is built from it. Loaded from its own YAML file (`thresholds_file`) so CI
can judge a model with the same bounds as the pipeline.
"""

import dataclasses
import os
from typing import List, Optional

from fakefaces.components.shared import groupings as groupings_lib
from fakefaces.components.shared.config_base import ConfigError, from_dict, load_yaml
from fakefaces.components.shared.groupings import GroupingConfig

# The fairness metrics the gate judges (components/fairness_gate/fairness.py computes
# them); `not_measurable` names them.
DISPARATE_IMPACT = 'disparate_impact'
AVERAGE_ODDS_DIFFERENCE = 'average_odds_difference'
FPR_GAP = 'fpr_gap'
FNR_GAP = 'fnr_gap'
DI_REAL = 'disparate_impact_real'  # FPR ratio on real photos
DI_FAKE = 'disparate_impact_fake'  # TPR ratio on fakes
FAIRNESS_METRICS = (DISPARATE_IMPACT, AVERAGE_ODDS_DIFFERENCE, FPR_GAP, FNR_GAP, DI_REAL, DI_FAKE)
JUDGE_ON = ('estimate', 'interval')
TFMA_INTERVAL_METHODS = ('off', 'jackknife', 'poisson_bootstrap')


@dataclasses.dataclass
class BaselineConfig:
  """How much worse than the model in production a candidate may be.

  Judged only when a production model exists (the latest model the
  ServingCanary blessed); the first run uses the absolute bounds alone.
  """
  enabled: bool = True  # false: only the absolute bounds, even when a production model exists
  # Overall balanced accuracy / AUC may drop by at most this much (TFMA change thresholds
  # on the Evaluator, so its own blessing already refuses the drop).
  max_accuracy_drop: float = 0.01
  max_auc_drop: float = 0.01  # as max_accuracy_drop, for AUC
  # No judged group's |FPR gap|, |FNR gap| or |AOD| may grow by more than this (FairnessGate).
  max_gap_growth: float = 0.02


@dataclasses.dataclass
class ThresholdsConfig:
  """What a model must achieve to be pushed (the FairnessGate and the Evaluator judge it)."""
  # The operating point: the Trainer chooses the decision threshold on the eval split so
  # that at most this share of its real photos is called fake (a real person called fake
  # is the costly error), and exports it with the model; everything downstream reads it
  # from the model (serving_contract.read_decision_threshold).
  target_fpr: Optional[float] = 0.05
  # An explicit threshold instead of choosing one (P(fake) at or above it is called fake);
  # it overrides target_fpr when set. null: choose by target_fpr.
  decision_threshold: Optional[float] = None
  # A group with fewer examples of the class a rate needs is "insufficient
  # evidence", never a pass.
  min_group_size: int = 30
  # Overall (TFMA, on the Evaluator) and per source with both classes (FairnessGate).
  # Balanced accuracy = (TPR + TNR) / 2, so a test split of mostly real photos cannot
  # carry it the way it carried plain accuracy.
  min_balanced_accuracy: float = 0.8
  min_auc: float = 0.8  # as min_balanced_accuracy, for AUC
  # A source with one class only (e.g. audit reals) is judged on the rate it defines:
  max_one_class_fpr: float = 0.08  # reals-only source: share called fake
  min_one_class_tpr: float = 0.8  # fakes-only source: share caught
  # [low, high] every judged disparate impact (group's rate / reference's) must lie in.
  disparate_impact_range: List[float] = dataclasses.field(default_factory=lambda: [0.8, 1.25])
  max_abs_average_odds_difference: float = 0.05  # |AOD|, ((FPR_g - FPR_r) + (TPR_g - TPR_r)) / 2
  max_fpr_gap: float = 0.05  # |FPR_group - FPR_reference|
  max_fnr_gap: float = 0.05  # |FNR_group - FNR_reference|
  # The paper's mixed DI (positive rate over reals and fakes together) is judged only where
  # the group's and the reference's shares of fakes differ by at most this much; elsewhere
  # it measures the fake share, not the model, and is reported beside the per-class DIs
  # (FPR ratio on reals, TPR ratio on fakes), which are judged.
  max_fake_share_gap: float = 0.05
  # The fairness comparisons judged: a group against its reference on one feature.
  groupings: List[GroupingConfig] = dataclasses.field(default_factory=list)
  # Also judge every value of these features (or crosses like 'race x gender') against the rest.
  judge_each_value_of: List[str] = dataclasses.field(default_factory=list)
  # Fairness metrics declared unmeasurable on this data (e.g. fnr_gap when fakes carry no
  # demographics): reported as 'not_measurable', never as passed. Default: none (strict).
  not_measurable: List[str] = dataclasses.field(default_factory=list)
  # A check that would pass is insufficient evidence when its interval is wider than this
  # (0: no limit): ratios (DI) and differences (AOD, FPR/FNR gaps) separately.
  max_interval_span_di: float = 0.0
  max_interval_span_difference: float = 0.0  # as max_interval_span_di, for AOD and the gaps
  # Checks resting on predicted demographics (DemographicAnnotator) need the annotator's
  # precision for both sides of the grouping, on the labelled test split, to be at least
  # this, measured on at least min_annotator_support faces per side.
  min_annotator_precision: float = 0.8
  min_annotator_support: int = 20  # labelled test faces per side behind that precision
  judge_on: str = 'estimate'  # 'estimate', or 'interval': the whole interval must be in bounds
  confidence_level: float = 0.95  # of the fairness and per-slice rate intervals
  bootstrap_samples: int = 2000  # seeded parametric bootstrap draws over the confusion counts
  bootstrap_seed: int = 0  # seeds the bootstrap, so a verdict is reproducible
  # TFMA's own metric intervals: 'off', 'jackknife' or 'poisson_bootstrap' (~15x slower).
  tfma_confidence_intervals: str = 'off'
  # Change thresholds against the model in production (components/fairness_gate/baseline.py).
  baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)


# How far past a closed bound a metric may lie and still be inside it. Metrics come from
# float32 scores summed in float64 by TFMA and numpy: a perfect model's AUC was measured at
# a rounding error above 1 on a CPU training in bfloat16, and refused ("auc 1.0000 outside
# [0, 1]"). 1e-6 is ~10 float32 ulps at 1.0, and 1,000x finer than any bound's decimals.
BOUND_TOLERANCE = 1e-6


def within_bound(value: float, bound: List[float]) -> bool:
  """Whether `value` lies in the closed interval `bound` = [low, high], up to BOUND_TOLERANCE.

  The one comparison every bound is judged with (gate checks, per-source checks,
  intervals), so a metric is never refused for a float's last bits. NaN is never within.
  """
  low, high = bound
  return low - BOUND_TOLERANCE <= value <= high + BOUND_TOLERANCE


def load_thresholds(path: str) -> ThresholdsConfig:
  """Reads the thresholds YAML file at `path`.

  Raises:
    ConfigError: the file cannot be read or is not YAML, or an unknown key or a
      wrong type (named by its dotted field, prefixed by the file's name).
  """
  return from_dict(ThresholdsConfig, load_yaml(path, 'thresholds file'), os.path.basename(path))


def validate_thresholds(thresholds: ThresholdsConfig, where: str = 'thresholds') -> None:
  """Raises ConfigError naming the field for any value the gate cannot use."""
  low_high = thresholds.disparate_impact_range
  if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1]:
    raise ConfigError(f'{where}.disparate_impact_range must be [low, high] with 0 <= low <= '
                      f'high, got {low_high}')
  if thresholds.decision_threshold is None and thresholds.target_fpr is None:
    raise ConfigError(f'{where}: set target_fpr (the threshold is chosen on the eval split for '
                      'it) or decision_threshold (an explicit threshold)')
  if thresholds.decision_threshold is not None:
    validate_decision_threshold(thresholds.decision_threshold, f'{where}.decision_threshold')
  if thresholds.target_fpr is not None and not 0.0 < thresholds.target_fpr < 1.0:
    raise ConfigError(f'{where}.target_fpr must be in (0, 1), got {thresholds.target_fpr}')
  for name in ('min_balanced_accuracy', 'min_auc'):  # above 1: no model passes (CI tests use it)
    if getattr(thresholds, name) < 0:
      raise ConfigError(f'{where}.{name} must be >= 0, got {getattr(thresholds, name)}')
  for name in ('max_one_class_fpr', 'min_one_class_tpr'):
    if not 0.0 <= getattr(thresholds, name) <= 1.0:
      raise ConfigError(f'{where}.{name} must be in [0, 1], got {getattr(thresholds, name)}')
  if not 0.0 <= thresholds.max_fake_share_gap <= 1.0:
    raise ConfigError(f'{where}.max_fake_share_gap must be in [0, 1], '
                      f'got {thresholds.max_fake_share_gap}')
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
  for name in ('max_interval_span_di', 'max_interval_span_difference'):
    if getattr(thresholds, name) < 0:
      raise ConfigError(f'{where}.{name} must be >= 0 (0: no limit), '
                        f'got {getattr(thresholds, name)}')
  if not 0.0 <= thresholds.min_annotator_precision <= 1.0:
    raise ConfigError(f'{where}.min_annotator_precision must be in [0, 1], '
                      f'got {thresholds.min_annotator_precision}')
  if thresholds.min_annotator_support < 1:
    raise ConfigError(f'{where}.min_annotator_support must be >= 1, '
                      f'got {thresholds.min_annotator_support}')
  groupings_lib.check_groupings(thresholds.groupings, thresholds.judge_each_value_of, where)


def validate_decision_threshold(value, where: str) -> None:
  """A decision threshold must be a number strictly between 0 and 1 (ConfigError naming `where`)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
    raise ConfigError(f'{where} must be in (0, 1), got {value!r}')
