"""ServingCanary: loads the candidate in the serving stack and queries every signature.

TFX's InfraValidator (LOAD_AND_QUERY mode) needs Docker or Kubernetes; this
component does the same check where neither runs: it sits between the
FairnessGate and the Pusher and blesses only a model that the gate blessed
AND that answered every signature as specified (see executor.py).
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.shared import component_keys as keys
from fakefaces.components.shared.artifacts import ServingCanaryReport
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.serving_canary import executor
from fakefaces.components.serving_canary.config import CanaryConfig, validate


class ServingCanarySpec(types.ComponentSpec):
  PARAMETERS = {keys.CONFIG_KEY: component_spec.ExecutionParameter(type=str)}
  INPUTS = {
      keys.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
      keys.MODEL_BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
      keys.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
  }
  OUTPUTS = {
      keys.BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
      keys.REPORT_KEY: component_spec.ChannelParameter(type=ServingCanaryReport),
  }


class ServingCanary(base_component.BaseComponent):
  """Blesses only what the gate blessed and what answered in the serving stack."""

  SPEC_CLASS = ServingCanarySpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
               examples: types.BaseChannel, config: CanaryConfig):
    validate(config)
    super().__init__(spec=ServingCanarySpec(
        model=model, model_blessing=model_blessing, examples=examples, config=to_json(config),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        report=types.Channel(type=ServingCanaryReport)))
