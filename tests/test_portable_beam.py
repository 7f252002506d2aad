"""The data steps on Beam's portable runner with external SDK workers: the path Flink, Spark and Dataflow take.

A job service and an SDK worker pool run here as separate processes
(`pipeline/portable_beam.py`, on loopback ports picked free), so each DoFn runs
from what a worker unpickles and imports, as on a cluster. FaceExampleGen,
StatisticsGen, ExampleValidator and the DataGate run in a real TFX pipeline on
it, and the ingestion must give the DirectRunner's TFRecords, record for record,
and the same report. Both services are stopped by their process ids when the
module ends, and no process of theirs may be left.
"""

import json
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx

from fakefaces.components import reports
from fakefaces.components.data_gate.component import validation_components
from fakefaces.components.face_example_gen import executor
from fakefaces.components.face_example_gen.component import FaceExampleGen
from fakefaces.pipeline import config as config_lib, portable_beam

pytestmark = pytest.mark.slow

DEMO_THRESHOLDS = config_lib.load_thresholds(
    os.path.join(config_lib.PROJECT_ROOT, 'pipeline', 'configs', 'demo_thresholds.yaml'))


@pytest.fixture(scope='module')
def portable(tmp_path_factory):
  """(Beam args for the portable runner, the services' log folder); stops them afterwards."""
  log_dir = str(tmp_path_factory.mktemp('portable_beam'))
  with portable_beam.local_services(log_dir) as (beam_args, processes):
    yield beam_args, log_dir
  left = [p.pid for p in processes if portable_beam.group_alive(p)]
  assert not left, f'processes of the Beam services left running: groups {left}'


def _jobs_completed(log_dir: str) -> int:
  """Jobs the job service ran to the end (its log says so for each)."""
  with open(os.path.join(log_dir, 'job_service.log'), 'rb') as f:
    return f.read().count(b'Completed job in')


def _same_ingestion(load_bench, first: str, second: str) -> None:
  same_outputs = load_bench('same_outputs')
  outputs = [same_outputs.ingestion_outputs(d) for d in (first, second)]
  assert (same_outputs.ingest_summary(outputs[0]['ingest_report'][0]) ==
          same_outputs.ingest_summary(outputs[1]['ingest_report'][0]))
  examples = same_outputs.compare_examples(
      *(same_outputs.examples_by_split(o['examples'][0]) for o in outputs))
  assert sum(r['records'][0] for r in examples.values()) > 0, examples
  assert all(r['same_order'] for r in examples.values()), examples
  # The whole report: every input's outcome, per source and split x label.
  assert (reports.read_report(outputs[0]['ingest_report'][0], missing_ok=False) ==
          reports.read_report(outputs[1]['ingest_report'][0], missing_ok=False))


def test_ingestion_and_validation_run_on_external_workers(portable, demo_dataset, tmp_path,
                                                          load_bench):
  beam_args, log_dir = portable
  ingest = config_lib.IngestConfig(
      sources=[config_lib.SourceConfig(kind='manifest', path=demo_dataset, name='demo')],
      face=config_lib.FacePreparation(align='none', output_size=64))
  jobs_before = _jobs_completed(log_dir)

  example_gen = FaceExampleGen(ingest_config=ingest, input_fingerprint='test')
  schema_gen = tfx.components.ImportSchemaGen(schema_file=config_lib.DEFAULT_SCHEMA)
  statistics_gen, example_validator, data_gate = validation_components(
      example_gen.outputs['examples'], schema_gen.outputs['schema'],
      config_lib.ValidationConfig(min_examples_per_class=1), DEMO_THRESHOLDS)
  root = tmp_path / 'pipeline_root'
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='portable-beam-test', pipeline_root=str(root),
      components=[example_gen, schema_gen, statistics_gen, example_validator, data_gate],
      enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(tmp_path / 'metadata.sqlite')),
      beam_pipeline_args=beam_args))

  # FaceExampleGen and StatisticsGen were jobs of the service, not a DirectRunner in here.
  assert _jobs_completed(log_dir) - jobs_before == 2
  (gate_report,) = tf.io.gfile.glob(str(root / 'DataGate' / 'report' / '*' / reports.REPORT_JSON))
  with open(gate_report, encoding='utf-8') as f:
    gate = json.load(f)
  assert gate['passed'] is True and gate['anomalies'] == []
  assert sum(gate['examples'].values()) == 160

  (examples_uri,) = tf.io.gfile.glob(str(root / 'FaceExampleGen' / 'examples' / '*'))
  (report_uri,) = tf.io.gfile.glob(str(root / 'FaceExampleGen' / 'ingest_report' / '*'))
  portable_out = tmp_path / 'portable'
  portable_out.mkdir()
  os.symlink(examples_uri, portable_out / executor.EXAMPLES_DIR)
  os.symlink(report_uri, portable_out / executor.REPORT_DIR)
  executor.run_standalone(ingest, str(tmp_path / 'direct'))  # the DirectRunner, in memory
  _same_ingestion(load_bench, str(tmp_path / 'direct'), str(portable_out))


def test_real_faces_are_aligned_by_dlib_on_a_worker(portable, faces_data, tmp_path, load_bench):
  """The dlib models load in the worker's DoFn setup; the faces found are the DirectRunner's."""
  beam_args, log_dir = portable
  ingest = config_lib.IngestConfig(
      sources=[config_lib.SourceConfig('fairface', os.path.join(faces_data, 'fairface'))],
      face=config_lib.FacePreparation(align='dlib', detector='hog+cnn', output_size=128),
      limit_per_source=4, max_failure_rate=1.0)
  jobs_before = _jobs_completed(log_dir)
  report = executor.run_standalone(ingest, str(tmp_path / 'portable'), beam_args)
  assert _jobs_completed(log_dir) - jobs_before == 1
  assert report['counts']['written'] >= 3, report['counts']
  executor.run_standalone(ingest, str(tmp_path / 'direct'))
  _same_ingestion(load_bench, str(tmp_path / 'direct'), str(tmp_path / 'portable'))
