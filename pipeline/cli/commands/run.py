"""`fakefaces run`: run the pipeline locally (LocalDagRunner, MLMD on SQLite)."""

import argparse

from fakefaces.pipeline import config as config_lib


def add_config_flags(parser: argparse.ArgumentParser, overrides: bool = True) -> None:
  """`--config` and, with `overrides`, the flags that override the fields of a whole run.

  `ingest` and `label` read only the config's `ingest:` section: offered there,
  --pipeline-root, --thresholds or --epochs would be accepted and do nothing.
  """
  parser.add_argument('--config', help='pipeline YAML config, e.g. pipeline/configs/demo.yaml '
                      '(without it, every field\'s default: no ingest sources)')
  if not overrides:
    return
  parser.add_argument('--pipeline-root', help='override pipeline_root')
  parser.add_argument('--serving-model-dir', help='override serving_model_dir (TF Serving base path)')
  parser.add_argument('--thresholds', help='override thresholds_file (accuracy and fairness bounds)')
  parser.add_argument('--epochs', type=int, help='override train.epochs')


def add_beam_flag(parser: argparse.ArgumentParser) -> None:
  """`--beam-arg`, for the commands that run Beam steps here (run, ingest)."""
  parser.add_argument(
      '--beam-arg', action='append', metavar='ARG',
      help='a Beam pipeline arg for the data steps (ingestion, statistics, evaluation), '
      'repeatable, written --beam-arg=--runner=PortableRunner; replaces beam_pipeline_args. '
      'A runner other than the DirectRunner runs them as they are, with no face-worker pool '
      '(docs/distributed_beam.md)')


def config_from_args(args) -> config_lib.PipelineConfig:
  config = config_lib.load_config(args.config)
  if getattr(args, 'beam_arg', None):
    config.beam_pipeline_args = list(args.beam_arg)
  overrides = {'pipeline_root': 'pipeline_root', 'serving_model_dir': 'serving_model_dir',
               'thresholds_file': 'thresholds'}
  for field, flag in overrides.items():
    if getattr(args, flag, None) is not None:
      setattr(config, field, getattr(args, flag))
  if getattr(args, 'epochs', None) is not None:
    config.train.epochs = args.epochs
  config_lib.resolve_paths(config, '.')
  return config


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'run', help='run the whole pipeline locally',
      description='Ingest, validate, train, evaluate, gate on fairness and push, with '
      'LocalDagRunner and MLMD on SQLite. Caching is on unless --no-cache.')
  add_config_flags(p)
  add_beam_flag(p)
  p.add_argument('--metadata-path', help='override metadata_path (SQLite MLMD file)')
  p.add_argument('--no-cache', action='store_true', help='re-run every component')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from fakefaces.pipeline import local_runner, summary  # heavy imports only when running
  config = config_from_args(args)
  if args.metadata_path:
    config.metadata_path = args.metadata_path
    config_lib.resolve_paths(config, '.')
  if args.no_cache:
    config.enable_cache = False
  local_runner.run_local(config)
  print(summary.format_summary(summary.latest_run_summary(config)))
  return 0
