"""Builds the TFMA EvalConfig from the thresholds file.

Slices: overall, gender, race, age, race x gender and source, and each of the
four demographic ones crossed with labelled_attributes. The balanced
accuracy and AUC bounds become TFMA value thresholds on the overall slice, so
the Evaluator's own blessing already refuses an inaccurate model; the
per-source bounds and the fairness bounds are judged by the FairnessGate from
the per-slice metrics and confusion counts computed here.

Every thresholded metric is computed at the model's own decision threshold
(the operating point the Trainer chose and exported, read with
`serving_contract.read_decision_threshold`): `fakefaces gate` reads it from
the SavedModel, the pipeline's Evaluator from the Trainer's model artifact at
run time (`evaluator_executor.py`, which calls `at_operating_point`). With a
model in production, its confusion counts are computed at its own threshold
too (the FairnessGate compares both models at their own operating points);
TFMA's balanced-accuracy change threshold compares the two at the
candidate's. TFMA's BalancedAccuracy is NaN (a failed bound) when the slice
lacks a class and its AUC is 0: the gate reads both as undefined, never as a
measured failure (evaluation.py).

TFMA's own confidence intervals are off by default: on 2 CPU cores they made a
280-example evaluation take 153 s instead of 10 s (jackknife, 34 slices). The
gate computes its intervals from the counts instead (see fairness.py); set
`tfma_confidence_intervals` in the thresholds file to get TFMA's as well.
"""

import json
from typing import List, Optional

import tensorflow_model_analysis as tfma

from fakefaces.components.shared import features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.fairness_gate import baseline
from fakefaces.components.shared import thresholds as thresholds_lib
from fakefaces.components.shared.thresholds import ThresholdsConfig

DEMOGRAPHIC_SLICES = ((features.GENDER,), (features.RACE,), (features.AGE,),
                      (features.RACE, features.GENDER))
# Each demographic slice again by labelled_attributes: the FairnessGate sums the
# ones whose labelled attributes cover a grouping to judge it on labelled faces only
# (fairness.py). Examples without the feature (not annotated) add no such slice.
LABELLED_SLICES = tuple(keys + (features.LABELLED_ATTRIBUTES,) for keys in DEMOGRAPHIC_SLICES)
SLICES = ((),) + DEMOGRAPHIC_SLICES + ((features.SOURCE,),) + LABELLED_SLICES
CONFUSION_METRIC = 'confusion_matrix_at_thresholds'
BALANCED_ACCURACY = 'balanced_accuracy'
# Metrics undefined on a slice that lacks a class (TFMA reports 0 or NaN there).
NEEDS_BOTH_CLASSES = ('auc', BALANCED_ACCURACY)
# TPR at these FPRs, per slice (TFMA SensitivityAtSpecificity, 1000 interpolated thresholds).
TPR_AT_FPR = {f'tpr_at_fpr_{rate:g}': rate for rate in (0.01, 0.05)}
_INTERVAL_METHODS = {
    'jackknife': tfma.ConfidenceIntervalOptions.JACKKNIFE,
    'poisson_bootstrap': tfma.ConfidenceIntervalOptions.POISSON_BOOTSTRAP,
}


