"""ModelCard: documents every candidate, and puts the card beside every pushed version.

Runs after the Pusher, so it knows whether and where the model was pushed:
`model_card.json` (the Model Card Toolkit schema, written by card.py) and
`model_card.html` go to its ModelCard artifact (MLMD) for every candidate and,
when pushed, into the pushed version directory beside `saved_model.pb`.
"""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from fakefaces.components.shared import component_keys as keys
from fakefaces.components.shared.artifacts import (Annotations, FairnessReport, IngestReport, ModelCard,
                                  ServingCanaryReport)
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.model_card import executor
from fakefaces.components.model_card.config import ModelCardConfig


class ModelCardSpec(types.ComponentSpec):
  PARAMETERS = {keys.CONFIG_KEY: component_spec.ExecutionParameter(type=str)}
  INPUTS = {
      keys.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
      keys.FAIRNESS_REPORT_KEY: component_spec.ChannelParameter(type=FairnessReport),
      keys.CANARY_REPORT_KEY: component_spec.ChannelParameter(type=ServingCanaryReport),
      keys.PUSHED_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.PushedModel),
      keys.INGEST_REPORT_KEY: component_spec.ChannelParameter(type=IngestReport, optional=True),
      # The DemographicAnnotator's output: the card shows its accuracy beside the checks
      # that rest on predicted demographics.
      keys.ANNOTATIONS_KEY: component_spec.ChannelParameter(type=Annotations, optional=True),
  }
  OUTPUTS = {keys.MODEL_CARD_KEY: component_spec.ChannelParameter(type=ModelCard)}


class ModelCardGen(base_component.BaseComponent):
  """Writes model_card.json/html for the candidate, and beside the pushed version."""

  SPEC_CLASS = ModelCardSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, fairness_report: types.BaseChannel,
               canary_report: types.BaseChannel, pushed_model: types.BaseChannel,
               config: ModelCardConfig, ingest_report: Optional[types.BaseChannel] = None,
               annotations: Optional[types.BaseChannel] = None):
    super().__init__(spec=ModelCardSpec(
        model=model, fairness_report=fairness_report, canary_report=canary_report,
        pushed_model=pushed_model, ingest_report=ingest_report,
        annotations=annotations, config=to_json(config),
        model_card=types.Channel(type=ModelCard)))
