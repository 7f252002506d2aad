"""FairnessGate: turns an evaluation into a ModelBlessing the Pusher obeys."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.shared import component_keys as keys
from fakefaces.components.shared.artifacts import Annotations, FairnessReport
from fakefaces.components.fairness_gate import executor
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.shared.thresholds import ThresholdsConfig


class FairnessGateSpec(types.ComponentSpec):
  PARAMETERS = {keys.THRESHOLDS_KEY: component_spec.ExecutionParameter(type=str)}
  INPUTS = {
      keys.EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation),
      keys.EVALUATOR_BLESSING_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelBlessing),
      keys.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
      # The model in production (the latest-blessed-model resolver's output); empty on the
      # first run. Its metrics come from the same evaluation (TFMA's 'baseline' model).
      keys.BASELINE_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model,
                                                               optional=True),
      # The DemographicAnnotator's report: which test demographics are predicted, and how
      # accurate the predictions are (checks resting on them are judged with it).
      keys.ANNOTATIONS_KEY: component_spec.ChannelParameter(type=Annotations, optional=True),
  }
  OUTPUTS = {
      keys.BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
      keys.REPORT_KEY: component_spec.ChannelParameter(type=FairnessReport),
  }


class FairnessGate(base_component.BaseComponent):
  """Blesses only when the Evaluator blessed and every fairness bound holds."""

  SPEC_CLASS = FairnessGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, evaluation: types.BaseChannel, evaluator_blessing: types.BaseChannel,
               model: types.BaseChannel, thresholds: ThresholdsConfig,
               baseline_model: Optional[types.BaseChannel] = None,
               annotations: Optional[types.BaseChannel] = None):
    super().__init__(spec=FairnessGateSpec(
        evaluation=evaluation, evaluator_blessing=evaluator_blessing, model=model,
        baseline_model=baseline_model, annotations=annotations,
        thresholds=to_json(thresholds),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        report=types.Channel(type=FairnessReport)))
