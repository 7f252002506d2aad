"""The pipeline's Evaluator, at the models' own operating points.

TFX's Evaluator takes its EvalConfig as an execution property, fixed when the
pipeline is built, before the Trainer has chosen the decision threshold. This
executor is TFX's own, run after one change: it reads the candidate's
threshold (and the production model's, when there is one) from the models
(`serving_contract.read_decision_threshold`) and rewrites every thresholded
metric of the EvalConfig with `eval_config.at_operating_point`, so TFMA's
bounds, counts and the FairnessGate all judge where the served `label` decides.
"""

from typing import Any, Dict, List

from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils
import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from fakefaces.components.shared import serving_contract
from fakefaces.components.fairness_gate import eval_config as eval_config_lib


def _threshold(models: List[types.Artifact]) -> float:
  model = artifact_utils.get_single_instance(models)
  return serving_contract.read_decision_threshold(path_utils.serving_model_path(model.uri))


class Executor(tfx_evaluator_executor.Executor):
  """TFX's Evaluator executor with the EvalConfig's thresholds set to the models' own."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    key = standard_component_specs.EVAL_CONFIG_KEY
    config = tfma.EvalConfig()
    json_format.Parse(exec_properties[key], config)
    baseline = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
    config = eval_config_lib.at_operating_point(
        config, _threshold(input_dict[standard_component_specs.MODEL_KEY]),
        _threshold(baseline) if baseline else None)
    exec_properties = dict(exec_properties, **{key: json_format.MessageToJson(config)})
    super().Do(input_dict, output_dict, exec_properties)
