"""The DataGate's configuration: schema, allowed anomalies, slice coverage and split skew."""

import dataclasses
from typing import List

from fakefaces.components.shared.config_base import DEFAULT_SCHEMA


@dataclasses.dataclass
class SourceShortcutConfig:
  """The source-shortcut check (shortcut.py): can a probe tell the sources of a class apart?"""
  enabled: bool = True  # false: the check is skipped
  split: str = 'train'  # what the Trainer learns from; `audit` sources are never in it
  # Above this cross-validated probe AUC two sources of one class count as told apart.
  # FairFace vs FFHQ reals after plain ingestion: 0.996
  # (docs/training_and_quality.md, "The source shortcut").
  max_probe_auc: float = 0.8
  # A source of one class only: its processing differs when its probe AUC against the other
  # class is above max_probe_auc and above the split's own reference (the least separable
  # source holding both classes, its classes probed across: another collection, the same
  # processing) by more than reference_z standard errors of the difference (Hanley-McNeil;
  # 1.645: one-sided 95%), or above max_one_class_auc whatever the reference. 0.9: the
  # untouched one-class sources of the shared data reach 0.87, planted processing
  # differences 0.91-1.00 (bench/gate_rule.py; docs/detection_quality.md, "A reference
  # the run measures").
  reference_z: float = 1.645
  max_one_class_auc: float = 0.9  # see reference_z: above it a one-class source always differs
  # A one-class row above max_probe_auc is probed again on processing-matched copies of the
  # same examples of both sides (shortcut.matched_copy: one fresh JPEG generation for all); a
  # drop of the AUC by more than this is JPEG history, and the processing differs whatever
  # the bound says. 0.1: the within-collection control (k140's reals alone) drops by
  # 0.04-0.05, SDFD with no shared JPEG generation by 0.21-0.25 (bench/gate_rule.py, five
  # subsamples). 1 turns the copies off (no drop can exceed it).
  max_copies_drop: float = 0.1
  # A separable pair is a label shortcut only when the sources' shares of fakes differ by
  # more than this; equal shares make "looks like this source" useless as a label.
  max_fake_share_gap: float = 0.1
  on_shortcut: str = 'stop'  # 'stop' the run, or 'warn' (report only)
  max_examples_per_source: int = 300  # per class and source; the probe's sample
  min_examples_per_source: int = 20  # fewer: insufficient evidence (never a pass)
  folds: int = 5  # cross-validation folds of the probe (>= 2)
  seed: int = 0  # the probe's sample and folds

@dataclasses.dataclass
class ValidationConfig:
  schema_file: str = DEFAULT_SCHEMA  # the curated TFDV schema the examples are validated against
  # Anomaly kinds (e.g. 'ENUM_TYPE_UNEXPECTED_STRING_VALUES') or 'feature:kind'
  # pairs a user accepts on purpose; anything else stops the run.
  allowed_anomalies: List[str] = dataclasses.field(default_factory=list)
  # Each judged demographic group needs this many real and this many fake
  # examples in the evaluation split.
  min_examples_per_class: int = 5
  on_short_group: str = 'insufficient'  # 'stop' or 'insufficient'
  coverage_split: str = 'test'  # the split the Evaluator judges; slice coverage is counted there
  # Split skew: L-infinity distance between each split's value distribution and the
  # baseline split's, per feature; above the bound (and beyond sampling noise) it stops the run.
  skew_features: List[str] = dataclasses.field(default_factory=lambda: ['gender', 'race', 'age'])
  skew_baseline_split: str = 'train'  # the split the others are compared with
  # Splits compared with the baseline; empty: every other split. A test split that holds
  # `role: audit` sources (never trained on) differs from train by design.
  skew_splits: List[str] = dataclasses.field(default_factory=list)
  max_skew_linf: float = 0.1  # the bound on the L-infinity distance, in [0, 1]
  # Distances within this many standard errors are sampling noise (~60 values compared, and
  # the demo's real/fake pairs share demographics): 6 stops 0 of 200 demo seeds, 4 stops 3 of 40.
  skew_noise_z: float = 6.0
  # Whether a probe tells the sources of one class apart (a shortcut the Trainer would learn).
  source_shortcut: SourceShortcutConfig = dataclasses.field(default_factory=SourceShortcutConfig)
