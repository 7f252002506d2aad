"""Builds the TFMA EvalConfig from the thresholds file.

Slices: overall, gender, race, age, race x gender and source. The accuracy
and AUC bounds become TFMA value thresholds, so the Evaluator's own blessing
already refuses an inaccurate model; the fairness bounds are judged by the
FairnessGate from the per-slice confusion counts computed here.
"""

import json

import tensorflow_model_analysis as tfma

from components import features
from components.trainer import export
from pipeline.config import ThresholdsConfig

SLICES = ((), (features.GENDER,), (features.RACE,), (features.AGE,),
          (features.RACE, features.GENDER), (features.SOURCE,))
CONFUSION_METRIC = 'confusion_matrix_at_thresholds'


def _lower_bound(value: float) -> tfma.MetricThreshold:
  return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={'value': value}))


def build_eval_config(thresholds: ThresholdsConfig) -> tfma.EvalConfig:
  cutoff = thresholds.decision_threshold
  metrics = [
      tfma.MetricConfig(class_name='ExampleCount'),
      tfma.MetricConfig(class_name='BinaryAccuracy', config=json.dumps({'threshold': cutoff}),
                        threshold=_lower_bound(thresholds.min_binary_accuracy)),
      tfma.MetricConfig(class_name='AUC', threshold=_lower_bound(thresholds.min_auc)),
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
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=export.EXAMPLES_SIGNATURE,
                                  label_key=features.LABEL,
                                  prediction_key=export.PROBABILITY_KEY)],
      slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in SLICES],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)])
