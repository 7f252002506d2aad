"""Builds the TFMA EvalConfig from the thresholds file.

Slices: overall, gender, race, age, race x gender and source. The accuracy
and AUC bounds become TFMA value thresholds, so the Evaluator's own blessing
already refuses an inaccurate model; the fairness bounds are judged by the
FairnessGate from the per-slice confusion counts computed here.

TFMA's own confidence intervals are off by default: on 2 CPU cores they made a
280-example evaluation take 153 s instead of 10 s (jackknife, 34 slices). The
gate computes its intervals from the counts instead (see fairness.py); set
`tfma_confidence_intervals` in the thresholds file to get TFMA's as well.
"""

import json
from typing import List, Optional

import tensorflow_model_analysis as tfma

from fakefaces.components import features
from fakefaces.components.fairness_gate import baseline, fairness
from fakefaces.components.trainer import export
from fakefaces.components.fairness_gate.config import ThresholdsConfig

SLICES = ((), (features.GENDER,), (features.RACE,), (features.AGE,),
          (features.RACE, features.GENDER), (features.SOURCE,))
CONFUSION_METRIC = 'confusion_matrix_at_thresholds'
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


def build_eval_config(thresholds: ThresholdsConfig, with_baseline: bool = False
                      ) -> tfma.EvalConfig:
  """The one EvalConfig used by the pipeline's Evaluator and by `fakefaces gate`.

  `with_baseline` adds change thresholds on accuracy and AUC against the model in
  production (thresholds.baseline); the pipeline's Evaluator gets the baseline model
  from the latest-blessed-model resolver, and TFX names the two models.
  """
  fairness.validate_thresholds(thresholds)
  baseline.validate(thresholds.baseline)
  change = with_baseline and thresholds.baseline.enabled
  cutoff = thresholds.decision_threshold
  metrics = [
      tfma.MetricConfig(class_name='ExampleCount'),
      tfma.MetricConfig(class_name='BinaryAccuracy', config=json.dumps({'threshold': cutoff}),
                        per_slice_thresholds=_overall_lower_bound(
                            thresholds.min_binary_accuracy,
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
                        config=json.dumps({'thresholds': [cutoff]})),
      tfma.MetricConfig(class_name='FairnessIndicators',
                        module='fairness_indicators.fairness_indicators_metrics',
                        config=json.dumps({'thresholds': [cutoff]})),
  ]
  options = tfma.Options()
  method = thresholds.tfma_confidence_intervals
  if method != 'off':
    options.compute_confidence_intervals.value = True
    options.confidence_intervals.method = _INTERVAL_METHODS[method]
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=export.EXAMPLES_SIGNATURE,
                                  label_key=features.LABEL,
                                  prediction_key=export.PROBABILITY_KEY)],
      slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in SLICES],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
      options=options)
