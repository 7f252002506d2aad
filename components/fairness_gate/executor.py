"""FairnessGate executor: blesses a model only if it is accurate and fair.

It reads the Evaluator's output (per-slice confusion counts and its own
threshold blessing), judges every configured grouping with `fairness.judge`,
and writes a ModelBlessing with the same custom properties the Evaluator
writes (`blessed`, `current_model`, `current_model_id`), so the stock Pusher
and LatestBlessedModelStrategy accept it.
"""

import json
import os
from typing import Dict

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.fairness_gate import eval_config, fairness
from pipeline.config import ThresholdsConfig, from_dict

REPORT_FILE = 'report.json'
BLESSED_FILE, NOT_BLESSED_FILE = 'BLESSED', 'NOT_BLESSED'


def _slice_key(metrics_for_slice) -> fairness.SliceKey:
  key = []
  for single in metrics_for_slice.slice_key.single_slice_keys:
    kind = single.WhichOneof('kind')
    value = getattr(single, kind)
    key.append((single.column, value.decode('utf-8') if isinstance(value, bytes) else str(value)))
  return tuple(sorted(key))


def load_slice_counts(evaluation_uri: str, decision_threshold: float
                      ) -> Dict[fairness.SliceKey, fairness.Counts]:
  """Per-slice confusion counts at the decision threshold, from TFMA's metrics output."""
  slices = {}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    if metrics_for_slice.HasField('cross_slice_key'):
      continue
    for kv in metrics_for_slice.metric_keys_and_values:
      if kv.key.name != eval_config.CONFUSION_METRIC:
        continue
      for matrix in kv.value.confusion_matrix_at_thresholds.matrices:
        if abs(matrix.threshold - decision_threshold) < 1e-6:
          slices[_slice_key(metrics_for_slice)] = fairness.Counts(
              tp=matrix.true_positives, fp=matrix.false_positives,
              tn=matrix.true_negatives, fn=matrix.false_negatives)
  if not slices:
    raise ValueError(f'no {eval_config.CONFUSION_METRIC} at threshold {decision_threshold} '
                     f'in the evaluation at {evaluation_uri}')
  return slices


def write_blessing(blessing, model, blessed: bool) -> None:
  """Marks `blessing` exactly as the Evaluator does, so the Pusher honours it."""
  with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE),
                         'w') as f:
    f.write('')
  blessing.set_int_custom_property('blessed', 1 if blessed else 0)
  blessing.set_string_custom_property('current_model', model.uri)
  blessing.set_int_custom_property('current_model_id', model.id)


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict, output_dict, exec_properties):
    thresholds = from_dict(ThresholdsConfig, json.loads(exec_properties['thresholds']),
                           'thresholds')
    evaluation = artifact_utils.get_single_instance(input_dict['evaluation'])
    evaluator_blessing = artifact_utils.get_single_instance(input_dict['evaluator_blessing'])
    model = artifact_utils.get_single_instance(input_dict['model'])
    slices = load_slice_counts(evaluation.uri, thresholds.decision_threshold)
    result = fairness.judge(slices, thresholds)
    evaluator_ok = evaluator_blessing.get_int_custom_property('blessed') == 1
    reasons = [] if evaluator_ok else [
        'Evaluator did not bless the model: accuracy or AUC below the thresholds '
        f'(min_binary_accuracy {thresholds.min_binary_accuracy}, min_auc {thresholds.min_auc})']
    reasons += [f"{c['grouping']}: {c['reason']}" for c in result['checks']
                if c['status'] != fairness.PASS]
    blessed = evaluator_ok and result['verdict'] == fairness.PASS
    report_artifact = artifact_utils.get_single_instance(output_dict['report'])
    report = dict(result, blessed=blessed, evaluator_blessed=evaluator_ok, reasons=reasons,
                  model_uri=model.uri)
    with tf.io.gfile.GFile(os.path.join(report_artifact.uri, REPORT_FILE), 'w') as f:
      json.dump(report, f, indent=2)
    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    write_blessing(blessing, model, blessed)
    blessing.set_string_custom_property('verdict', result['verdict'] if evaluator_ok else 'fail')
    blessing.set_string_custom_property('reasons', '\n'.join(reasons)[:4000])
