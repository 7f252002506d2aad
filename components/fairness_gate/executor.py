"""FairnessGate executor: blesses a model only if it is accurate and fair.

It reads the Evaluator's output (per-slice confusion counts and its own
threshold blessing), judges every configured grouping with
`evaluation.build_report`, writes report.json + report.html to the
FairnessReport artifact, and writes a ModelBlessing with the same custom
properties the Evaluator writes (`blessed`, `current_model`,
`current_model_id`), so the stock Pusher and LatestBlessedModelStrategy
accept it.
"""

import json
import os

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.fairness_gate import evaluation
from components.config_base import from_json
from components.fairness_gate.config import ThresholdsConfig

BLESSED_FILE, NOT_BLESSED_FILE = 'BLESSED', 'NOT_BLESSED'


def write_blessing(blessing, model, report) -> None:
  """Marks `blessing` exactly as the Evaluator does, plus the verdict and reasons."""
  blessed = report['blessed']
  with tf.io.gfile.GFile(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE),
                         'w') as f:
    f.write('')
  blessing.set_int_custom_property('blessed', 1 if blessed else 0)
  blessing.set_string_custom_property('current_model', model.uri)
  blessing.set_int_custom_property('current_model_id', model.id)
  blessing.set_string_custom_property('verdict', report['verdict'])
  blessing.set_string_custom_property('reasons', '\n'.join(report['reasons'])[:4000])


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict, output_dict, exec_properties):
    thresholds = from_json(ThresholdsConfig, exec_properties['thresholds'],
                           'thresholds')
    evaluation_artifact = artifact_utils.get_single_instance(input_dict['evaluation'])
    evaluator_blessing = artifact_utils.get_single_instance(input_dict['evaluator_blessing'])
    model = artifact_utils.get_single_instance(input_dict['model'])
    annotations = input_dict.get('annotations') or []
    report = evaluation.build_report(
        evaluation_artifact.uri, thresholds,
        evaluator_blessed=evaluator_blessing.get_int_custom_property('blessed') == 1,
        model_uri=model.uri,
        annotation_report=(evaluation.load_annotation_report(annotations[0].uri)
                           if annotations else None))
    report_artifact = artifact_utils.get_single_instance(output_dict['report'])
    evaluation.write_report(report, report_artifact.uri)
    write_blessing(artifact_utils.get_single_instance(output_dict['blessing']), model, report)
