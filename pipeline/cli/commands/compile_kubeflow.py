"""`fakefaces compile-kubeflow`: write the KFP v2 pipeline spec for a cluster."""

from fakefaces.pipeline.cli.commands.run import add_config_flags, config_from_args


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'compile-kubeflow', help='compile the pipeline for Kubeflow Pipelines (.yaml) or Vertex AI (.json), KFP v2',
      description='Compile the same pipeline as `run` with KubeflowV2DagRunner. Every component '
      'runs in --image (built from ./Dockerfile). pipeline_root, serving_model_dir and the '
      'ingestion sources must be object-storage URIs (gs://, s3://) that the pods can read; '
      'set them here or in the config\'s `kubeflow:` section. Nothing remote is touched.')
  add_config_flags(p)
  p.add_argument('--image', help='pipeline container image (overrides kubeflow.image)')
  p.add_argument('--output', default='pipeline.json',
                 help='.json: the PipelineJob for Vertex AI Pipelines; .yaml: the PipelineSpec '
                 'that kfp.Client uploads to Kubeflow Pipelines (default: %(default)s)')
  p.add_argument('--data-beam-arg', action='append', metavar='ARG',
                 help='Beam arg for FaceExampleGen/StatisticsGen/Evaluator, repeatable, e.g. '
                 '--data-beam-arg=--runner=DataflowRunner (replaces kubeflow.data_beam_pipeline_args)')
  p.add_argument('--trainer-gpus', type=int, help='GPUs for the Trainer pod (overrides kubeflow.trainer_gpu_count)')
  p.add_argument('--trainer-gpu-type',
                 help='accelerator type: nvidia.com/gpu on KFP, e.g. NVIDIA_TESLA_T4 on Vertex')
  p.add_argument('--input-fingerprint', default='',
                 help='dataset version that keys the ingestion cache (remote inputs are not listed)')
  p.add_argument('--allow-local-paths', action='store_true',
                 help='accept local paths (only if every pod mounts them at the same place)')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from fakefaces.kubeflow import runner  # heavy imports only when compiling
  config = config_from_args(args)
  kubeflow = config.kubeflow
  # Explicit flags win over the config's kubeflow section, which wins over the local paths.
  if args.pipeline_root:
    kubeflow.pipeline_root = args.pipeline_root
  if args.serving_model_dir:
    kubeflow.serving_model_dir = args.serving_model_dir
  if args.image:
    kubeflow.image = args.image
  if args.data_beam_arg is not None:
    kubeflow.data_beam_pipeline_args = args.data_beam_arg
  if args.trainer_gpus is not None:
    kubeflow.trainer_gpu_count = args.trainer_gpus
  if args.trainer_gpu_type:
    kubeflow.trainer_gpu_type = args.trainer_gpu_type
  # A ConfigError (no image, a local path) is printed by cli.main, naming the field: exit 2.
  job = runner.compile_pipeline(config, args.output, allow_local_paths=args.allow_local_paths,
                                input_fingerprint=args.input_fingerprint)
  tasks = job['pipelineSpec']['root']['dag']['tasks']
  print(f'wrote {args.output}: {len(tasks)} tasks, image {kubeflow.image}, '
        f'pipeline_root {job["runtimeConfig"]["gcsOutputDirectory"]}')
  return 0
