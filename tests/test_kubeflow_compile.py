"""Compiles the pipeline for Kubeflow (KFP v2) and checks the PipelineJob JSON.

The compile is real (TFX KubeflowV2DagRunner). While it runs, every file the
process opens for writing and every path TFX/TensorFlow file I/O is asked
about are recorded, to show the compile writes only the spec and never
touches the remote pipeline_root.
"""

import inspect
import json
import os
import sys

import pytest

from fakefaces.pipeline.cli import cli
from fakefaces.pipeline import config as config_lib

IMAGE = 'registry.example.com/fakefaces:test'
ROOT = 'gs://fakefaces-test-bucket/pipeline_root'
SERVING = 'gs://fakefaces-test-bucket/serving_model'
DATAFLOW_ARGS = ['--runner=DataflowRunner', '--project=p', '--region=europe-west1',
                 '--temp_location=gs://fakefaces-test-bucket/tmp']

# Edges the design depends on (the full DAG is compared with the TFX pipeline's own).
REQUIRED_EDGES = [
    ('FaceExampleGen', 'DemographicAnnotator'), ('DemographicAnnotator', 'StatisticsGen'),
    ('DemographicAnnotator', 'FairnessGate'), ('StatisticsGen', 'ExampleValidator'),
    ('ImportSchemaGen', 'ExampleValidator'), ('ExampleValidator', 'DataGate'),
    ('DataGate', 'Trainer'), ('Trainer', 'Evaluator'), ('Evaluator', 'FairnessGate'),
    ('FairnessGate', 'ServingCanary'), ('ServingCanary', 'Pusher'), ('Trainer', 'Pusher'),
    ('Pusher', 'ModelCardGen'),
    ('latest_blessed_model_resolver-model-resolver', 'Evaluator'),
]
# KFP v2 compiles TFX's latest-blessed-model resolver into two query tasks.
RESOLVER_TASKS = {'latest_blessed_model_resolver': (
    'latest_blessed_model_resolver-model-blessing-resolver',
    'latest_blessed_model_resolver-model-resolver')}
TASKS = {'FaceExampleGen', 'DemographicAnnotator', 'StatisticsGen', 'ImportSchemaGen',
         'ExampleValidator', 'DataGate', 'Trainer', 'Evaluator', 'FairnessGate', 'ServingCanary',
         'Pusher', 'ModelCardGen'}
CUSTOM_EXECUTORS = {
    'FaceExampleGen': 'fakefaces.components.face_example_gen.executor.Executor',
    'DemographicAnnotator': 'fakefaces.components.demographic_annotator.executor.Executor',
    'DataGate': 'fakefaces.components.data_gate.executor.Executor',
    'FairnessGate': 'fakefaces.components.fairness_gate.executor.Executor',
    'ServingCanary': 'fakefaces.components.serving_canary.executor.Executor',
    'ModelCardGen': 'fakefaces.components.model_card.executor.Executor',
}


def cluster_config(**kubeflow) -> config_lib.PipelineConfig:
  config = config_lib.load_config(None)
  config.ingest.sources = [
      config_lib.SourceConfig(kind='fairface', path='gs://fakefaces-test-bucket/fairface'),
      config_lib.SourceConfig(kind='kaggle140k', path='gs://fakefaces-test-bucket/real-vs-fake')]
  defaults = dict(image=IMAGE, pipeline_root=ROOT, serving_model_dir=SERVING)
  config.kubeflow = config_lib.KubeflowConfig(**{**defaults, **kubeflow})
  return config


# --- Recording what the compile touches ------------------------------------

_WRITES = []  # filled by the audit hook while _RECORDING[0] is True
_RECORDING = [False]
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit(event, args):
  if not _RECORDING[0]:
    return
  if event == 'open':
    path, mode, flags = args
    writing = (any(c in mode for c in 'wax+') if isinstance(mode, str)
               else bool((flags or 0) & _WRITE_FLAGS))
    if writing:
      _WRITES.append(path)
  elif event in ('os.mkdir', 'os.rename', 'os.remove', 'shutil.copyfile', 'shutil.rmtree'):
    _WRITES.append(args[0])


sys.addaudithook(_audit)  # cannot be removed; it records only inside `recording()`


