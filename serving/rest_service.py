"""REST front end: TF Serving's `/v1/models` API (g3doc/api_rest.md).

* `GET  /v1/models/<name>[/versions/<v>]`            -> model status
* `GET  /v1/models/<name>[/versions/<v>]/metadata`   -> signature defs
* `POST /v1/models/<name>[/versions/<v>]:predict`    -> predictions

Predict takes the row format `{"instances": [...]}` (answered as
`{"predictions": [...]}`) or the columnar `{"inputs": ...}` (answered as
`{"outputs": ...}`), with `signature_name` optional and binary values as
`{"b64": "..."}`. Errors are `{"error": "..."}` with TF Serving's HTTP status.
Bodies over the size limit get 413 before they are read.
"""

import base64
import http.server
import json
import logging
import re
import socket
import socketserver
import urllib.parse
import zlib
from typing import Any, Dict, Mapping, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from fakefaces.serving import grpc_service
from fakefaces.serving import status as status_lib
from fakefaces.serving.registry import ModelRegistry
from fakefaces.serving.servable import DEFAULT_SIGNATURE, Servable, dtype_name

# TF Serving's own path patterns (http_rest_api_util.cc), case-insensitive like theirs.
PATH = re.compile(r'^/v1/models(?:/(?P<name>[^/:]+))?'
                  r'(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?'
                  r'(?P<suffix>/metadata|:predict|:classify|:regress)?$', re.IGNORECASE)
INT64_MAX = 2**63 - 1
# What absl::Base64Unescape (TF Serving's "b64" decoder) skips: absl::ascii_isspace.
_B64_WHITESPACE = re.compile(rb'[ \t\n\v\f\r]+')
_B64_BODY = re.compile(rb'^[A-Za-z0-9+/]*$')
_B64_PADDING = re.compile(rb'[=.]*$')
SOCKET_TIMEOUT_SECONDS = 60  # a stalled client cannot hold a handler thread forever

log = logging.getLogger(__name__)


def _invalid(message: str) -> status_lib.ServingError:
  return status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# ---- JSON <-> numpy -----------------------------------------------------------

def decode_b64(text: str) -> bytes:
  """Standard base64 decoded as TF Serving decodes a "b64" value (absl::Base64Unescape).

  Whitespace anywhere is skipped (so `base64.encodebytes` and the `base64`
  command's 76-column lines work), padding may be left out, and when it is
  there it must be complete ('=' or '.', absl treats them alike). URL-safe
  '-' and '_' are refused, as there.

  Raises:
    ValueError: the text is not base64 by those rules (says why).
  """
  data = _B64_WHITESPACE.sub(b'', text.encode('utf-8', 'replace'))
  padding = _B64_PADDING.search(data).group()
  body = data[:len(data) - len(padding)]
  if not _B64_BODY.match(body):
    bad = sorted({chr(c) for c in body if not _B64_BODY.match(bytes([c]))})
    hint = ' (URL-safe base64 is refused, as TF Serving does)' if {'-', '_'} & set(bad) else ''
    raise ValueError(f'character(s) {bad} are not in the standard base64 alphabet{hint}')
  missing = (-len(body)) % 4
  if missing == 3:
    raise ValueError(f'{len(body)} base64 characters cannot end a value (one too many)')
  if padding and len(padding) != missing:
    raise ValueError(f'{len(padding)} padding character(s) where {missing} belong')
  return base64.b64decode(body + b'=' * missing, validate=True)


def _decode_leaves(value: Any, key: str) -> Any:
  """Replaces every {"b64": ...} with its bytes and every string with UTF-8 bytes."""
  if isinstance(value, dict):
    if set(value) != {'b64'} or not isinstance(value['b64'], str):
      raise _invalid(f'input \'{key}\': a JSON object value must be {{"b64": "<base64>"}}, '
                     f'got keys {sorted(value)}')
    try:
      return decode_b64(value['b64'])
    except ValueError as e:
      raise _invalid(f'input \'{key}\': "b64" value is not valid base64: {e}') from None
  if isinstance(value, list):
    return [_decode_leaves(v, key) for v in value]
  if isinstance(value, str):
    return value.encode('utf-8')
  return value


