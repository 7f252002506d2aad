"""DemographicAnnotator: predicts missing gender/race/age so fairness can be measured.

Sits between FaceExampleGen and the statistics/validation chain; everything
downstream reads its `examples`.
"""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.shared import component_keys as keys
from fakefaces.components.shared.artifacts import Annotations
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.demographic_annotator import executor
from fakefaces.components.demographic_annotator.config import AnnotatorConfig, validate


class DemographicAnnotatorSpec(types.ComponentSpec):
  PARAMETERS = {keys.ANNOTATOR_CONFIG_KEY: component_spec.ExecutionParameter(type=str)}
  INPUTS = {keys.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {
      keys.ANNOTATED_EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
      keys.ANNOTATIONS_KEY: component_spec.ChannelParameter(type=Annotations),
  }


class DemographicAnnotator(base_component.BaseComponent):
  """Fills demographics a face lacks (never a human label) and reports the annotator's accuracy."""

  SPEC_CLASS = DemographicAnnotatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, annotator_config: AnnotatorConfig):
    validate(annotator_config)  # fail when the pipeline is built, not an hour later
    super().__init__(spec=DemographicAnnotatorSpec(
        examples=examples, annotator_config=to_json(annotator_config),
        annotated_examples=types.Channel(type=standard_artifacts.Examples),
        annotations=types.Channel(type=Annotations)))
