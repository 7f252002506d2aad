"""`fakefaces predict`: ask a TF Serving endpoint (real or ours) whether faces are fake."""

import sys


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'predict', help='classify images as real/fake through a serving endpoint',
      description='Send encoded images to a TF Serving endpoint (gRPC, or REST with --rest) and '
      'print real/fake and P(fake) per image.')
  p.add_argument('images', nargs='+', metavar='IMAGE', help='JPEG/PNG files')
  p.add_argument('--server', default='127.0.0.1:8500',
                 help='host:port of the gRPC (or, with --rest, REST) endpoint (default: %(default)s)')
  p.add_argument('--rest', action='store_true', help='use the REST API instead of gRPC')
  p.add_argument('--model-name', default='fakefaces', help='(default: %(default)s)')
  p.add_argument('--signature', default='serving_default',
                 help='serving_default (image bytes) or from_examples (default: %(default)s)')
  p.add_argument('--model-version', type=int, default=None, help='a specific version (default: newest)')
  p.add_argument('--timeout', type=float, default=30.0, help='seconds (default: %(default)s)')
  p.set_defaults(func=_run)


def _run(args) -> int:
  images = []
  for path in args.images:
    try:
      with open(path, 'rb') as f:
        images.append(f.read())
    except OSError as e:
      print(f'fakefaces predict: cannot read image {path}: {e.strerror}', file=sys.stderr)
      return 2
  from serving import client as client_lib  # pylint: disable=import-outside-toplevel
  from serving import status as status_lib  # pylint: disable=import-outside-toplevel
  import grpc  # pylint: disable=import-outside-toplevel
  with client_lib.ServingClient(args.server, model_name=args.model_name,
                                signature_name=args.signature, rest=args.rest,
                                version=args.model_version, timeout=args.timeout) as client:
    try:
      results = list(zip(args.images, client.predict(images)))
    except status_lib.ServingError as e:
      if e.code != grpc.StatusCode.INVALID_ARGUMENT or len(images) == 1:
        print(f'fakefaces predict: {args.server} answered {e.code.name}: {e.message}',
              file=sys.stderr)
        return 1
      # One bad file fails the whole batch: ask per image to say which file it is.
      results = [(path, _predict_one(client, image)) for path, image in zip(args.images, images)]
  failed = 0
  for path, prediction in results:
    if isinstance(prediction, status_lib.ServingError):
      failed += 1
      print(f'fakefaces predict: {path}: {prediction.code.name}: {prediction.message}',
            file=sys.stderr)
    else:
      print(f'{path}\t{prediction.label}\tp(fake)={prediction.fake_probability:.4f}')
  return 1 if failed else 0


def _predict_one(client, image):
  from serving import status as status_lib  # pylint: disable=import-outside-toplevel
  try:
    return client.predict([image])[0]
  except status_lib.ServingError as e:
    return e
