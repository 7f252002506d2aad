"""`fakefaces serve`: the pushed model behind TF Serving's gRPC and REST APIs.

Execs the real `tensorflow_model_server` when it is on PATH (production image);
otherwise runs the project's own server (`fakefaces.serving.server.ModelServer`), which
speaks the same protocol. Serving modules are imported only when the command
runs, so `fakefaces --help` stays fast.
"""

import os
import shutil
import sys
import tempfile

from fakefaces.pipeline.cli import arguments

# serving/server.py's defaults, repeated so that `--help` loads no server (tests/test_serving_config.py
# checks they agree).
DEFAULT_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_HOST = '127.0.0.1'


class _Refused(Exception):
  """A combination of flags the command cannot honour; the message says which."""


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'serve', help='serve the pushed model over the TF Serving gRPC and REST APIs',
      description='Serve <model-base-path>/<version>/ (the Pusher layout) over TF Serving\'s '
      'gRPC PredictionService/ModelService and REST /v1/models API, swapping in new versions '
      'as they appear. Uses tensorflow_model_server when it is on PATH.')
  p.add_argument('--model-base-path', required=True, help='the Pusher\'s base directory')
  p.add_argument('--model-name', default='fakefaces', help='model name (default: %(default)s)')
  p.add_argument('--host', default=None,
                 help=f'address to bind (default: {DEFAULT_HOST}); tensorflow_model_server has no '
                 'such flag (it binds all addresses): there, --host is refused (use --builtin)')
  p.add_argument('--port', type=arguments.port, default=DEFAULT_PORT, help='gRPC port, 0 = any free one '
                 '(default: %(default)s)')
  p.add_argument('--rest-port', type=arguments.rest_port, default=DEFAULT_REST_PORT,
                 help='REST port, 0 = any free one, -1 = no REST (default: %(default)s)')
  p.add_argument('--version-policy', choices=('latest', 'specific'), default=None,
                 help='serve the newest version, or the ones in --versions (default: specific '
                 'with --versions, else latest; latest with --versions is refused)')
  p.add_argument('--versions', nargs='*', default=[],
                 help='versions to serve (implies --version-policy specific), e.g. 1 2 or '
                 '1700000000,1700000100')
  p.add_argument('--poll-seconds', type=float, default=2.0,
                 help='how often to look for new versions (default: %(default)s)')
  p.add_argument('--max-request-bytes', type=arguments.at_least(1), default=32 * 1024 * 1024,
                 help='largest gRPC message / REST body accepted (default: %(default)s)')
  p.add_argument('--builtin', action='store_true',
                 help='use the project\'s server even when tensorflow_model_server is on PATH')
  p.set_defaults(func=_run)


def _options(args):
  """ServerOptions from the flags; _Refused where a flag would have no effect."""
  from fakefaces.serving import server, versions  # pylint: disable=import-outside-toplevel
  try:
    chosen = versions.parse_versions(args.versions)
  except ValueError as e:
    raise _Refused(f'--versions: {e}') from None
  kind = args.version_policy or ('specific' if chosen else 'latest')
  if kind == 'latest' and chosen:
    raise _Refused(f'--versions {" ".join(args.versions)} has no effect with --version-policy '
                   'latest (which serves only the newest version): drop one of them')
  try:
    policy = versions.VersionPolicy(kind, chosen)
  except ValueError as e:
    raise _Refused(f'--version-policy {kind}: {e} (give them with --versions)') from None
  return server.ServerOptions(
      model_base_path=args.model_base_path, model_name=args.model_name,
      host=args.host or DEFAULT_HOST,
      grpc_port=args.port, rest_port=None if args.rest_port < 0 else args.rest_port,
      policy=policy, poll_seconds=args.poll_seconds, max_request_bytes=args.max_request_bytes)


def _run(args) -> int:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # no C++ log line per rejected request
  from fakefaces.serving import process, server  # pylint: disable=import-outside-toplevel
  binary = None if args.builtin else shutil.which(server.MODEL_SERVER_BINARY)
  try:
    options = _options(args)
    if binary and args.host is not None:
      raise _Refused(f'--host {args.host}: {server.MODEL_SERVER_BINARY} has no bind-address flag '
                     '(it listens on every address); drop --host, or use --builtin')
  except _Refused as e:
    print(f'fakefaces serve: {e}', file=sys.stderr)
    return 2
  if binary:
    command = server.model_server_command(options, binary, tempfile.mkdtemp(prefix='fakefaces-serving-'))
    print('exec ' + ' '.join(command), flush=True)
    os.execv(binary, command)
  if not os.path.isdir(options.model_base_path):
    print(f'fakefaces serve: --model-base-path {options.model_base_path} is not a directory '
          '(it may stay empty until the Pusher writes a version, but it must exist)',
          file=sys.stderr)
    return 2
  model_server = server.ModelServer(options)
  try:
    model_server.start()
  except OSError as e:
    print(f'fakefaces serve: {e}', file=sys.stderr)
    return 1
  process.serve_until_stopped(model_server)
  return 0
