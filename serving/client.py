"""Client for the fakefaces model behind TF Serving (real or ours), gRPC or REST.

    with ServingClient('127.0.0.1:8500') as client:
      for p in client.predict([open('face.jpg', 'rb').read()]):
        print(p.label, p.fake_probability)
      heatmaps = client.explain([face_crop_jpeg])          # Grad-CAM, [n, size, size]
      preparation = client.face_preparation()              # how to make face_crop_jpeg

gRPC uses the official `tensorflow_serving.apis` stubs and
`tf.make_tensor_proto([bytes, ...], dtype=tf.string)`; REST posts
`{"instances": [{"b64": ...}]}` to `/v1/models/<name>:predict`. The
`from_examples` signature is fed serialized tf.Examples built from the images.
Failures raise `fakefaces.serving.status.ServingError` carrying the gRPC status code.
"""

import base64
import dataclasses
import http.client
import json
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np

from fakefaces.components.shared import serving_contract as contract
from fakefaces.serving import status as status_lib

DECISION_THRESHOLD = 0.5  # only for signatures that return no label
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Prediction:
  label: str  # 'real' or 'fake'
  fake_probability: float
  model_version: Optional[int] = None


class ServingClient:
  """Predicts real/fake for encoded images through a TF Serving endpoint."""

  def __init__(self, target: str, model_name: str = 'fakefaces',
               signature_name: str = contract.SERVING_SIGNATURE, rest: bool = False,
               version: Optional[int] = None, timeout: float = 30.0):
    self.target = target
    self.model_name = model_name
    self.signature_name = signature_name
    self.rest = rest
    self.version = version
    self.timeout = timeout
    self._channel = None
    if not rest:
      self._channel = grpc.insecure_channel(
          target, options=[('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
                           ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)])

  def close(self) -> None:
    if self._channel is not None:
      self._channel.close()

  def __enter__(self) -> 'ServingClient':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- predict ----------------------------------------------------------------

  def predict(self, images: Sequence[bytes]) -> List[Prediction]:
    """One Prediction per encoded JPEG/PNG, in order."""
    inputs = self._inputs(images)
    if self.rest:
      return self._predict_rest(inputs)
    return self._predict_grpc(inputs)

  def call(self, signature_name: str, inputs: Sequence[bytes]) -> Dict[str, np.ndarray]:
    """Runs `signature_name` (of the contract) on string `inputs`; {output key: array}."""
    key = contract.input_key(signature_name)
    if self.rest:
      body = {'signature_name': signature_name,
              'instances': [{'b64': base64.b64encode(b).decode('ascii')} for b in inputs]}
      rows = self._call_rest('POST', ':predict', body)['predictions']
      if rows and not isinstance(rows[0], dict):
        rows = [{contract.SIGNATURES[signature_name].outputs[0]: r} for r in rows]
      return {k: np.asarray([r[k] for r in rows]) for k in (rows[0] if rows else {})}
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
    request = predict_pb2.PredictRequest()
    self._fill_spec(request.model_spec)
    request.model_spec.signature_name = signature_name
    request.inputs[key].CopyFrom(tf.make_tensor_proto(list(inputs), dtype=tf.string))
    response = self._call_grpc('PredictionService', 'Predict', request)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

  def explain(self, images: Sequence[bytes]) -> List[Tuple[Prediction, np.ndarray]]:
    """(Prediction, Grad-CAM heatmap [size, size] in [0, 1]) per encoded face crop."""
    outputs = self.call(contract.EXPLAIN_SIGNATURE, images)
    if contract.HEATMAP_KEY not in outputs:
      raise status_lib.ServingError(grpc.StatusCode.INTERNAL,
                                    f'the answer has no {contract.HEATMAP_KEY!r} output')
    heatmaps = np.asarray(outputs[contract.HEATMAP_KEY], dtype=np.float32)
    return list(zip(_predictions(outputs, self.version), heatmaps))

  def face_preparation(self):
    """The FacePreparation the served model was trained with (from the model itself)."""
    from fakefaces.components.face_preparation.faces import FacePreparation  # pylint: disable=import-outside-toplevel
    try:
      outputs = self.call(contract.FACE_PREPARATION_SIGNATURE, [contract.PREPARATION_QUERY])
    except status_lib.ServingError as e:
      if e.code == grpc.StatusCode.FAILED_PRECONDITION:
        raise status_lib.ServingError(
            e.code, f'the served model has no {contract.FACE_PREPARATION_SIGNATURE!r} signature '
            '(exported before models carried their face preparation): re-export it, or send '
            f'aligned crops with --aligned. Server said: {e.message}') from None
      raise
    value = outputs[contract.PARAMETERS_KEY].reshape(-1)[0]
    return FacePreparation.from_json(value.decode('utf-8') if isinstance(value, bytes) else str(value))

  def _inputs(self, images: Sequence[bytes]) -> List[bytes]:
    if self.signature_name != contract.EXAMPLES_SIGNATURE:
      return list(images)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from fakefaces.components.shared import features  # pylint: disable=import-outside-toplevel
    return [tf.train.Example(features=tf.train.Features(feature={
        features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
    )).SerializeToString() for image in images]

  def _input_name(self) -> str:
    return contract.input_key(self.signature_name)

  def _predict_grpc(self, inputs: List[bytes]) -> List[Prediction]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
    request = predict_pb2.PredictRequest()
    self._fill_spec(request.model_spec)
    request.inputs[self._input_name()].CopyFrom(tf.make_tensor_proto(inputs, dtype=tf.string))
    response = self._call_grpc('PredictionService', 'Predict', request)
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    version = response.model_spec.version.value if response.model_spec.HasField('version') else None
    return _predictions(outputs, version)

  def _predict_rest(self, inputs: List[bytes]) -> List[Prediction]:
    body = {'signature_name': self.signature_name,
            'instances': [{'b64': base64.b64encode(b).decode('ascii')} for b in inputs]}
    answer = self._call_rest('POST', ':predict', body)
    rows = answer['predictions']
    if rows and not isinstance(rows[0], dict):  # single-output signature
      rows = [{contract.PROBABILITY_KEY: r} for r in rows]
    columns = {key: [r[key] for r in rows] for key in (rows[0] if rows else {})}
    return _predictions(columns, self.version)

  # ---- status and metadata ------------------------------------------------------

  def model_status(self) -> Dict[int, str]:
    """{version: state name} as GetModelStatus reports it."""
    if self.rest:
      answer = self._call_rest('GET', '', None)
      return {int(s['version']): s['state'] for s in answer['model_version_status']}
    from tensorflow_serving.apis import get_model_status_pb2  # pylint: disable=import-outside-toplevel
    request = get_model_status_pb2.GetModelStatusRequest()
    self._fill_spec(request.model_spec, signature=False)
    response = self._call_grpc('ModelService', 'GetModelStatus', request)
    names = get_model_status_pb2.ModelVersionStatus.State.Name
    return {s.version: names(s.state) for s in response.model_version_status}

  def signature_names(self) -> List[str]:
    """Signatures of the served version (GetModelMetadata)."""
    if self.rest:
      answer = self._call_rest('GET', '/metadata', None)
      return sorted(answer['metadata']['signature_def']['signature_def'])
    from tensorflow_serving.apis import get_model_metadata_pb2  # pylint: disable=import-outside-toplevel
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
    self._fill_spec(request.model_spec, signature=False)
    response = self._call_grpc('PredictionService', 'GetModelMetadata', request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata['signature_def'].Unpack(signature_map)
    return sorted(signature_map.signature_def)

  # ---- transport ----------------------------------------------------------------

  def _fill_spec(self, spec, signature: bool = True) -> None:
    spec.name = self.model_name
    if signature:
      spec.signature_name = self.signature_name
    if self.version is not None:
      spec.version.value = self.version

  def _call_grpc(self, service: str, method: str, request):
    from tensorflow_serving.apis import (model_service_pb2_grpc,  # pylint: disable=import-outside-toplevel
                                         prediction_service_pb2_grpc)
    stub = (prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            if service == 'PredictionService' else model_service_pb2_grpc.ModelServiceStub(self._channel))
    try:
      return getattr(stub, method)(request, timeout=self.timeout)
    except grpc.RpcError as e:
      raise status_lib.ServingError(e.code(), _grpc_message(self.target, e)) from None

  def _call_rest(self, method: str, suffix: str, body: Optional[dict]) -> dict:
    path = f'/v1/models/{self.model_name}'
    if self.version is not None:
      path += f'/versions/{self.version}'
    data = json.dumps(body).encode('utf-8') if body is not None else None
    request = urllib.request.Request(f'http://{self.target}{path}{suffix}', data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        text = response.read()
      return json.loads(text)
    except ValueError:  # an HTTP server, but not TF Serving's REST API (a web page, a proxy)
      raise status_lib.ServingError(
          grpc.StatusCode.UNAVAILABLE, f'{self.target} answered HTTP but not JSON: is it the '
          'REST port of TF Serving?') from None
    except urllib.error.HTTPError as e:
      text = e.read().decode('utf-8', 'replace')
      try:
        message = json.loads(text).get('error', text)
      except ValueError:
        message = text
      raise status_lib.ServingError(status_lib.code_from_http(e.code),
                                    f'HTTP {e.code}: {message}') from None
    except http.client.HTTPException:
      # BadStatusLine and friends: something answered, but not in HTTP/1.x. Its bytes (an
      # HTTP/2 frame from a gRPC port) mean nothing to a person and are not shown.
      raise status_lib.ServingError(
          grpc.StatusCode.UNAVAILABLE, f'{self.target} does not speak HTTP/1.1: is it the gRPC '
          'port? REST is another port (TF Serving: 8501, gRPC 8500); or drop --rest') from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
      raise status_lib.ServingError(grpc.StatusCode.UNAVAILABLE,
                                    f'cannot reach {self.target}: {e}') from None


def _grpc_message(target: str, error: grpc.RpcError) -> str:
  """The message of a failed gRPC call, in words where gRPC's own names a transport fault.

  gRPC core reports an HTTP/1.x answer to its HTTP/2 preface (a REST port) as "Failed parsing
  HTTP/2 (Expected SETTINGS frame as the first frame, got frame type N)", and a closed port as
  "failed to connect to all addresses; ... Connection refused": the wrong port, or no server,
  said in the terms of the transport. The REST side says the same in `_call_rest`.
  """
  details = error.details() or str(error)
  if error.code() != grpc.StatusCode.UNAVAILABLE:
    return details
  if 'Failed parsing HTTP/2' in details:
    return (f'{target} does not speak gRPC (it answered HTTP/1.x): is it the REST port? gRPC is '
            'another port (TF Serving: 8500, REST 8501); or add --rest')
  if 'Connection refused' in details:
    return f'cannot reach {target}: connection refused (is the model server running on that port?)'
  return details


def _predictions(outputs: Dict, version: Optional[int]) -> List[Prediction]:
  if contract.PROBABILITY_KEY not in outputs:
    raise status_lib.ServingError(
        grpc.StatusCode.INTERNAL,
        f'the answer has no {contract.PROBABILITY_KEY!r} output: {sorted(outputs)}')
  probabilities = [float(p) for p in outputs[contract.PROBABILITY_KEY]]
  labels = outputs.get(contract.LABEL_KEY)
  if labels is None:
    labels = ['fake' if p >= DECISION_THRESHOLD else 'real' for p in probabilities]
  return [Prediction(label.decode() if isinstance(label, bytes) else str(label), p, version)
          for label, p in zip(labels, probabilities)]