def _spy(module, remote_calls, monkeypatch):
  """Wraps every public function of `module` to record the paths it is given."""
  for name in dir(module):
    function = getattr(module, name)
    if name.startswith('_') or not inspect.isroutine(function):
      continue

    def wrapper(*args, _function=function, _name=name, **kwargs):
      for arg in list(args) + list(kwargs.values()):
        if isinstance(arg, (str, bytes, os.PathLike)):
          remote_calls.append((_name, os.fsdecode(arg)))
      return _function(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _compile_recorded(config, output, **kwargs):
  """compile_pipeline(...) -> (job, local paths written, paths given to TFX/TF file I/O)."""
  import tensorflow as tf
  from tfx.dsl.io import fileio
  from fakefaces.kubeflow import runner
  file_io_calls = []
  with pytest.MonkeyPatch.context() as monkeypatch:
    _spy(fileio, file_io_calls, monkeypatch)
    _spy(tf.io.gfile, file_io_calls, monkeypatch)
    del _WRITES[:]
    _RECORDING[0] = True
    try:
      job = runner.compile_pipeline(config, str(output), **kwargs)
    finally:
      _RECORDING[0] = False
  writes = [os.fsdecode(p) for p in _WRITES if isinstance(p, (str, bytes, os.PathLike))]
  writes = [p for p in writes if '__pycache__' not in p and p != os.devnull]
  return job, writes, file_io_calls


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  out_dir = tmp_path_factory.mktemp('kfp')
  output = out_dir / 'pipeline.json'
  config = cluster_config(data_beam_pipeline_args=DATAFLOW_ARGS, trainer_cpu=4,
                          trainer_memory_gb=16, trainer_gpu_count=1)
  # A first compile imports what compiling needs; libraries write temp files on import.
  from fakefaces.kubeflow import runner
  runner.compile_pipeline(config, str(tmp_path_factory.mktemp('warm_up') / 'pipeline.json'))
  job, writes, file_io_calls = _compile_recorded(config, output, input_fingerprint='data-v1')
  return {'job': job, 'output': output, 'out_dir': out_dir, 'writes': writes,
          'file_io_calls': file_io_calls}


def _spec(compiled):
  return compiled['job']['pipelineSpec']


def _tasks(compiled):
  return _spec(compiled)['root']['dag']['tasks']


def _container(compiled, task):
  executor = _spec(compiled)['components'][task]['executorLabel']
  return _spec(compiled)['deploymentSpec']['executors'][executor]['container']


def _parameter(compiled, task, name):
  return _tasks(compiled)[task]['inputs']['parameters'][name]['runtimeValue']['constantValue'][
      'stringValue']


# --- The spec -----------------------------------------------------------------


def test_written_file_is_the_returned_job(compiled):
  with open(compiled['output'], encoding='utf-8') as f:
    assert json.load(f) == compiled['job']


def test_every_task_and_dag_edge(compiled):
  from fakefaces.kubeflow import runner
  tasks = _tasks(compiled)
  assert set(tasks) == TASKS | {t for pair in RESOLVER_TASKS.values() for t in pair}
  tfx_pipeline, _ = runner.build_cluster_pipeline(cluster_config())
  for component in tfx_pipeline.components:
    if component.id in RESOLVER_TASKS:  # queries MLMD; depends on no task of this run
      for task in RESOLVER_TASKS[component.id]:
        assert set(tasks[task].get('dependentTasks', [])) <= set(RESOLVER_TASKS[component.id])
      continue
    upstream = {RESOLVER_TASKS.get(node.id, (None, node.id))[1] for node in
                component.upstream_nodes}
    assert set(tasks[component.id].get('dependentTasks', [])) == upstream, component.id
  for producer, consumer in REQUIRED_EDGES:
    assert producer in tasks[consumer]['dependentTasks'], (producer, consumer)


def test_every_task_runs_the_image_through_the_tfx_kfp_v2_entrypoint(compiled):
  for name in TASKS:
    container = _container(compiled, name)
    assert container['image'] == IMAGE, name
    assert container['command'] == [
        'python', '-m', 'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor'], name


@pytest.mark.parametrize('task', sorted(CUSTOM_EXECUTORS))
def test_custom_executor_class_paths(compiled, task):
  args = _container(compiled, task)['args']
  assert args[args.index('--executor_class_path') + 1] == CUSTOM_EXECUTORS[task]


def test_trainer_runs_the_run_fn_from_the_image(compiled):
  args = _container(compiled, 'Trainer')['args']
  assert args[args.index('--executor_class_path') + 1] == (
      'tfx.components.trainer.executor.GenericExecutor')
  assert _parameter(compiled, 'Trainer', 'run_fn') == 'fakefaces.components.trainer.module.run_fn'
  assert 'module_file' not in _tasks(compiled)['Trainer']['inputs']['parameters']


def test_pusher_pushes_only_on_the_serving_canary_blessing_of_the_gate(compiled):
  pusher = _tasks(compiled)['Pusher']['inputs']
  assert pusher['artifacts']['model_blessing']['taskOutputArtifact'] == {
      'producerTask': 'ServingCanary', 'outputArtifactKey': 'blessing'}
  canary = _tasks(compiled)['ServingCanary']['inputs']['artifacts']
  assert canary['model_blessing']['taskOutputArtifact'] == {
      'producerTask': 'FairnessGate', 'outputArtifactKey': 'blessing'}
  assert pusher['artifacts']['model']['taskOutputArtifact']['producerTask'] == 'Trainer'
  destination = json.loads(_parameter(compiled, 'Pusher', 'push_destination'))
  assert destination == {'filesystem': {'base_directory': SERVING}}
  gate_inputs = _tasks(compiled)['FairnessGate']['inputs']['artifacts']
  assert gate_inputs['evaluator_blessing']['taskOutputArtifact'] == {
      'producerTask': 'Evaluator', 'outputArtifactKey': 'blessing'}


def test_output_is_a_valid_pipeline_job_with_the_remote_root(compiled):
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  job = compiled['job']
  json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())  # strict: unknown fields fail
  assert _spec(compiled)['schemaVersion'] == '2.0.0'
  assert _spec(compiled)['sdkVersion'] == 'tfx-1.16.0'
  assert job['runtimeConfig']['gcsOutputDirectory'] == ROOT
  assert _spec(compiled)['defaultPipelineRoot'] == ROOT
  assert job['displayName'] == config_lib.PipelineConfig().name