def _to_array(key: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
  value = _decode_leaves(value, key)
  try:
    if spec.dtype == tf.string:
      array = np.array(value, dtype=object)
      if any(not isinstance(v, bytes) for v in array.reshape(-1)):
        raise _invalid(f'input \'{key}\' must be DT_STRING: send strings or {{"b64": ...}}, '
                       'not numbers')
      return array
    if any(isinstance(v, bytes) for v in np.array(value, dtype=object).reshape(-1)):
      raise _invalid(f'input \'{key}\' must be {dtype_name(spec.dtype)}, got strings')
    return np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
  except (ValueError, TypeError) as e:
    raise _invalid(f'input \'{key}\' is not a regular {dtype_name(spec.dtype)} tensor: {e}') from None


def _is_named(value: Any, specs: Mapping) -> bool:
  """True when `value` is {input_name: ...} rather than a bare b64 value."""
  return isinstance(value, dict) and 'b64' not in value and bool(value)


def parse_predict_body(body: Mapping, specs: Mapping[str, tf.TensorSpec]
                       ) -> Tuple[str, Dict[str, np.ndarray]]:
  """JSON body -> ('row'|'columnar', {input name: array}) for the signature's `specs`."""
  if ('instances' in body) == ('inputs' in body):
    raise _invalid('the body must have exactly one of "instances" (row format) or '
                   '"inputs" (columnar format)')
  single = next(iter(specs)) if len(specs) == 1 else None
  if 'instances' in body:
    instances = body['instances']
    if not isinstance(instances, list) or not instances:
      raise _invalid('"instances" must be a non-empty list')
    if all(_is_named(i, specs) for i in instances):
      keys = set(instances[0])
      if any(set(i) != keys for i in instances):
        raise _invalid('every instance must name the same inputs')
      columns = {k: [i[k] for i in instances] for k in keys}
    elif single is not None and not any(_is_named(i, specs) for i in instances):
      columns = {single: instances}
    else:
      raise _invalid(f'instances must be objects naming the inputs {sorted(specs)}')
    fmt = 'row'
  else:
    inputs = body['inputs']
    if _is_named(inputs, specs):
      # As TF Serving: every input must be named; other keys are ignored.
      missing = sorted(set(specs) - set(inputs))
      if missing:
        raise _invalid(f'Missing named input(s) {missing} in \'inputs\' object; the signature '
                       f'takes {sorted(specs)}')
      columns = {k: inputs[k] for k in specs}
    elif single is not None:
      columns = {single: inputs}
    else:
      raise _invalid(f'"inputs" must be an object naming the inputs {sorted(specs)}')
    fmt = 'columnar'
  unknown = sorted(set(columns) - set(specs))
  if unknown:
    raise _invalid(f'unknown input(s) {unknown}; the signature takes {sorted(specs)}')
  return fmt, {k: _to_array(k, v, specs[k]) for k, v in columns.items()}


def _json_value(name: str, value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return [_json_value(name, v) for v in value]
  if isinstance(value, bytes):
    if not name.endswith('_bytes'):
      try:
        return value.decode('utf-8')
      except UnicodeDecodeError:
        pass
    return {'b64': base64.b64encode(value).decode('ascii')}
  if isinstance(value, np.float32):
    # The shortest decimal that reads back as this float32 (0.2, not 0.20000000298023224),
    # as TF Serving writes floats.
    return float(str(value))
  return value.item() if isinstance(value, np.generic) else value


def format_predictions(fmt: str, outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """Outputs -> TF Serving's `{"predictions": ...}` (row) or `{"outputs": ...}` (columnar)."""
  if fmt == 'columnar':
    if len(outputs) == 1:
      return {'outputs': _json_value(*next(iter(outputs.items())))}
    return {'outputs': {k: _json_value(k, v) for k, v in outputs.items()}}
  if len(outputs) == 1:
    return {'predictions': _json_value(*next(iter(outputs.items())))}
  sizes = {k: v.shape[0] if v.ndim else None for k, v in outputs.items()}
  if len(set(sizes.values())) != 1 or None in sizes.values():
    raise status_lib.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'outputs have different batch sizes {sizes}; use the columnar "inputs" format')
  batch = next(iter(sizes.values()))
  return {'predictions': [{k: _json_value(k, v[i]) for k, v in outputs.items()}
                          for i in range(batch)]}


def _message_json(message) -> Dict[str, Any]:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   including_default_value_fields=True)


# ---- HTTP ---------------------------------------------------------------------

class RestApi:
  """Routes one request; returns (HTTP status, JSON body). No sockets here."""

  def __init__(self, registry: ModelRegistry):
    self._registry = registry

  def handle(self, method: str, path: str, read_body) -> Tuple[int, Dict[str, Any]]:
    try:
      return 200, self._route(method, path, read_body)
    except status_lib.ServingError as e:
      return e.http_status, {'error': e.message}
    except Exception as e:  # pylint: disable=broad-except
      log.exception('%s %s failed', method, path)
      return 500, {'error': f'internal error: {e}'}

  def _route(self, method: str, path: str, read_body) -> Dict[str, Any]:
    match = PATH.match(path.split('?', 1)[0])
    suffix = (match['suffix'] or '').lower() if match else ''
    is_get = method == 'GET' and suffix in ('', '/metadata')
    is_post = method == 'POST' and suffix in (':predict', ':classify', ':regress')
    if match is None or not (is_get or is_post):  # TF Serving: INVALID_ARGUMENT, 400
      raise _invalid(f'Malformed request: {method} {path}')
    if not match['name']:
      raise _invalid('Missing model name in request.')
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(match['name']),
                               version_label=urllib.parse.unquote(match['label'] or ''))
    if match['version'] is not None:
      if int(match['version']) > INT64_MAX:
        raise _invalid(f'Failed to convert version: {match["version"]} to numeric.')
      spec.version.value = int(match['version'])
    if suffix == '':
      return _message_json(grpc_service.model_status(
          self._registry, get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
    if suffix == '/metadata':
      response = grpc_service.model_metadata(self._registry, get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=spec, metadata_field=[grpc_service.SIGNATURE_DEF_FIELD]))
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      response.metadata[grpc_service.SIGNATURE_DEF_FIELD].Unpack(signature_map)
      return {'model_spec': _message_json(response.model_spec),
              'metadata': {'signature_def': _message_json(signature_map)}}
    if suffix == ':predict':
      return self._predict(spec, read_body())
    raise status_lib.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                  'this server implements predict only')

  def _predict(self, spec, body: bytes) -> Dict[str, Any]:
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise _invalid(f'JSON Parse error: {e}') from None
    if not isinstance(request, dict):
      raise _invalid('the body must be a JSON object')
    version = spec.version.value if spec.HasField('version') else None
    servable: Servable = self._registry.resolve(spec.name, version, spec.version_label)
    signature_name = request.get('signature_name', '')
    if not isinstance(signature_name, str):  # null too, as TF Serving
      raise _invalid('"signature_name" must be a string')
    signature_name = signature_name or DEFAULT_SIGNATURE
    fmt, inputs = parse_predict_body(request, servable.input_specs(signature_name))
    return format_predictions(fmt, servable.predict(signature_name, inputs))


