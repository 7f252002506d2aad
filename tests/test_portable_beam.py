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

from fakefaces.components.shared import reports
from fakefaces.components.data_gate.component import validation_components
from fakefaces.components.face_example_gen import executor
from fakefaces.components.face_example_gen.component import FaceExampleGen
from fakefaces.pipeline.cli import cli
from fakefaces.pipeline import config as config_lib, portable_beam

pytestmark = pytest.mark.slow

DEMO_THRESHOLDS = config_lib.load_thresholds(
    os.path.join(config_lib.PROJECT_ROOT, 'pipeline', 'configs', 'demo_thresholds.yaml'))


@pytest.fixture(scope='module')
def portable(tmp_path_factory):
  """(the services' `portable_beam.Services`, their log folder); stops them afterwards."""
  log_dir = str(tmp_path_factory.mktemp('portable_beam'))
  with portable_beam.local_services(log_dir) as services:
    yield services, log_dir
  left = [p.pid for p in services.processes if portable_beam.group_alive(p)]
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
  services, log_dir = portable
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
      beam_pipeline_args=services.beam_args))

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


def test_real_faces_are_aligned_by_dlib_on_the_workers(portable, faces_data, tmp_path, load_bench):
  """`fakefaces ingest --beam-arg=...` on 1 SDK worker (job service) and on 2 (ExternalWorkersRunner).

  dlib loads in each worker's DoFn setup; the faces and records are the DirectRunner's.
  """
  services, log_dir = portable
  config = tmp_path / 'config.yaml'
  config.write_text(
      'ingest:\n'
      f'  sources: [{{kind: fairface, path: "{os.path.join(faces_data, "fairface")}"}}]\n'
      '  face: {align: dlib, detector: hog+cnn, output_size: 128}\n'
      '  limit_per_source: 6\n'
      '  max_failure_rate: 1.0\n')

  def ingest(name, beam_args):
    out = str(tmp_path / name)
    assert cli.main(['ingest', '--config', str(config), '--out', out] +
                    [f'--beam-arg={arg}' for arg in beam_args]) == 0
    return out

  jobs_before = _jobs_completed(log_dir)
  one_worker = ingest('portable', services.beam_args)
  assert _jobs_completed(log_dir) - jobs_before == 1
  report = reports.read_report(os.path.join(one_worker, executor.REPORT_DIR), missing_ok=False)
  assert report['counts']['written'] >= 4, report['counts']
  two_workers = ingest('two_workers',
                       portable_beam.external_workers_args(services.worker_pool_port, 2))
  direct = ingest('direct', [])
  _same_ingestion(load_bench, direct, one_worker)
  _same_ingestion(load_bench, direct, two_workers)
