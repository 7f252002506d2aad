"""Compiles the fakefaces pipeline for Kubeflow Pipelines (KFP v2 / Vertex AI Pipelines).

The same `fakefaces.pipeline.pipeline.create_pipeline` the local runner uses is compiled
with TFX's `KubeflowV2DagRunner` into a PipelineJob JSON. Every component runs
in one container image (./Dockerfile) that has this project installed, so the
custom executors (`components.*.executor.Executor`) and the Trainer's
`run_fn` are imported from the image; nothing is packaged or uploaded at
compile time, and compiling never touches the remote pipeline_root.

What runs on a cluster must only name paths its pods can read: the
pipeline_root, the Pusher destination and the ingestion sources go to object
storage (gs://, s3://); `config_for_cluster` refuses local paths unless asked
not to. Files that ship inside the image (the curated schema) are rewritten to
their path in the image.
"""

import copy
import json
import os
from typing import Dict, List, Optional, Sequence

import yaml

from fakefaces.pipeline import config as config_lib

# Components whose Beam work grows with the dataset; they get
# `KubeflowConfig.data_beam_pipeline_args` (a distributed runner) on top of the
# pipeline-level args.
DATA_HEAVY_COMPONENTS = ('FaceExampleGen', 'StatisticsGen', 'Evaluator')
TRAINER_COMPONENT = 'Trainer'

# Folders of this repository the wheel installs (as fakefaces/<folder>) at kubeflow.image_project_root.
IMAGE_DIRS = ('components', 'pipeline', 'serving', 'kubeflow', 'schema')

# Schemes TensorFlow's gfile (which every TFX executor writes through) and Beam
# workers can read. s3:// needs tensorflow-io in the image; see kubeflow/README.md.
REMOTE_SCHEMES = ('gs://', 's3://', 'hdfs://')

# Beam options whose value is a location every worker must reach.
_BEAM_LOCATION_FLAGS = ('--temp_location', '--staging_location', '--gcp_temp_location')
# Portable runners that start SDK workers from a container image.
_PORTABLE_RUNNERS = ('FlinkRunner', 'SparkRunner', 'PortableRunner')


def is_remote(path: str) -> bool:
  return path.startswith(REMOTE_SCHEMES)


def _check_remote(field: str, path: str, allow_local_paths: bool) -> None:
  if allow_local_paths or is_remote(path):
    return
  if '://' in path:
    scheme = path.split('://', 1)[0]
    raise config_lib.ConfigError(
        f'{field}: {path!r} uses {scheme}://, which TensorFlow gfile in the pipeline pods '
        f'cannot open; use one of {", ".join(REMOTE_SCHEMES)} (MinIO: s3:// with S3_ENDPOINT)')
  raise config_lib.ConfigError(
      f'{field}: {path!r} is a local path, which pods and Beam workers on the cluster cannot '
      f'see; use object storage ({", ".join(REMOTE_SCHEMES)}) or pass --allow-local-paths '
      '(e.g. a volume mounted at the same path in every pod)')


def _image_path(path: str, kubeflow: config_lib.KubeflowConfig) -> Optional[str]:
  """The path of a file of this repository inside the image, or None if it is not there."""
  if not path or '://' in path:
    return None
  relative = os.path.relpath(os.path.abspath(path), config_lib.PROJECT_ROOT)
  if relative.split(os.sep)[0] not in IMAGE_DIRS:
    return None
  return f'{kubeflow.image_project_root.rstrip("/")}/{relative}'


def config_for_cluster(config: config_lib.PipelineConfig,
                       allow_local_paths: bool = False) -> config_lib.PipelineConfig:
  """A copy of `config` whose paths are valid inside the cluster's pods.

  `kubeflow.pipeline_root` / `kubeflow.serving_model_dir`, when set, replace
  the top-level (local) ones. Raises ConfigError naming the first field that
  points somewhere the pods cannot read.
  """
  config = copy.deepcopy(config)
  kubeflow = config.kubeflow
  if not kubeflow.image:
    raise config_lib.ConfigError(
        'kubeflow.image: no container image; build ./Dockerfile, push it, and pass --image')
  config.pipeline_root = kubeflow.pipeline_root or config.pipeline_root
  config.serving_model_dir = kubeflow.serving_model_dir or config.serving_model_dir
  _check_remote('pipeline_root', config.pipeline_root, allow_local_paths)
  _check_remote('serving_model_dir', config.serving_model_dir, allow_local_paths)
  if not config.ingest.sources:
    raise config_lib.ConfigError('ingest.sources: no input dataset to ingest')
  for i, source in enumerate(config.ingest.sources):
    _check_remote(f'ingest.sources[{i}].path', source.path, allow_local_paths)
  # The schema is read by ImportSchemaGen inside a pod: the repository's own
  # copy is in the image; any other file must be remote.
  image_schema = _image_path(config.validation.schema_file, kubeflow)
  if image_schema:
    config.validation.schema_file = image_schema
  else:
    _check_remote('validation.schema_file', config.validation.schema_file, allow_local_paths)
  if min(kubeflow.trainer_gpu_count, kubeflow.trainer_cpu, kubeflow.trainer_memory_gb) < 0:
    raise config_lib.ConfigError('kubeflow.trainer_*: resources must not be negative')
  # Thresholds are read here, at compile time, and travel in the pipeline spec.
  data_args = worker_image_args(kubeflow.data_beam_pipeline_args, kubeflow.image)
  for flag, value in _flag_values(data_args, _BEAM_LOCATION_FLAGS):
    _check_remote(f'kubeflow.data_beam_pipeline_args {flag}', value, allow_local_paths)
  kubeflow.data_beam_pipeline_args = data_args
  return config