def test_sources_and_fingerprint_travel_in_the_ingestion_config(compiled):
  ingest = json.loads(_parameter(compiled, 'FaceExampleGen', 'ingest_config'))
  assert [s['path'] for s in ingest['sources']] == [
      'gs://fakefaces-test-bucket/fairface', 'gs://fakefaces-test-bucket/real-vs-fake']
  assert _parameter(compiled, 'FaceExampleGen', 'input_fingerprint') == 'data-v1'


def test_schema_is_read_from_the_image(compiled):
  assert _parameter(compiled, 'ImportSchemaGen', 'schema_file') == config_lib.KubeflowConfig().image_project_root + '/schema/schema.pbtxt'


def test_data_heavy_components_run_on_the_distributed_runner_with_the_image(compiled):
  for name in ('FaceExampleGen', 'StatisticsGen', 'Evaluator'):
    args = _container(compiled, name)['args']
    for arg in DATAFLOW_ARGS + [f'--sdk_container_image={IMAGE}', '--sdk_location=container']:
      assert arg in args, (name, arg)
    # Component args come after the pipeline-level ones, so they win in Beam's parser.
    assert args.index('--runner=DataflowRunner') > args.index('--direct_num_workers=1'), name
  for name in ('DataGate', 'Trainer', 'FairnessGate', 'Pusher'):
    assert '--runner=DataflowRunner' not in _container(compiled, name)['args'], name


def test_trainer_resources(compiled):
  assert _container(compiled, 'Trainer')['resources'] == {
      'cpuLimit': 4.0, 'cpuRequest': 4.0, 'memoryLimit': 16.0, 'memoryRequest': 16.0,
      'accelerator': {'type': 'nvidia.com/gpu', 'count': '1'}}
  assert 'resources' not in _container(compiled, 'Evaluator')


def test_compile_writes_only_the_spec_and_never_touches_remote_storage(compiled):
  # The audit hook sees Python-level writes (the spec among them); the spy sees
  # what TFX asks of fileio/tf.io.gfile (it reads its artifact type schemas).
  assert str(compiled['output']) in compiled['writes']
  assert compiled['file_io_calls']
  outside = [p for p in compiled['writes']
             if not os.path.abspath(p).startswith(str(compiled['out_dir']))]
  assert outside == [], outside
  assert sorted(os.listdir(compiled['out_dir'])) == ['pipeline.json']
  remote = [(call, path) for call, path in compiled['file_io_calls'] if '://' in path]
  assert remote == []


# --- Refusing what pods cannot read --------------------------------------------


