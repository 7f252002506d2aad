"""DataGate executor: stops the run before training when the data is not fit for it.

TFX's ExampleValidator only records anomalies; training on data it flagged
would silently produce a model of unknown quality. This executor raises, which
fails the component, so nothing downstream (Trainer, Evaluator, Pusher) runs.
It stops on:

* every schema anomaly ExampleValidator found, per split;
* unreadable images in splits too small for TFDV's image statistics (TFDV
  builds them only from 100+ values of which 80% are images, and otherwise
  skips `minimum_supported_image_fraction` with a log line);
* demographic skew between the training split and the others (skew.py);
* with `on_short_group: stop`, groups of the evaluated split that lack real
  or fake examples (coverage.py); with `insufficient` they are only reported;
* with `source_shortcut.on_shortcut: stop`, a source shortcut in the training
  split (shortcut.py): a source of one class whose processing a probe tells
  from the other class's, or two sources of one class that a linear probe
  tells apart above `source_shortcut.max_probe_auc` with different shares of
  fakes; with `warn` it is only reported.

The verdict itself is `verdict.judge`, a pure function of those findings.

Anomalies listed in `validation.allowed_anomalies` are reported, not fatal.
A passing run writes report.json (anomalies accepted, slice coverage, skew
numbers). A failing run's outputs are discarded by TFX, so the exception
message carries every finding and the full report is logged.
"""

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf
from tensorflow_data_validation.statistics.generators import image_stats_generator
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fakefaces.components.shared import component_keys as keys, example_files, features, reports
from fakefaces.components.data_gate import coverage, examples_io, shortcut, skew, verdict
from fakefaces.components.shared.config_base import ConfigError, from_json
from fakefaces.components.data_gate.config import ValidationConfig
from fakefaces.components.shared.thresholds import ThresholdsConfig

ANOMALIES_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes per split
IMAGE_FORMAT_HISTOGRAM = 'image_format_histogram'  # TFDV's custom stat name
LOW_IMAGE_FRACTION_KIND = 'LOW_SUPPORTED_IMAGE_FRACTION'
MAX_LISTED_IDS = 5


class DataGateError(RuntimeError):
  """The data is not fit for training; the message says exactly why."""


class DataAnomaliesError(DataGateError):
  """The data broke the schema (or skewed); the message lists every anomaly."""


class SliceCoverageError(DataGateError):
  """Judged groups of the evaluated split lack real or fake examples."""


class SourceShortcutError(DataGateError):
  """The training data lets a model learn the source instead of real vs fake."""


ERRORS = {verdict.ANOMALIES: DataAnomaliesError, verdict.COVERAGE: SliceCoverageError,
          verdict.SHORTCUT: SourceShortcutError}  # verdict.Verdict.stopped_by -> what Do raises


def check_config(config: ValidationConfig) -> None:
  """Rejects values the gate cannot honour, naming the `validation.` field."""
  if config.on_short_group not in verdict.ON_SHORT_GROUP:
    raise ConfigError(f'validation.on_short_group: expected one of {verdict.ON_SHORT_GROUP}, '
                      f'got {config.on_short_group!r}')
  if config.min_examples_per_class < 0:
    raise ConfigError(f'validation.min_examples_per_class: must be >= 0, '
                      f'got {config.min_examples_per_class}')
  if not 0.0 <= config.max_skew_linf <= 1.0:
    raise ConfigError(f'validation.max_skew_linf: must be in [0, 1], got {config.max_skew_linf}')
  if config.skew_noise_z < 0:
    raise ConfigError(f'validation.skew_noise_z: must be >= 0, got {config.skew_noise_z}')
  shortcut.check_config(config.source_shortcut)
  known = set(anomalies_pb2.AnomalyInfo.Type.keys())
  for i, entry in enumerate(config.allowed_anomalies):
    kind = entry.split(':')[-1]
    if kind not in known:
      raise ConfigError(f'validation.allowed_anomalies[{i}]: {entry!r} names no anomaly kind; '
                        f"use a TFDV kind such as 'ENUM_TYPE_UNEXPECTED_STRING_VALUES' or "
                        f"'feature:KIND' (kinds: tensorflow_metadata anomalies.proto)")