def _flag_values(args: Sequence[str], flags: Sequence[str]) -> List[tuple]:
  """(flag, value) for every `--flag=value` or `--flag value` of `flags` in `args`."""
  found = []
  for i, arg in enumerate(args):
    name, sep, value = arg.partition('=')
    if name in flags:
      if not sep:
        value = args[i + 1] if i + 1 < len(args) else ''
      found.append((name, value))
  return found


def _runner(args: Sequence[str]) -> str:
  runners = _flag_values(args, ('--runner',))
  return runners[-1][1] if runners else ''


def worker_image_args(args: Sequence[str], image: str) -> List[str]:
  """`args`, plus the options that make a distributed runner's workers use `image`.

  The default worker images of Dataflow, Flink and Spark have Beam but not this
  project, so the executors' DoFns (fakefaces.components.face_example_gen...) would fail
  to unpickle there. Options the user already set are left alone.
  """
  args = list(args)
  runner = _runner(args)
  given = {arg.partition('=')[0] for arg in args}
  if runner == 'DataflowRunner':
    if not given & {'--sdk_container_image', '--worker_harness_container_image'}:
      args.append(f'--sdk_container_image={image}')
    if '--sdk_location' not in given:
      args.append('--sdk_location=container')  # the image already has Beam
  elif runner in _PORTABLE_RUNNERS and '--environment_type' not in given:
    args += ['--environment_type=DOCKER', f'--environment_config={image}']
  return args


def trainer_resources(kubeflow: config_lib.KubeflowConfig):
  """The KFP ResourceSpec for the Trainer pod, or None when nothing is asked.

  TFX 1.16's KFP v2 step builder copies a component's `platform_config`
  (this proto) into the container spec; KFP turns it into pod requests and
  limits (the accelerator type is the Kubernetes resource name there, e.g.
  nvidia.com/gpu), Vertex AI into a machine with that accelerator.
  """
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  if not (kubeflow.trainer_gpu_count or kubeflow.trainer_cpu or kubeflow.trainer_memory_gb):
    return None
  spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
  if kubeflow.trainer_cpu:
    spec.cpu_limit = spec.cpu_request = kubeflow.trainer_cpu
  if kubeflow.trainer_memory_gb:
    spec.memory_limit = spec.memory_request = kubeflow.trainer_memory_gb
  if kubeflow.trainer_gpu_count:
    if not kubeflow.trainer_gpu_type:
      raise config_lib.ConfigError('kubeflow.trainer_gpu_type: required with trainer_gpu_count')
    spec.accelerator.type = kubeflow.trainer_gpu_type
    spec.accelerator.count = kubeflow.trainer_gpu_count
  return spec


def apply_cluster_settings(tfx_pipeline, kubeflow: config_lib.KubeflowConfig) -> None:
  """Per-component Beam args and Trainer resources, set on the built pipeline.

  Component-level Beam args come after the pipeline-level ones (TFX prepends
  those when the Pipeline is built), so a `--runner` here wins.
  """
  by_id: Dict[str, object] = {c.id: c for c in tfx_pipeline.components}
  missing = [name for name in DATA_HEAVY_COMPONENTS + (TRAINER_COMPONENT,) if name not in by_id]
  if missing:
    raise ValueError(f'pipeline has no component(s) {missing}; update kubeflow/runner.py')
  if kubeflow.data_beam_pipeline_args:
    for name in DATA_HEAVY_COMPONENTS:
      by_id[name].with_beam_pipeline_args(kubeflow.data_beam_pipeline_args)
  resources = trainer_resources(kubeflow)
  if resources is not None:
    by_id[TRAINER_COMPONENT].with_platform_config(resources)


def build_cluster_pipeline(config: config_lib.PipelineConfig, allow_local_paths: bool = False,
                           input_fingerprint: str = ''):
  """(the TFX pipeline for the cluster, the config it was built from)."""
  from fakefaces.pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  cluster_config = config_for_cluster(config, allow_local_paths)
  tfx_pipeline = create_pipeline(cluster_config, input_fingerprint=input_fingerprint,
                                 metadata_connection_config=None)  # KFP owns metadata
  apply_cluster_settings(tfx_pipeline, cluster_config.kubeflow)
  return tfx_pipeline, cluster_config


def compile_pipeline(config: config_lib.PipelineConfig, output_path: str,
                     allow_local_paths: bool = False, input_fingerprint: str = '') -> Dict:
  """Compiles `config` for a cluster, writes it to `output_path`, returns the PipelineJob dict.

  A `.json` output is the PipelineJob (what Vertex AI Pipelines runs); a
  `.yaml`/`.yml` output is its PipelineSpec (what `kfp.Client` uploads to a
  Kubeflow Pipelines cluster). Both carry the remote pipeline_root as
  `defaultPipelineRoot`, so a run without an explicit root does not fall back
  to KFP's minio:// default, which TensorFlow cannot open.

  `input_fingerprint` (e.g. a dataset version) keys the cache of the
  ingestion: the compiler does not list remote inputs, so with caching on and
  the same fingerprint a rerun reuses the previous ingestion.
  """
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top

  tfx_pipeline, cluster_config = build_cluster_pipeline(config, allow_local_paths,
                                                        input_fingerprint)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          display_name=cluster_config.name, default_image=cluster_config.kubeflow.image))
  job = runner.run(tfx_pipeline, write_out=False)
  job['pipelineSpec']['defaultPipelineRoot'] = cluster_config.pipeline_root
  output_dir = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(output_dir, exist_ok=True)
  with open(output_path, 'w', encoding='utf-8') as f:
    if output_path.endswith(('.yaml', '.yml')):
      yaml.safe_dump(job['pipelineSpec'], f, sort_keys=True)
    else:
      json.dump(job, f, sort_keys=True, indent=1)
  return job
