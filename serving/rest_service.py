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

PATH = re.compile(r'^/v1/models/(?P<name>[^/:]+)'
                  r'(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?'
                  r'(?P<suffix>/metadata|:predict|:classify|:regress)?$')
SOCKET_TIMEOUT_SECONDS = 60  # a stalled client cannot hold a handler thread forever

log = logging.getLogger(__name__)


def _invalid(message: str) -> status_lib.ServingError:
  return status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# ---- JSON <-> numpy -----------------------------------------------------------

def _decode_leaves(value: Any, key: str) -> Any:
  """Replaces every {"b64": ...} with its bytes and every string with UTF-8 bytes."""
  if isinstance(value, dict):
    if set(value) != {'b64'} or not isinstance(value['b64'], str):
      raise _invalid(f'input \'{key}\': a JSON object value must be {{"b64": "<base64>"}}, '
                     f'got keys {sorted(value)}')
    try:
      return base64.b64decode(value['b64'], validate=True)
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
    columns = inputs if _is_named(inputs, specs) else ({single: inputs} if single else None)
    if columns is None:
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
    if match is None:
      raise status_lib.ServingError(grpc.StatusCode.NOT_FOUND,
                                    f'Malformed request: {method} {path}')
    spec = model_pb2.ModelSpec(name=match['name'], version_label=match['label'] or '')
    if match['version'] is not None:
      spec.version.value = int(match['version'])
    suffix = match['suffix']
    if method == 'GET' and suffix is None:
      return _message_json(grpc_service.model_status(
          self._registry, get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
    if method == 'GET' and suffix == '/metadata':
      response = grpc_service.model_metadata(self._registry, get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=spec, metadata_field=[grpc_service.SIGNATURE_DEF_FIELD]))
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      response.metadata[grpc_service.SIGNATURE_DEF_FIELD].Unpack(signature_map)
      return {'model_spec': _message_json(response.model_spec),
              'metadata': {'signature_def': _message_json(signature_map)}}
    if method == 'POST' and suffix == ':predict':
      return self._predict(spec, read_body())
    if method == 'POST' and suffix in (':classify', ':regress'):
      raise status_lib.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                    'this server implements predict only')
    raise status_lib.ServingError(grpc.StatusCode.NOT_FOUND,
                                  f'Malformed request: {method} {path}')

  def _predict(self, spec, body: bytes) -> Dict[str, Any]:
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise _invalid(f'JSON Parse error: {e}') from None
    if not isinstance(request, dict):
      raise _invalid('the body must be a JSON object')
    version = spec.version.value if spec.HasField('version') else None
    servable: Servable = self._registry.resolve(spec.name, version, spec.version_label)
    signature_name = request.get('signature_name') or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
      raise _invalid('"signature_name" must be a string')
    fmt, inputs = parse_predict_body(request, servable.input_specs(signature_name))
    return format_predictions(fmt, servable.predict(signature_name, inputs))


def make_handler(api: RestApi, max_body_bytes: int):
  """A BaseHTTPRequestHandler class bound to `api` with a request-size limit."""

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = SOCKET_TIMEOUT_SECONDS
    server_version = 'fakefaces-serving'

    def do_GET(self):  # pylint: disable=invalid-name
      self._reply(*api.handle('GET', self.path, lambda: b''))

    def do_POST(self):  # pylint: disable=invalid-name
      length = self.headers.get('Content-Length')
      if self.headers.get('Transfer-Encoding') or length is None or not length.isdigit():
        self.close_connection = True
        self._reply(411, {'error': 'a POST needs a Content-Length header (no chunked bodies)'})
        return
      if int(length) > max_body_bytes:
        self.close_connection = True  # the unread body must not be parsed as the next request
        self._reply(413, {'error': f'request body of {int(length)} bytes exceeds this server\'s '
                                   f'limit of {max_body_bytes} bytes'})
        return
      self._reply(*api.handle('POST', self.path, lambda: self.rfile.read(int(length))))

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

