"""FaceExampleGen: a Beam component that turns face photo datasets into tf.Examples."""


from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.shared import component_keys as keys
from fakefaces.components.shared.artifacts import IngestReport
from fakefaces.components.face_example_gen import executor
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.face_example_gen.config import IngestConfig


class FaceExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      keys.INGEST_CONFIG_KEY: component_spec.ExecutionParameter(type=str),
      # Changes when the input files change, so caching never serves stale data.
      keys.INPUT_FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {
      keys.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
      keys.INGEST_REPORT_KEY: component_spec.ChannelParameter(type=IngestReport),
  }


class FaceExampleGen(base_beam_component.BaseBeamComponent):
  """Reads FairFace / 140k / folder / manifest sources; writes train/eval/test Examples."""

  SPEC_CLASS = FaceExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, ingest_config: IngestConfig, input_fingerprint: str = ''):
    super().__init__(spec=FaceExampleGenSpec(**{
        keys.INGEST_CONFIG_KEY: to_json(ingest_config),
        keys.INPUT_FINGERPRINT_KEY: input_fingerprint,
        keys.EXAMPLES_KEY: types.Channel(type=standard_artifacts.Examples),
        keys.INGEST_REPORT_KEY: types.Channel(type=IngestReport)}))
