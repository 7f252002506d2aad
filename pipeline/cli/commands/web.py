"""`fakefaces web`: the photo-check page, a client of a TF Serving endpoint."""

import sys

from fakefaces.pipeline.cli import arguments


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'web', help='web page: upload a photo or give a URL, read real/fake per face',
      description='Serve a page where a person uploads a photo or gives its URL and reads, per '
      'face, P(fake), the verdict and a Grad-CAM heatmap, with a note on what the model was '
      'checked for. It calls a TF Serving endpoint (fakefaces serve, or tensorflow_model_server).')
  p.add_argument('--server', default='127.0.0.1:8500', type=arguments.server,
                 help='host:port of TF Serving gRPC (or REST with --rest) (default: %(default)s)')
  p.add_argument('--rest', action='store_true', help='talk to TF Serving over REST')
  p.add_argument('--model-name', default='fakefaces', help='(default: %(default)s)')
  p.add_argument('--host', default='127.0.0.1', help='address to bind (default: %(default)s)')
  p.add_argument('--port', type=arguments.port, default=8080, help='0 = any free port (default: %(default)s)')
  p.add_argument('--gate-report', default='',
                 help='the FairnessGate report.json of the served model (a glob: the newest match)')
  p.add_argument('--model-dir', default='',
                 help='the served model\'s base path (what serve --model-base-path got): the page '
                 'reads the model card pushed beside the served version and links it')
  p.add_argument('--max-upload-bytes', type=arguments.at_least(1), default=10 * 1024 * 1024,
                 help='largest upload or fetched image (default: %(default)s)')
  p.add_argument('--allow-private-urls', action='store_true',
                 help='also fetch URLs on loopback/private/link-local addresses (refused by default)')
  p.add_argument('--fetch-timeout', type=float, default=10.0, help='seconds (default: %(default)s)')
  p.add_argument('--max-faces', type=arguments.at_least(0), default=20,
                 help='faces scored per photo, largest first; the page says how many were '
                 'found and why any were not scored; 0 = all (default: %(default)s)')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from fakefaces.serving import web  # pylint: disable=import-outside-toplevel
  options = web.WebOptions(server=args.server, rest=args.rest, model_name=args.model_name,
                           host=args.host, port=args.port, gate_report=args.gate_report,
                           model_dir=args.model_dir,
                           max_upload_bytes=args.max_upload_bytes,
                           allow_private_urls=args.allow_private_urls,
                           fetch_timeout=args.fetch_timeout, max_faces=args.max_faces)
  try:
    server = web.make_server(options)
  except OSError as e:
    print(f'fakefaces web: cannot listen on {args.host}:{args.port}: {e}', file=sys.stderr)
    return 1
  host, port = server.server_address[:2]
  print(f'web page on http://{host}:{port}/ using model server {args.server}', flush=True)
  try:
    server.serve_forever(poll_interval=0.5)
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0