def read_anomalies(anomalies_artifact: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  """Split name -> Anomalies proto, from an ExampleAnomalies artifact."""
  result = {}
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
    with tf.io.gfile.GFile(path, 'rb') as f:
      result[split] = anomalies_pb2.Anomalies.FromString(f.read())
  return result


def anomaly_rows(anomalies_by_split: Mapping[str, anomalies_pb2.Anomalies]
                 ) -> List[Dict[str, str]]:
  """One row per (split, feature, anomaly kind); TFDV's description carries example values."""
  rows = []
  for split, anomalies in sorted(anomalies_by_split.items()):
    for feature, info in sorted(anomalies.anomaly_info.items()):
      for reason in info.reason:
        rows.append({'split': split, 'feature': feature,
                     'kind': anomalies_pb2.AnomalyInfo.Type.Name(reason.type),
                     'description': reason.description or info.description})
    if anomalies.HasField('dataset_anomaly_info'):
      for reason in anomalies.dataset_anomaly_info.reason:
        rows.append({'split': split, 'feature': '(dataset)',
                     'kind': anomalies_pb2.AnomalyInfo.Type.Name(reason.type),
                     'description': reason.description})
  return rows


def load_split_statistics(stats_artifact: types.Artifact
                          ) -> Dict[str, statistics_pb2.DatasetFeatureStatistics]:
  return {
      split: stats_artifact_utils.load_statistics(stats_artifact, split).proto().datasets[0]
      for split in artifact_utils.decode_split_names(stats_artifact.split_names)
  }


def _has_image_histogram(stats: statistics_pb2.DatasetFeatureStatistics, feature: str) -> bool:
  for feature_stats in stats.features:
    if list(feature_stats.path.step) == [feature] or feature_stats.name == feature:
      return any(c.name == IMAGE_FORMAT_HISTOGRAM for c in feature_stats.custom_stats)
  return False


def unsupported_images(files: List[str]) -> Tuple[int, List[str]]:
  """(number of image values, image_ids of values TensorFlow cannot decode as an image)."""
  decoder = image_stats_generator.TfImageDecoder()
  total, bad_ids = 0, []
  for record in examples_io.read_features(
      files, {features.IMAGE: tf.string, features.IMAGE_ID: tf.string}):
    total += 1
    image = record[features.IMAGE]
    if image is None or decoder.get_formats([image])[0] is None:
      image_id = record[features.IMAGE_ID]
      bad_ids.append(image_id.decode('utf-8', 'replace') if image_id else '(no image_id)')
  return total, bad_ids


def image_fallback_rows(schema: schema_pb2.Schema,
                        stats_by_split: Mapping[str, statistics_pb2.DatasetFeatureStatistics],
                        examples_artifact: types.Artifact) -> List[Dict[str, str]]:
  """Checks `minimum_supported_image_fraction` where TFDV produced no image statistics."""
  rows = []
  for feature in schema.feature:
    if not (feature.HasField('image_domain') and
            feature.image_domain.minimum_supported_image_fraction):
      continue
    minimum = feature.image_domain.minimum_supported_image_fraction
    for split, stats in sorted(stats_by_split.items()):
      if _has_image_histogram(stats, feature.name):
        continue  # ExampleValidator already judged this split
      try:
        total, bad_ids = unsupported_images(example_files.split_files(examples_artifact, split))
      except tf.errors.OpError as e:  # e.g. `image` of another type: ExampleValidator says so
        logging.warning('DataGate: image check of split %s skipped: %s', split, e)
        continue
      fraction = 1.0 - len(bad_ids) / total if total else 1.0
      if fraction < minimum:
        listed = ', '.join(bad_ids[:MAX_LISTED_IDS]) + (' ...' if len(bad_ids) > MAX_LISTED_IDS
                                                        else '')
        rows.append({'split': split, 'feature': feature.name, 'kind': LOW_IMAGE_FRACTION_KIND,
                     'description': f'{len(bad_ids)} of {total} values are empty or not a '
                                    f'TensorFlow image format (fraction {fraction:.4f} < '
                                    f'{minimum:g}), e.g. image_id {listed} (checked by the '
                                    f'DataGate: TFDV had no image statistics for this split)'})
  return rows


def skew_anomaly_rows(skew_rows: Sequence[Mapping[str, object]]) -> List[Dict[str, str]]:
  return [{'split': row['split'], 'feature': row['feature'], 'kind': skew.SKEW_KIND,
           'description': skew.describe_skew(row)} for row in skew_rows if row['exceeded']]


def slice_coverage(examples_artifact: types.Artifact, thresholds: ThresholdsConfig,
                   config: ValidationConfig) -> Dict[str, object]:
  """Real/fake counts of every judged group in `config.coverage_split`."""
  names = coverage.needed_features(thresholds)
  dtypes = {name: tf.string for name in names}
  dtypes[features.LABEL] = tf.int64
  records = examples_io.read_features(
      example_files.split_files(examples_artifact, config.coverage_split), dtypes)
  counts = coverage.count_examples(records, names)
  groups = coverage.thresholds_groups(thresholds, counts)
  rows = coverage.check_coverage(counts, groups, config.min_examples_per_class)
  short_status = 'short' if config.on_short_group == 'stop' else 'insufficient_evidence'
  for row in rows:
    row['status'] = short_status if coverage.is_short(row) else 'ok'
  return {'split': config.coverage_split, 'min_examples_per_class': config.min_examples_per_class,
          'on_short_group': config.on_short_group, 'groups': rows,
          'short_groups': [row['group'] for row in rows if coverage.is_short(row)]}


def source_shortcut_report(examples_artifact: types.Artifact, config: ValidationConfig) -> Dict[str, object]:
  """The `source_shortcut` section: probe AUC per source pair of each class, findings."""
  check = config.source_shortcut
  if not check.enabled:
    return {'enabled': False, 'findings': [], 'passed': True}
  dtypes = {features.IMAGE: tf.string, features.LABEL: tf.int64, features.SOURCE: tf.string,
            features.IMAGE_ID: tf.string, features.FACE_SIZE: tf.int64}
  records = examples_io.read_features(example_files.split_files(examples_artifact, check.split),
                                      dtypes)
  return dict(shortcut.check_source_shortcut(records, check), enabled=True)


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Checks the data and writes report.json, or raises before the Trainer can run.

    Args:
      input_dict: `examples` (Examples, the annotated splits), `statistics`
        (ExampleStatistics of those splits, computed with the schema),
        `schema` (the curated Schema), `anomalies` (ExampleValidator's
        ExampleAnomalies); one artifact each.
      output_dict: `report` (DataValidationReport): report.json goes to its uri.
      exec_properties: `validation_config` (ValidationConfig as JSON),
        `thresholds` (ThresholdsConfig as JSON, the bounds the FairnessGate
        judges by: which groups the coverage check must find in the evaluated split).

    Raises:
      ConfigError: a config field is invalid (named by its dotted path).
      DataAnomaliesError: schema anomalies or skew not in `allowed_anomalies`,
        or a check could not read the data.
      SliceCoverageError: with `on_short_group: stop`, a judged group lacks
        real or fake examples.
      SourceShortcutError: with `source_shortcut.on_shortcut: stop`, a source
        shortcut in the training split.
    """
    config = from_json(ValidationConfig, exec_properties[keys.VALIDATION_CONFIG_KEY],
                       'validation')
    check_config(config)
    thresholds = from_json(ThresholdsConfig, exec_properties[keys.THRESHOLDS_KEY],
                           'thresholds')
    examples = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES_KEY])
    stats_by_split = load_split_statistics(
        artifact_utils.get_single_instance(input_dict[keys.STATISTICS_KEY]))
    schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
        artifact_utils.get_single_uri(input_dict[keys.SCHEMA_KEY])))

    compared = skew.compared_splits(stats_by_split, config.skew_splits, config.skew_baseline_split)
    skew_rows = skew.split_skew(compared, config.skew_features, config.skew_baseline_split,
                                config.max_skew_linf, config.skew_noise_z)
    anomalies = artifact_utils.get_single_instance(input_dict[keys.ANOMALIES_KEY])
    rows = (anomaly_rows(read_anomalies(anomalies))
            + image_fallback_rows(schema, stats_by_split, examples) + skew_anomaly_rows(skew_rows))
    try:
      coverage_report = slice_coverage(examples, thresholds, config)
    except (tf.errors.OpError, ValueError) as e:  # e.g. a feature of the wrong type
      coverage_report = {'split': config.coverage_split, 'error': str(e)}
    try:
      shortcut_report = source_shortcut_report(examples, config)
    except (tf.errors.OpError, ValueError) as e:  # e.g. no such split
      shortcut_report = {'split': config.source_shortcut.split, 'error': str(e), 'findings': []}
    result = verdict.judge(config, {split: stats.num_examples
                                    for split, stats in stats_by_split.items()},
                           rows, skew_rows, coverage_report, shortcut_report)
    if shortcut_report.get('findings'):
      logging.warning('DataGate: source shortcut:\n%s', shortcut.describe(shortcut_report))
    if result.passed:
      report_artifact = artifact_utils.get_single_instance(output_dict[keys.REPORT_KEY])
      reports.write_report(report_artifact.uri, result.report)
      return
    logging.error('DataGate report:\n%s', json.dumps(result.report, indent=2))
    raise ERRORS[result.stopped_by](result.message)
