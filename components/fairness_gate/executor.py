"""FairnessGate executor: blesses a model only if it is accurate and fair.

It reads the Evaluator's output (per-slice confusion counts and its own
threshold blessing) at the model's own decision threshold (read from the
model: serving_contract.read_decision_threshold), judges every configured grouping with
`evaluation.build_report`, compares the candidate with the model in
production when the Evaluator had one (`baseline.py`), writes report.json +
report.html to the FairnessReport artifact, and writes a ModelBlessing with
the custom properties TFX's Evaluator writes (its `constants`), so the stock
Pusher and LatestBlessedModelStrategy accept it.
"""


from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.util import model_utils
from tfx.utils import path_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from fakefaces.components.shared import blessings, component_keys as keys, serving_contract
from fakefaces.components.shared.reports import read_report
from fakefaces.components.shared.config_base import from_json
from fakefaces.components.fairness_gate import baseline, evaluation
from fakefaces.components.shared.thresholds import ThresholdsConfig


def write_blessing(blessing: types.Artifact, model: types.Artifact, report: Dict[str, Any],
                   production_model: Optional[types.Artifact] = None) -> None:
  """Marks `blessing` exactly as the Evaluator does, plus the verdict and reasons."""
  blessings.write_model_blessing(blessing, model, report['blessed'], report['reasons'],
                                 production_model)
  blessing.set_string_custom_property('verdict', report['verdict'])


def production_comparison(evaluation_uri: str, thresholds: ThresholdsConfig,
                          report: Dict[str, Any], production_model: Optional[types.Artifact]
                          ) -> Optional[Dict[str, Any]]:
  """The candidate vs the production model, both evaluated by TFMA in one evaluation."""
  if production_model is None or not thresholds.baseline.enabled:
    return None
  counts, rows = evaluation.load_evaluation(
      evaluation_uri, thresholds,
      serving_contract.read_decision_threshold(path_utils.serving_model_path(production_model.uri)),
      evaluation.BASELINE)
  return baseline.compare(report['checks'], report['slices'], counts, rows, thresholds,
                          production_model.uri)


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Judges the evaluation, writes the report, and blesses or refuses the model.

    Args:
      input_dict: `evaluation` (ModelEvaluation: TFMA's per-slice metrics of
        the candidate and, when there is one, the production model),
        `evaluator_blessing` (the Evaluator's ModelBlessing), `model` (the
        candidate Model); optional `baseline_model` (the model in production,
        empty on the first run) and `annotations` (the DemographicAnnotator's
        Annotations, for checks resting on predicted demographics).
      output_dict: `report` (FairnessReport: report.json + report.html) and
        `blessing` (ModelBlessing with the Evaluator's custom properties plus
        `verdict`), one artifact each.
      exec_properties: `thresholds` (ThresholdsConfig as JSON).

    Raises:
      ConfigError: a thresholds field is invalid (named by its dotted path).
    """
    thresholds = from_json(ThresholdsConfig, exec_properties[keys.THRESHOLDS_KEY],
                           'thresholds')
    evaluation_artifact = artifact_utils.get_single_instance(input_dict[keys.EVALUATION_KEY])
    evaluator_blessing = artifact_utils.get_single_instance(
        input_dict[keys.EVALUATOR_BLESSING_KEY])
    model = artifact_utils.get_single_instance(input_dict[keys.MODEL_KEY])
    production = input_dict.get(keys.BASELINE_MODEL_KEY) or []
    production_model = production[0] if production else None
    annotations = input_dict.get(keys.ANNOTATIONS_KEY) or []
    point = serving_contract.read_operating_point(path_utils.serving_model_path(model.uri))
    report = evaluation.build_report(
        evaluation_artifact.uri, thresholds,
        evaluator_blessed=model_utils.is_model_blessed(evaluator_blessing),
        model_uri=model.uri,
        decision_threshold=float(point[serving_contract.DECISION_THRESHOLD_FIELD]),
        operating_point=point,
        annotation_report=read_report(annotations[0].uri) if annotations else None)
    baseline.apply(report, production_comparison(evaluation_artifact.uri, thresholds, report,
                                                  production_model))
    report_artifact = artifact_utils.get_single_instance(output_dict[keys.REPORT_KEY])
    evaluation.write_report(report, report_artifact.uri)
    write_blessing(artifact_utils.get_single_instance(output_dict[keys.BLESSING_KEY]), model, report,
                   production_model)
