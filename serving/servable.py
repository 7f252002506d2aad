"""One loaded model version: its signatures, input checks and the Predict call.

Both front ends (gRPC and REST) turn their request into numpy arrays and call
`Servable.predict`, so every check and every error message lives here once,
with the status codes TF Serving uses (`predict_util.cc`): an unknown signature
is FAILED_PRECONDITION, wrong inputs are INVALID_ARGUMENT.
"""

import logging
from typing import Dict, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import get_model_metadata_pb2

from fakefaces.components.shared import serving_contract as contract
from fakefaces.serving import status as status_lib

DEFAULT_SIGNATURE = contract.SERVING_SIGNATURE
SERVE_TAG = 'serve'
MAX_BATCH_SIZE = 1024  # elements along the batch dimension of one request

log = logging.getLogger(__name__)


def dtype_name(dtype) -> str:
  """tf.string -> 'DT_STRING' (the names TF Serving's messages use)."""
  return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)


def _error(code: grpc.StatusCode, message: str) -> status_lib.ServingError:
  return status_lib.ServingError(code, message)


class Servable:
  """A SavedModel version loaded in this process."""

  def __init__(self, model_name: str, version: int, path: str, loaded,
               signature_defs: Mapping, max_batch_size: int = MAX_BATCH_SIZE):
    self.model_name = model_name
    self.version = version
    self.path = path
    self._loaded = loaded  # keeps the variables the signature functions capture alive
    self._functions = dict(loaded.signatures)
    self._signature_defs = dict(signature_defs)
    self.max_batch_size = max_batch_size

  @classmethod
  def load(cls, model_name: str, version: int, path: str) -> 'Servable':
    """Loads `path` and runs a warm-up call, so the first real request is not slow."""
    saved_model = loader_impl.parse_saved_model(path)
    meta_graphs = [m for m in saved_model.meta_graphs if SERVE_TAG in m.meta_info_def.tags]
    if not meta_graphs:
      raise ValueError(f'{path} has no MetaGraph tagged {SERVE_TAG!r}')
    loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
    servable = cls(model_name, version, path, loaded, meta_graphs[0].signature_def)
    servable.warm_up()
    return servable

  @property
  def signature_names(self) -> Sequence[str]:
    return sorted(self._functions)

  def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
    """What GetModelMetadata answers for the `signature_def` field."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in self._signature_defs.items():
      result.signature_def[name].CopyFrom(signature_def)
    return result

  def input_specs(self, signature_name: str) -> Dict[str, tf.TensorSpec]:
    return dict(self._function(signature_name).structured_input_signature[1])

  def output_names(self, signature_name: str) -> Sequence[str]:
    return sorted(self._function(signature_name).structured_outputs)

  def _function(self, signature_name: str):
    name = signature_name or DEFAULT_SIGNATURE
    if name not in self._functions:
      raise _error(grpc.StatusCode.FAILED_PRECONDITION,
                   f'Serving signature key "{name}" not found. '
                   f'Model {self.model_name} version {self.version} has: {self.signature_names}')
    return self._functions[name]

  def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray],
              output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Checks `inputs` against the signature, runs it, returns the (filtered) outputs."""
    name = signature_name or DEFAULT_SIGNATURE
    function = self._function(name)
    specs = self.input_specs(name)
    self._check_input_names(name, specs, inputs)
    feeds = {key: self._check_input(key, spec, np.asarray(inputs[key])) for key, spec in specs.items()}
    outputs = self.output_names(name)
    for alias in output_filter:
      if alias not in outputs:
        raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                     f'output tensor alias not found in signature: {alias} '
                     f'Outputs expected to be in the set {{{",".join(outputs)}}}.')
    try:
      results = function(**feeds)
    except tf.errors.OpError as e:
      raise _error(status_lib.code_from_number(e.error_code),
                   self._describe_failure(name, specs, e.message)) from None
    wanted = list(dict.fromkeys(output_filter)) or outputs
    return {alias: results[alias].numpy() for alias in wanted}

  def _check_input_names(self, signature_name: str, specs: Mapping, inputs: Mapping) -> None:
    if not inputs:
      raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                   f'the request has no inputs; signature "{signature_name}" expects '
                   f'{sorted(specs)}')
    extra = sorted(set(inputs) - set(specs))
    missing = sorted(set(specs) - set(inputs))
    if extra or missing:
      raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                   f'input size does not match signature "{signature_name}": '
                   f'{len(inputs)}!={len(specs)} len({{{",".join(sorted(inputs))}}}) != '
                   f'len({{{",".join(sorted(specs))}}}). Sent extra: {{{",".join(extra)}}}. '
                   f'Missing but required: {{{",".join(missing)}}}.')

  def _check_input(self, key: str, spec: tf.TensorSpec, value: np.ndarray) -> tf.Tensor:
    if spec.dtype == tf.string:
      dtype_ok = value.dtype == object or value.dtype.kind == 'S'
    else:
      dtype_ok = value.dtype != object and tf.as_dtype(value.dtype) == spec.dtype
    if not dtype_ok:
      got = 'DT_STRING' if value.dtype == object or value.dtype.kind in 'SU' else dtype_name(value.dtype)
      raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                   f'input \'{key}\' must be {dtype_name(spec.dtype)}, got {got}')
    if not spec.shape.is_compatible_with(value.shape):
      raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                   f'input \'{key}\' must have shape {_shape_text(spec.shape)}, '
                   f'got {list(value.shape)}')
    if value.ndim and value.shape[0] == 0:
      raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                   f'input \'{key}\' is empty: send at least one element')
    if value.ndim and value.shape[0] > self.max_batch_size:
      raise _error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                   f'input \'{key}\' has a batch of {value.shape[0]}, over this server\'s limit '
                   f'of {self.max_batch_size}; split the request')
    if spec.dtype == tf.string:
      empty = [i for i, item in enumerate(value.reshape(-1)) if not item]
      if empty:
        raise _error(grpc.StatusCode.INVALID_ARGUMENT,
                     f'input \'{key}\' element(s) {empty[:10]} are empty (0 bytes)')
    return tf.constant(value, dtype=spec.dtype)

  def _describe_failure(self, signature_name: str, specs: Mapping, message: str) -> str:
    text = status_lib.clean_tf_message(message)
    where = f'model {self.model_name} version {self.version} signature "{signature_name}"'
    if 'Decode' in message and len(specs) == 1:
      return f'input \'{next(iter(specs))}\' is not a valid encoded image ({where}): {text}'
    return f'{where} failed on this input: {text}'

  def warm_up(self) -> None:
    """Runs the default signature once on a tiny PNG when it takes one string input."""
    function = self._functions.get(DEFAULT_SIGNATURE)
    specs = dict(function.structured_input_signature[1]) if function is not None else {}
    if len(specs) != 1 or next(iter(specs.values())).dtype != tf.string:
      return
    png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
    try:
      function(**{next(iter(specs)): tf.stack([png])})
    except tf.errors.OpError as e:
      log.info('warm-up of %s version %d skipped: %s', self.model_name, self.version,
               status_lib.clean_tf_message(e.message))


def _shape_text(shape: tf.TensorShape) -> str:
  if shape.rank is None:
    return 'of any rank'
  return '[' + ', '.join('batch' if d is None and i == 0 else str(d if d is not None else -1)
                         for i, d in enumerate(shape.as_list())) + ']'


def single_input_name(servable: Servable, signature_name: str) -> Optional[str]:
  specs = servable.input_specs(signature_name)
  return next(iter(specs)) if len(specs) == 1 else None
