"""DataGate executor: stops the run when ExampleValidator found anomalies.

TFX's ExampleValidator only records anomalies; training on data it flagged
would silently produce a model of unknown quality. This executor raises, which
fails the component, so nothing downstream (Trainer, Evaluator, Pusher) runs.
"""

import json
import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from pipeline.config import ValidationConfig, from_dict

ANOMALIES_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes per split
REPORT_FILE = 'report.json'


class DataAnomaliesError(RuntimeError):
  """The data broke the schema; the message lists every anomaly."""


def read_anomalies(anomalies_artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  """Split name -> Anomalies proto, from an ExampleAnomalies artifact."""
  result = {}
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
    with tf.io.gfile.GFile(path, 'rb') as f:
      result[split] = anomalies_pb2.Anomalies.FromString(f.read())
  return result


def describe_anomalies(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies],
                       allowed: List[str]) -> List[Dict[str, str]]:
  """Flattens anomalies into rows, dropping the kinds the config allows."""
  rows = []
  for split, anomalies in sorted(anomalies_by_split.items()):
    for feature, info in sorted(anomalies.anomaly_info.items()):
      for reason in info.reason:
        kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        if kind in allowed or f'{feature}:{kind}' in allowed:
          continue
        rows.append({'split': split, 'feature': feature, 'kind': kind,
                     'description': reason.description or info.description})
    if anomalies.HasField('dataset_anomaly_info'):
      for reason in anomalies.dataset_anomaly_info.reason:
        kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        if kind not in allowed:
          rows.append({'split': split, 'feature': '(dataset)', 'kind': kind,
                       'description': reason.description})
  return rows


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict, output_dict, exec_properties):
    config = from_dict(ValidationConfig, json.loads(exec_properties['validation_config']),
                       'validation')
    anomalies = read_anomalies(artifact_utils.get_single_instance(input_dict['anomalies']))
    rows = describe_anomalies(anomalies, config.allowed_anomalies)
    if rows:
      lines = '\n'.join(f"  [{r['split']}] {r['feature']}: {r['kind']}: {r['description']}"
                        for r in rows)
      raise DataAnomaliesError(
          f'{len(rows)} data anomal{"y" if len(rows) == 1 else "ies"} stop the run before '
          f'training (allow one on purpose with validation.allowed_anomalies):\n{lines}')
    report = artifact_utils.get_single_instance(output_dict['report'])
    with tf.io.gfile.GFile(os.path.join(report.uri, REPORT_FILE), 'w') as f:
      json.dump({'anomalies': rows, 'passed': True}, f, indent=2)
