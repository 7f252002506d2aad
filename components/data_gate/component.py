"""DataGate: a blocking check between ExampleValidator and the Trainer.

Wire it with `trainer.add_upstream_node(data_gate)`: when the gate raises, the
Trainer and everything after it never run.
"""

from typing import Tuple
from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts, standard_component_specs

from fakefaces.components.shared.artifacts import DataValidationReport
from fakefaces.components.data_gate import coverage, executor
from fakefaces.components.shared import component_keys as keys, groupings
from fakefaces.components.shared.config_base import to_json
from fakefaces.components.data_gate.config import ValidationConfig
from fakefaces.components.shared.thresholds import ThresholdsConfig


class DataGateSpec(types.ComponentSpec):
  PARAMETERS = {
      keys.VALIDATION_CONFIG_KEY: component_spec.ExecutionParameter(type=str),  # ValidationConfig JSON
      keys.THRESHOLDS_KEY: component_spec.ExecutionParameter(type=str),  # ThresholdsConfig JSON
  }
  INPUTS = {
      keys.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
      keys.STATISTICS_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleStatistics),
      keys.SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema),
      keys.ANOMALIES_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleAnomalies),
  }
  OUTPUTS = {keys.REPORT_KEY: component_spec.ChannelParameter(type=DataValidationReport)}


class DataGate(base_component.BaseComponent):
  """Fails the run on anomalies, split skew or (optionally) thin slices; else writes a report.

  `thresholds` are the fairness gate's: the DataGate checks that the evaluated
  split can support a judgement of every grouping they make it judge.
  """

  SPEC_CLASS = DataGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, statistics: types.BaseChannel,
               schema: types.BaseChannel, anomalies: types.BaseChannel,
               validation_config: ValidationConfig, thresholds: ThresholdsConfig):
    executor.check_config(validation_config)  # fail when the pipeline is built, not hours later
    # ... and on a bad grouping
    coverage.judged_groups(groupings.expand(thresholds.groupings, thresholds.judge_each_value_of))
    super().__init__(spec=DataGateSpec(
        examples=examples, statistics=statistics, schema=schema, anomalies=anomalies,
        validation_config=to_json(validation_config),
        thresholds=to_json(thresholds),
        report=types.Channel(type=DataValidationReport)))


def statistics_options():
  """StatsOptions for the StatisticsGen that feeds the gate.

  Semantic-domain stats make TFDV count image formats (needed by the schema's
  image_domain.minimum_supported_image_fraction). Give StatisticsGen the schema
  too: only then is `image` typed BYTES, whose max_num_bytes the
  max_image_byte_size check reads.
  """
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.StatsOptions(enable_semantic_domain_stats=True)


def validation_components(examples: types.BaseChannel, schema: types.BaseChannel,
                          validation_config: ValidationConfig, thresholds: ThresholdsConfig
                          ) -> Tuple[base_component.BaseComponent, ...]:
  """(StatisticsGen, ExampleValidator, DataGate) over `examples`, checked against `schema`.

  The one place that wires the validation chain, for the pipeline and its tests.
  """
  statistics_gen = tfx.components.StatisticsGen(
      examples=examples, schema=schema, stats_options=statistics_options())
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs[standard_component_specs.STATISTICS_KEY], schema=schema)
  data_gate = DataGate(examples=examples,
                       statistics=statistics_gen.outputs[standard_component_specs.STATISTICS_KEY],
                       schema=schema,
                       anomalies=example_validator.outputs[standard_component_specs.ANOMALIES_KEY],
                       validation_config=validation_config, thresholds=thresholds)
  return statistics_gen, example_validator, data_gate
