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

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) buries the
# command's own output; errors still show. Set TF_CPP_MIN_LOG_LEVEL=0 to see all.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Google client libraries warn on import that Python 3.10 is past their support;
# TFX 1.16 requires 3.10, so the warning is known and not actionable here.
warnings.filterwarnings('ignore', message='You are using a non-supported Python version',
                        category=FutureWarning)

COMMAND_MODULES = (
    'pipeline.commands.demo_data',
    'pipeline.commands.run',
    'pipeline.commands.ingest',
    'pipeline.commands.report',
    'pipeline.commands.gate',
    'pipeline.commands.serve',
    'pipeline.commands.predict',
    'pipeline.commands.compile_kubeflow',
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='fakefaces',
      description='Detect GAN-generated faces; ship only models that are accurate and fair.')
  parser.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
  subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
  subparsers.required = True
  for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                      format='%(asctime)s %(levelname)s %(name)s: %(message)s')
  return int(args.func(args) or 0)


if __name__ == '__main__':
  sys.exit(main())
