"""DataGate: a blocking check between ExampleValidator and the Trainer."""

import dataclasses
import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from components.artifacts import DataValidationReport
from components.data_gate import executor
from pipeline.config import ValidationConfig


class DataGateSpec(types.ComponentSpec):
  PARAMETERS = {'validation_config': component_spec.ExecutionParameter(type=str)}
  INPUTS = {
      'anomalies': component_spec.ChannelParameter(type=standard_artifacts.ExampleAnomalies),
      'statistics': component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics),
  }
  OUTPUTS = {'report': component_spec.ChannelParameter(type=DataValidationReport)}


class DataGate(base_component.BaseComponent):
  """Fails the run on any anomaly not allowed by the config; else writes a report."""

  SPEC_CLASS = DataGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, anomalies: types.BaseChannel, statistics: types.BaseChannel,
               validation_config: ValidationConfig):
    super().__init__(spec=DataGateSpec(
        anomalies=anomalies, statistics=statistics,
        validation_config=json.dumps(dataclasses.asdict(validation_config), sort_keys=True),
        report=types.Channel(type=DataValidationReport)))
