"""gRPC front end: TF Serving's PredictionService and ModelService.

Implements the official `tensorflow_serving.apis` services (Predict,
GetModelMetadata, GetModelStatus) over a `ModelRegistry`. Message-size limits
are enforced by gRPC itself (RESOURCE_EXHAUSTED) through the server options.
"""

import logging

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc,
                                     predict_pb2)

from fakefaces.serving import status as status_lib
from fakefaces.serving.registry import ModelRegistry
from fakefaces.serving.servable import DEFAULT_SIGNATURE, Servable

SIGNATURE_DEF_FIELD = 'signature_def'

log = logging.getLogger(__name__)


def _abort_on_error(method):
  """Turns a ServingError into the gRPC status; anything else into INTERNAL, logged."""

  def wrapper(self, request, context):
    try:
      return method(self, request, context)
    except status_lib.ServingError as e:
      context.abort(e.code, e.message)
    except Exception as e:  # pylint: disable=broad-except
      log.exception('%s failed', method.__name__)
      context.abort(grpc.StatusCode.INTERNAL, f'{method.__name__} failed: {e}')

  wrapper.__name__ = method.__name__
  return wrapper


def _requested_version(model_spec: model_pb2.ModelSpec):
  return model_spec.version.value if model_spec.HasField('version') else None


def model_spec(servable: Servable, signature_name: str) -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=servable.model_name, signature_name=signature_name)
  spec.version.value = servable.version
  return spec


def model_metadata(registry: ModelRegistry, request: get_model_metadata_pb2.GetModelMetadataRequest
                   ) -> get_model_metadata_pb2.GetModelMetadataResponse:
  """GetModelMetadata (gRPC, and REST `/metadata` renders the same answer as JSON)."""
  fields = list(request.metadata_field)
  if not fields:
    raise status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                  'GetModelMetadataRequest must specify at least one metadata_field')
  for field in fields:
    if field != SIGNATURE_DEF_FIELD:
      raise status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f'Metadata field {field} is not supported')
  spec = request.model_spec
  servable = registry.resolve(spec.name, _requested_version(spec), spec.version_label)
  response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(servable, ''))
  response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
  return response


def model_status(registry: ModelRegistry, request: get_model_status_pb2.GetModelStatusRequest
                 ) -> get_model_status_pb2.GetModelStatusResponse:
  """GetModelStatus (gRPC, and REST `GET /v1/models/<name>` renders it as JSON)."""
  spec = request.model_spec
  response = get_model_status_pb2.GetModelStatusResponse()
  for version, state in registry.status(spec.name, _requested_version(spec)):
    entry = response.model_version_status.add(
        version=version, state=get_model_status_pb2.ModelVersionStatus.State.Value(state.state))
    entry.status.error_code = state.error_code.value[0]  # canonical codes share their numbers
    entry.status.error_message = state.error_message
  return response


def tensor_to_array(name: str, proto: tensor_pb2.TensorProto, max_elements: int) -> np.ndarray:
  """TensorProto -> numpy, refusing shapes that would blow up memory before converting."""
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f'input \'{name}\' has a negative dimension: {dims}')
  count = int(np.prod(dims, dtype=np.int64)) if dims else 1
  if count > max_elements:
    raise status_lib.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'input \'{name}\' declares shape {dims} ({count} elements), more than a request can carry')
  try:
    return tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except
    dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else proto.dtype
    raise status_lib.ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'input \'{name}\' is not a valid TensorProto (dtype {dtype}, shape {dims}): {e}') from None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata; Classify/Regress/MultiInference are not offered."""

  def __init__(self, registry: ModelRegistry, max_request_bytes: int):
    self._registry = registry
    self._max_elements = max_request_bytes  # every element costs at least one byte on the wire

  @_abort_on_error
  def Predict(self, request, context):  # pylint: disable=invalid-name
    spec = request.model_spec
    servable = self._registry.resolve(spec.name, _requested_version(spec), spec.version_label)
    signature_name = spec.signature_name or DEFAULT_SIGNATURE
    inputs = {key: tensor_to_array(key, proto, self._max_elements)
              for key, proto in request.inputs.items()}
    outputs = servable.predict(signature_name, inputs, list(request.output_filter))
    response = predict_pb2.PredictResponse(model_spec=model_spec(servable, signature_name))
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response

  @_abort_on_error
  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return model_metadata(self._registry, request)

  def _unimplemented(self, request, context):
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  'this server implements Predict only (the model has Predict signatures)')

  Classify = Regress = MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus; config reloads are not offered (versions are watched instead)."""

  def __init__(self, registry: ModelRegistry):
    self._registry = registry

  @_abort_on_error
  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return model_status(self._registry, request)

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  'config reloads are not supported; new versions are picked up from the base path')


def add_services(server: grpc.Server, registry: ModelRegistry, max_request_bytes: int) -> None:
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(registry, max_request_bytes), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)

