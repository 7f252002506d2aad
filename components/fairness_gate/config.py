"""The fairness gate's configuration: accuracy and fairness bounds, groupings, intervals.

Loaded from its own YAML file (`thresholds_file`) so CI can judge a model with the
same bounds as the pipeline.
"""

import dataclasses
import os
from typing import List

from fakefaces.components.config_base import from_dict, load_yaml
from fakefaces.components.groupings import GroupingConfig

@dataclasses.dataclass
class BaselineConfig:
  """How much worse than the model in production a candidate may be.

  Judged only when a production model exists (the latest model the
  ServingCanary blessed); the first run uses the absolute bounds alone.
  """
  enabled: bool = True
  # Overall accuracy / AUC may drop by at most this much (TFMA change thresholds on the
  # Evaluator, so its own blessing already refuses the drop).
  max_accuracy_drop: float = 0.01
  max_auc_drop: float = 0.01
  # No judged group's |FPR gap|, |FNR gap| or |AOD| may grow by more than this (FairnessGate).
  max_gap_growth: float = 0.02


@dataclasses.dataclass
class ThresholdsConfig:
  """What a model must achieve to be pushed (issue: fairness gate)."""
  decision_threshold: float = 0.5  # probability above which a face is called fake
  # A group with fewer examples of the class a rate needs is "insufficient
  # evidence", never a pass.
  min_group_size: int = 30
  min_binary_accuracy: float = 0.8
  min_auc: float = 0.8
  disparate_impact_range: List[float] = dataclasses.field(default_factory=lambda: [0.8, 1.25])
  max_abs_average_odds_difference: float = 0.05
  max_fpr_gap: float = 0.05
  max_fnr_gap: float = 0.05
  groupings: List[GroupingConfig] = dataclasses.field(default_factory=list)
  # Also judge every value of these features (or crosses like 'race x gender') against the rest.
  judge_each_value_of: List[str] = dataclasses.field(default_factory=list)
  # Fairness metrics declared unmeasurable on this data (e.g. fnr_gap when fakes carry no
  # demographics): reported as 'not_measurable', never as passed. Default: none (strict).
  not_measurable: List[str] = dataclasses.field(default_factory=list)
  # A check that would pass is insufficient evidence when its interval is wider than this
  # (0: no limit): ratios (DI) and differences (AOD, FPR/FNR gaps) separately.
  max_interval_span_di: float = 0.0
  max_interval_span_difference: float = 0.0
  # Checks resting on predicted demographics (DemographicAnnotator) need the annotator's
  # precision for both sides of the grouping, on the labelled test split, to be at least
  # this, measured on at least min_annotator_support faces per side.
  min_annotator_precision: float = 0.8
  min_annotator_support: int = 20
  judge_on: str = 'estimate'  # 'estimate', or 'interval': the whole interval must be in bounds
  confidence_level: float = 0.95  # of the fairness and per-slice rate intervals
  bootstrap_samples: int = 2000  # seeded parametric bootstrap draws over the confusion counts
  bootstrap_seed: int = 0
  # TFMA's own metric intervals: 'off', 'jackknife' or 'poisson_bootstrap' (~15x slower).
  tfma_confidence_intervals: str = 'off'
  # Change thresholds against the model in production (components/fairness_gate/baseline.py).
  baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)


def load_thresholds(path: str) -> ThresholdsConfig:
  return from_dict(ThresholdsConfig, load_yaml(path), os.path.basename(path))