class _BodyError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def make_handler(api: RestApi, max_body_bytes: int):
  """A BaseHTTPRequestHandler class bound to `api` with a request-size limit."""

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = 'fakefaces-serving'

    def _handle(self):
      # Every method's body is read (TF Serving ignores a GET's), so the next request on a
      # kept-alive connection starts where this one ends; where it cannot be read (too large,
      # malformed chunks) the connection is closed after the answer.
      try:
        body = self._read_body()
      except _BodyError as e:
        self.close_connection = True
        self._reply(e.status, {'error': e.message})
        return
      # Any method but GET and POST: TF Serving answers 400 "Malformed request" (api.handle).
      self._reply(*api.handle(self.command, self.path, lambda: body))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
      """The body by Content-Length or chunked (as TF Serving's HTTP server reads both),
      gunzipped when `Content-Encoding: gzip` (as there), at most `max_body_bytes`."""
      if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
        body = self._read_chunked()
      else:
        length = self.headers.get('Content-Length', '0').strip() or '0'
        if not length.isdigit():
          raise _BodyError(400, f'Content-Length {length!r} is not a number')
        if int(length) > max_body_bytes:
          raise _BodyError(413, f'request body of {int(length)} bytes exceeds this server\'s '
                                f'limit of {max_body_bytes} bytes')
        body = self.rfile.read(int(length))
      encoding = self.headers.get('Content-Encoding', '').strip().lower()
      if encoding in ('', 'identity'):
        return body
      if encoding not in ('gzip', 'x-gzip'):
        raise _BodyError(400, f'Content-Encoding {encoding!r} is not supported (send gzip or '
                              'an uncompressed body)')
      inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
      try:
        data = inflater.decompress(body, max_body_bytes + 1)
      except zlib.error as e:
        raise _BodyError(400, f'the gzip body cannot be decompressed: {e}') from None
      if len(data) > max_body_bytes or inflater.unconsumed_tail:
        raise _BodyError(413, f'the gzip body decompresses to more than this server\'s limit of '
                              f'{max_body_bytes} bytes')
      return data

    def _read_chunked(self) -> bytes:
      parts, total = [], 0
      while True:
        line = self.rfile.readline(1024)
        try:
          size = int(line.split(b';', 1)[0].strip(), 16)
        except ValueError:
          raise _BodyError(400, f'malformed chunk size line {line[:40]!r}') from None
        if size == 0:
          while self.rfile.readline(1024).strip():  # trailer fields, up to the empty line
            pass
          return b''.join(parts)
        total += size
        if total > max_body_bytes:
          raise _BodyError(413, f'chunked request body exceeds this server\'s limit of '
                                f'{max_body_bytes} bytes')
        parts.append(self.rfile.read(size))
        self.rfile.readline(1024)  # the CRLF after the chunk

    def _reply(self, status: int, body: Dict[str, Any]) -> None:
      data = json.dumps(body).encode('utf-8')
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(data)))
      if self.close_connection:
        self.send_header('Connection', 'close')
      self.end_headers()
      self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      log.debug('%s %s', self.address_string(), format % args)

  return Handler


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, host: str, port: int, registry: ModelRegistry, max_body_bytes: int):
    self.address_family = socket.AF_INET6 if ':' in host else socket.AF_INET
    super().__init__((host, port), make_handler(RestApi(registry), max_body_bytes))

  @property
  def port(self) -> int:
    return self.server_address[1]

