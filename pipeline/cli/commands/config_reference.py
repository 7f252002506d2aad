"""`fakefaces config-reference`: write docs/configuration.md, every configuration key."""

import sys

from fakefaces.pipeline.cli import config_reference


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'config-reference', help='print the reference of every configuration key (Markdown)',
      description='Print the reference of every key of the pipeline configuration and of the '
      'thresholds file (section, dotted key, type, default, meaning), generated from the config '
      f'dataclasses and their comments. {config_reference.DOC_PATH} is its output '
      f'(`{config_reference.REFRESH_COMMAND}`).')
  p.add_argument('--out', help=f'write it to this file (e.g. {config_reference.DOC_PATH}) '
                 'instead of standard output')
  p.set_defaults(func=_run)


def _run(args) -> int:
  text = config_reference.reference()
  if not args.out:
    sys.stdout.write(text)
    return 0
  with open(args.out, 'w', encoding='utf-8') as f:
    f.write(text)
  print(f'wrote {args.out}')
  return 0
