"""`fakefaces` command line: one subcommand per module in COMMAND_MODULES.

Each command module defines `register(subparsers)`, which adds its parser and
sets `func` (called with the parsed args, returning the exit code). Modules are
imported only when listed, so `fakefaces --help` stays fast to extend.
"""

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import List, Optional

import fakefaces.pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the
# command's own output; errors still show. Set TF_CPP_MIN_LOG_LEVEL=0 to see all.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Google client libraries warn on import that Python 3.10 is past their support;
# TFX 1.16 requires 3.10, so the warning is known and not actionable here.
warnings.filterwarnings('ignore', message='You are using a non-supported Python version',
                        category=FutureWarning)

from fakefaces.pipeline import quiet  # noqa: E402  (after the environment above is set)

COMMAND_MODULES = (
    'fakefaces.pipeline.cli.commands.demo_data',
    'fakefaces.pipeline.cli.commands.run',
    'fakefaces.pipeline.cli.commands.ingest',
    'fakefaces.pipeline.cli.commands.label',
    'fakefaces.pipeline.cli.commands.report',
    'fakefaces.pipeline.cli.commands.gate',
    'fakefaces.pipeline.cli.commands.serve',
    'fakefaces.pipeline.cli.commands.predict',
    'fakefaces.pipeline.cli.commands.web',
    'fakefaces.pipeline.cli.commands.compile_kubeflow',
    'fakefaces.pipeline.cli.commands.config_reference',
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='fakefaces',
      description='Detect GAN-generated faces; ship only models that are accurate and fair.')
  parser.add_argument('-v', '--verbose', action='store_true',
                      help='also show INFO logs of TFX, Beam and TensorFlow')
  subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
  subparsers.required = True
  for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROJECT_PACKAGES = tuple(os.path.join(_PROJECT_ROOT, name) + os.sep
                          for name in ('pipeline', 'components', 'serving', 'kubeflow'))


class _ProjectInfoFilter(logging.Filter):
  """Passes warnings from anywhere, and INFO only from this project's code.

  Progress and outcome lines (ingestion counts, training epochs) stay visible
  without TFX's and Beam's own INFO chatter; `-v` shows everything.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.pathname.startswith(_PROJECT_PACKAGES)


def _configure_logging(verbose: bool) -> None:
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
  if not verbose:
    handler.addFilter(_ProjectInfoFilter())
    handler.addFilter(quiet.LibraryNoiseLogFilter())
  logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def main(argv: Optional[List[str]] = None) -> int:
  """Runs one command; `argv` None means this process's command line (the `fakefaces` script).

  Only the script (argv None) filters the process's native stderr
  (pipeline/quiet.py): a caller passing `argv` (tests, other Python code) keeps
  its own file descriptors untouched.

  Returns:
    The command's exit code; 2 when the configuration is invalid (the error,
    which names the file and the dotted field, is printed without a traceback:
    it is the user's input, not a bug) or a file cannot be read or written (the
    OSError, which names the path, in one line; with -v its traceback).
  """
  from fakefaces.components.shared.config_base import ConfigError  # pylint: disable=g-import-not-at-top
  args = build_parser().parse_args(argv)
  if not args.verbose:
    quiet.quiet_python_warnings()
    if argv is None:
      quiet.filter_native_stderr()
  _configure_logging(args.verbose)
  try:
    return int(args.func(args) or 0)
  except ConfigError as error:
    print(f'fakefaces {args.command}: invalid configuration: {error}', file=sys.stderr)
    return 2
  except OSError as error:  # a path the person gave cannot be read or written
    if args.verbose:
      raise
    print(f'fakefaces {args.command}: {error} (-v shows where)', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