@pytest.mark.parametrize('edit, field', [
    (lambda c: setattr(c.kubeflow, 'pipeline_root', '/data/root'), 'pipeline_root'),
    (lambda c: setattr(c.kubeflow, 'serving_model_dir', 'runs/serving'), 'serving_model_dir'),
    (lambda c: setattr(c.ingest.sources[1], 'path', '/home/me/faces'), 'ingest.sources[1].path'),
    (lambda c: setattr(c.kubeflow, 'pipeline_root', 'minio://mlpipeline/root'), 'pipeline_root'),
    (lambda c: setattr(c.validation, 'schema_file', '/tmp/elsewhere/schema.pbtxt'),
     'validation.schema_file'),
    (lambda c: setattr(c.validation, 'schema_file',
                       os.path.join(config_lib.PROJECT_ROOT, 'runs', 'schema.pbtxt')),
     'validation.schema_file'),  # in the checkout but not in the image
    (lambda c: setattr(c.kubeflow, 'data_beam_pipeline_args',
                       ['--runner=DataflowRunner', '--temp_location', '/tmp/beam']),
     '--temp_location'),
    (lambda c: setattr(c.kubeflow, 'image', ''), 'kubeflow.image'),
    (lambda c: setattr(c.ingest, 'sources', []), 'ingest.sources'),
    (lambda c: setattr(c.kubeflow, 'trainer_gpu_count', -1), 'kubeflow.trainer_'),
])
def test_paths_pods_cannot_read_are_refused(edit, field, tmp_path):
  from fakefaces.kubeflow import runner
  config = cluster_config()
  edit(config)
  with pytest.raises(config_lib.ConfigError, match=field.replace('[', r'\[').replace(']', r'\]')):
    runner.compile_pipeline(config, str(tmp_path / 'pipeline.json'))
  assert not (tmp_path / 'pipeline.json').exists()


def test_local_paths_pass_when_allowed():
  from fakefaces.kubeflow import runner
  config = cluster_config(pipeline_root='/mnt/shared/root', serving_model_dir='/mnt/shared/models')
  config.ingest.sources[0].path = '/mnt/shared/fairface'
  cluster = runner.config_for_cluster(config, allow_local_paths=True)
  assert cluster.pipeline_root == '/mnt/shared/root'
  assert cluster.serving_model_dir == '/mnt/shared/models'
  assert config.validation.schema_file.startswith(config_lib.PROJECT_ROOT)  # input left alone


@pytest.mark.parametrize('args, expected_extra', [
    (['--runner=FlinkRunner', '--flink_master=flink:8081'],
     ['--environment_type=DOCKER', f'--environment_config={IMAGE}']),
    (['--runner=SparkRunner', '--environment_type=LOOPBACK'], []),
    (['--runner=DataflowRunner', '--sdk_container_image=other:1', '--sdk_location=default'], []),
    (['--direct_num_workers=4'], []),
])
def test_distributed_workers_get_the_pipeline_image(args, expected_extra):
  from fakefaces.kubeflow import runner
  assert runner.worker_image_args(args, IMAGE) == args + expected_extra


# --- The command ----------------------------------------------------------------


def test_cli_compiles_with_flags_to_a_kfp_pipeline_spec(tmp_path):
  import yaml
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  output = tmp_path / 'pipeline.yaml'
  config_file = tmp_path / 'cluster.yaml'
  config_file.write_text('ingest:\n  sources:\n    - {kind: manifest, path: gs://b/m.csv}\n')
  code = cli.main(['compile-kubeflow', '--config', str(config_file), '--image', IMAGE,
                   '--pipeline-root', ROOT, '--serving-model-dir', SERVING,
                   '--data-beam-arg=--runner=FlinkRunner', '--trainer-gpus', '2',
                   '--output', str(output)])
  assert code == 0
  # What kfp.Client.upload_pipeline / create_run_from_pipeline_package load: a PipelineSpec.
  spec = yaml.safe_load(output.read_text())
  json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
  assert spec['defaultPipelineRoot'] == ROOT
  executors = spec['deploymentSpec']['executors']
  assert f'--environment_config={IMAGE}' in executors['StatisticsGen_executor']['container']['args']
  assert executors['Trainer_executor']['container']['resources']['accelerator']['count'] == '2'


def test_cli_refuses_a_local_pipeline_root(tmp_path, capsys):
  config_file = tmp_path / 'cluster.yaml'
  config_file.write_text('ingest:\n  sources:\n    - {kind: manifest, path: gs://b/m.csv}\n')
  code = cli.main(['compile-kubeflow', '--config', str(config_file), '--image', IMAGE,
                   '--pipeline-root', str(tmp_path / 'root'), '--serving-model-dir', SERVING,
                   '--output', str(tmp_path / 'job.json')])
  assert code == 2
  assert 'pipeline_root' in capsys.readouterr().err
  assert not (tmp_path / 'job.json').exists()


def test_example_cluster_config_compiles(tmp_path):
  from fakefaces.kubeflow import runner
  path = os.path.join(config_lib.PROJECT_ROOT, 'kubeflow', 'configs', 'cluster_example.yaml')
  job = runner.compile_pipeline(config_lib.load_config(path), str(tmp_path / 'pipeline.json'))
  assert job['runtimeConfig']['gcsOutputDirectory'].startswith('gs://')
