"""`fakefaces demo-data`: write the generated demo dataset."""

from fakefaces.pipeline import demo_data
from fakefaces.pipeline.cli import arguments


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'demo-data', help='generate the synthetic demo dataset (manifest layout)',
      description='Generate the deterministic synthetic face dataset the demo runs on. '
      'It exercises the pipeline; it does not measure real detection accuracy.')
  p.add_argument('--out', default=demo_data.default_demo_dir(), help='output folder (default: %(default)s)')
  p.add_argument('--num-images', type=arguments.at_least(2), default=1000, help='images, half real half fake (default: %(default)s)')
  p.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
  p.set_defaults(func=_run)


def _run(args) -> int:
  manifest = demo_data.generate(args.out, args.num_images, args.seed)
  print(f'wrote {args.num_images} images; manifest: {manifest}')
  return 0
