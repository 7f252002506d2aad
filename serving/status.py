"""Errors with a gRPC status code, shared by the gRPC and REST front ends.

REST answers use the HTTP status TF Serving maps each code to
(`tensorflow_serving/model_servers/http_server.cc::ToHTTPStatusCode`).
"""

import re

import grpc

# gRPC code -> HTTP status, as TF Serving's REST server maps them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
_CODE_BY_HTTP = {404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 429: grpc.StatusCode.RESOURCE_EXHAUSTED, 501: grpc.StatusCode.UNIMPLEMENTED,
                 503: grpc.StatusCode.UNAVAILABLE}


class ServingError(Exception):
  """A request failed; `code` is the grpc.StatusCode the client receives."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def http_status(self) -> int:
    return HTTP_STATUS.get(self.code, 500)

  def __str__(self) -> str:
    return f'{self.code.name}: {self.message}'


def code_from_number(number: int) -> grpc.StatusCode:
  """Canonical code number (TF `error_code`, absl) -> grpc.StatusCode."""
  return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def code_from_http(status: int) -> grpc.StatusCode:
  """HTTP status of a REST error -> the most likely gRPC code (client side)."""
  if status in _CODE_BY_HTTP:
    return _CODE_BY_HTTP[status]
  return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


_TF_NOISE = re.compile(r'^(Graph execution error:|Detected at node .*|<stack traces unavailable>)$')
_TF_NODE = re.compile(r'\s*\[\[\{\{.*?\}\}\]\]|\s*\[Op:[^\]]*\]')


def clean_tf_message(message: str) -> str:
  """Keeps the human part of a TF runtime error (drops graph/node/op decoration)."""
  lines = []
  for line in message.splitlines():
    line = _TF_NODE.sub('', line).strip()
    if line and not _TF_NOISE.match(line):
      lines.append(line)
  return ' '.join(lines) or message.strip()