def _overall_lower_bound(value: float, max_drop: Optional[float] = None
                         ) -> List[tfma.PerSliceMetricThreshold]:
  # On the overall slice only: a floor on every 5-example intersection would
  # refuse models for noise; per-group behaviour is the FairnessGate's job.
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': value}))
  if max_drop is not None:
    # TFX's convention against the model in production: the candidate may be at most
    # `max_drop` worse. TFX's Evaluator drops it on the first run (no baseline, "rubber stamp").
    threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_drop}))
  return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def build_eval_config(thresholds: ThresholdsConfig, decision_threshold: float,
                      with_baseline: bool = False,
                      baseline_threshold: Optional[float] = None) -> tfma.EvalConfig:
  """The one EvalConfig used by the pipeline's Evaluator and by `fakefaces gate`.

  `decision_threshold`: the candidate model's (serving_contract.read_decision_threshold).
  `with_baseline` adds change thresholds on balanced accuracy and AUC against the
  model in production (thresholds.baseline); the pipeline's Evaluator gets the
  baseline model from the latest-blessed-model resolver, and TFX names the two
  models. `baseline_threshold`: the production model's own threshold, at which its
  confusion counts are also computed.
  """
  thresholds_lib.validate_thresholds(thresholds)
  baseline.validate(thresholds.baseline)
  thresholds_lib.validate_decision_threshold(decision_threshold, 'decision_threshold')
  change = with_baseline and thresholds.baseline.enabled
  cutoff = decision_threshold
  matrices = sorted({cutoff} | ({baseline_threshold} if baseline_threshold is not None else set()))
  metrics = [
      tfma.MetricConfig(class_name='ExampleCount'),
      # Plain accuracy is reported (the paper's measure), not bounded: on a test split
      # of mostly audit reals it passes on the reals alone.
      tfma.MetricConfig(class_name='BinaryAccuracy', config=json.dumps({'threshold': cutoff})),
      tfma.MetricConfig(class_name='BalancedAccuracy', config=json.dumps({'thresholds': [cutoff]}),
                        per_slice_thresholds=_overall_lower_bound(
                            thresholds.min_balanced_accuracy,
                            thresholds.baseline.max_accuracy_drop if change else None)),
      tfma.MetricConfig(class_name='AUC',
                        per_slice_thresholds=_overall_lower_bound(
                            thresholds.min_auc,
                            thresholds.baseline.max_auc_drop if change else None)),
      tfma.MetricConfig(class_name='Precision', config=json.dumps({'thresholds': [cutoff]})),
      tfma.MetricConfig(class_name='Recall', config=json.dumps({'thresholds': [cutoff]})),
      tfma.MetricConfig(class_name='FPR', config=json.dumps({'thresholds': [cutoff]})),
      tfma.MetricConfig(class_name='FNR', config=json.dumps({'thresholds': [cutoff]})),
      # Raw per-slice counts: the fairness gate derives every group rate from them.
      tfma.MetricConfig(class_name='ConfusionMatrixAtThresholds',
                        config=json.dumps({'thresholds': matrices})),
      tfma.MetricConfig(class_name='FairnessIndicators',
                        module='fairness_indicators.fairness_indicators_metrics',
                        config=json.dumps({'thresholds': [cutoff]})),
  ] + [tfma.MetricConfig(class_name='SensitivityAtSpecificity',
                         config=json.dumps({'specificity': 1 - rate, 'name': name}))
       for name, rate in TPR_AT_FPR.items()]
  options = tfma.Options()
  method = thresholds.tfma_confidence_intervals
  if method != 'off':
    options.compute_confidence_intervals.value = True
    options.confidence_intervals.method = _INTERVAL_METHODS[method]
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=contract.EXAMPLES_SIGNATURE,
                                  label_key=features.LABEL,
                                  prediction_key=contract.PROBABILITY_KEY)],
      slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in SLICES],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
      options=options)


def at_operating_point(config: tfma.EvalConfig, decision_threshold: float,
                       baseline_threshold: Optional[float] = None) -> tfma.EvalConfig:
  """A copy of `config` (from build_eval_config) with every threshold set to the models' own.

  The pipeline builds its Evaluator's EvalConfig before any model exists; its
  executor calls this with the thresholds read from the candidate and the
  production model, so the bounds are judged where the models' `label` outputs
  decide.
  """
  thresholds_lib.validate_decision_threshold(decision_threshold, 'decision_threshold')
  out = tfma.EvalConfig()
  out.CopyFrom(config)
  for spec in out.metrics_specs:
    for metric in spec.metrics:
      options = json.loads(metric.config or '{}')
      if 'threshold' in options:
        options['threshold'] = decision_threshold
      elif 'thresholds' in options:
        options['thresholds'] = (
            sorted({decision_threshold} | ({baseline_threshold} if baseline_threshold is not None
                                           else set()))
            if metric.class_name == 'ConfusionMatrixAtThresholds' else [decision_threshold])
      else:
        continue
      metric.config = json.dumps(options)
  return out
