"""FaceExampleGen: a Beam component that turns face photo datasets into tf.Examples."""


from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.artifacts import IngestReport
from fakefaces.components.face_example_gen import executor
from fakefaces.components.config_base import to_json
from fakefaces.components.face_example_gen.config import IngestConfig


class FaceExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      'ingest_config': component_spec.ExecutionParameter(type=str),
      # Changes when the input files change, so caching never serves stale data.
      'input_fingerprint': component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {
      'examples': component_spec.ChannelParameter(type=standard_artifacts.Examples),
      'ingest_report': component_spec.ChannelParameter(type=IngestReport),
  }


class FaceExampleGen(base_beam_component.BaseBeamComponent):
  """Reads FairFace / 140k / folder / manifest sources; writes train/eval/test Examples."""

  SPEC_CLASS = FaceExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, ingest_config: IngestConfig, input_fingerprint: str = ''):
    super().__init__(spec=FaceExampleGenSpec(
        ingest_config=to_json(ingest_config),
        input_fingerprint=input_fingerprint,
        examples=types.Channel(type=standard_artifacts.Examples),
        ingest_report=types.Channel(type=IngestReport)))
