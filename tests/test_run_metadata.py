"""The run summary and the benches read MLMD through pipeline/run_metadata.py.

A real SQLite MLMD store, filled the way TFX registers artifacts (a type, then
artifacts with a uri and custom properties), stands in for a finished run: the
summary must pick the newest artifact of each type and read its report.
"""

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from fakefaces.components.shared import reports
from fakefaces.pipeline import run_metadata, summary
from fakefaces.pipeline.config import PipelineConfig


def _store(path: str) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
  return metadata_store.MetadataStore(connection)


def _put(store, type_name: str, uri: str, **properties) -> int:
  type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
  artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=uri)
  for key, value in properties.items():
    if isinstance(value, int):
      artifact.custom_properties[key].int_value = value
    else:
      artifact.custom_properties[key].string_value = value
  return store.put_artifacts([artifact])[0]


def test_the_summary_reads_the_newest_artifact_of_each_type(tmp_path):
  metadata = str(tmp_path / 'metadata.sqlite')
  store = _store(metadata)
  older, newer = str(tmp_path / 'gate' / '1'), str(tmp_path / 'gate' / '2')
  gate = {'model_uri': 'm', 'checks': [], 'slices': [], 'groupings': [], 'evaluator_blessed': False,
          'not_measured': [], 'rests_on_predicted': []}
  reports.write_report(older, dict(gate, verdict='pass', blessed=True, reasons=[]))
  reports.write_report(newer, dict(gate, verdict='fail', blessed=False, reasons=['FPR gap']))
  _put(store, 'fakefaces.FairnessReport', older)
  newest_id = _put(store, 'fakefaces.FairnessReport', newer)
  canary = str(tmp_path / 'canary')
  reports.write_report(canary, {'passed': False, 'problems': ['explain: no heatmap']})
  _put(store, 'fakefaces.ServingCanaryReport', canary)
  _put(store, 'PushedModel', str(tmp_path / 'pushed'), pushed=0)
  del store  # the summary opens its own, read-only

  read_only = run_metadata.open_store(metadata)
  assert run_metadata.latest_artifact(read_only, 'fakefaces.FairnessReport').id == newest_id
  assert run_metadata.latest_artifact(read_only, 'fakefaces.ModelCard') is None  # type never registered

  config = PipelineConfig(pipeline_root=str(tmp_path), metadata_path=metadata,
                          serving_model_dir=str(tmp_path / 'serving'))
  result = summary.latest_run_summary(config)
  assert result['verdict'] == 'fail' and result['blessed'] is False and result['reasons'] == ['FPR gap']
  assert result['fairness_report'] == f'{newer}/{reports.REPORT_JSON}'
  assert result['canary_passed'] is False and result['canary_problems'] == ['explain: no heatmap']
  assert result['pushed'] is False
  assert 'ingest_report' not in result and 'model_card' not in result
  text = summary.format_summary(result)
  assert 'fairness gate: FAIL (NOT BLESSED)' in text and 'REFUSED' in text and 'NOT pushed' in text


def test_a_missing_metadata_file_is_named_not_created(tmp_path):
  path = tmp_path / 'absent.sqlite'
  with pytest.raises(FileNotFoundError, match=str(path)):
    run_metadata.open_store(str(path))
  assert not path.exists()
