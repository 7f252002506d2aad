"""End to end: `fakefaces serve` in a real subprocess, called with the official TF Serving stubs.

Set FAKEFACES_SERVING_TARGET=host:grpc_port,rest_port to run the same tests
against an already running server (e.g. the real tensorflow_model_server serving
a fakefaces model); then no server is started and the checks that depend on
our own limits or messages are skipped.
"""

import base64
import json
import socket
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from fakefaces.components.shared import serving_contract as contract
from fakefaces.pipeline.cli import cli
from fakefaces.serving import client as client_lib
from fakefaces.serving import status as status_lib
import serving_testing as testing

MODEL = 'fakefaces'
MAX_REQUEST_BYTES = 1024 * 1024  # small, so the oversize test sends little
EXTERNAL = testing.external_target()
own_server_only = pytest.mark.skipif(EXTERNAL is not None,
                                     reason='checks our own server\'s limits/messages')


@pytest.fixture(scope='module')
def endpoint(tmp_path_factory):
  """(grpc target, rest target) of a running server with at least one fakefaces version."""
  if EXTERNAL is not None:
    yield EXTERNAL
    return
  base = tmp_path_factory.mktemp('serving_base')
  testing.export_tiny_model(str(base / '1'))
  log = tmp_path_factory.mktemp('serving_log') / 'serve.log'
  with testing.ServerProcess(str(base), ['--max-request-bytes', str(MAX_REQUEST_BYTES)],
                             log_path=str(log)) as server:
    yield server.grpc_target, server.rest_target
    assert server.process.poll() is None, f'server died during the tests; see {log}'


@pytest.fixture(scope='module')
def channel(endpoint):
  with grpc.insecure_channel(endpoint[0]) as ch:
    yield ch


@pytest.fixture(scope='module')
def images():
  return testing.encode_images(3, size=48, seed=3)


def _request(inputs, name=MODEL, signature='', version=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  for key, tensor in inputs.items():
    request.inputs[key].CopyFrom(tensor)
  return request


def _predict(channel, request):
  return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def _images_tensor(images):
  return tf.make_tensor_proto(images, dtype=tf.string)


def _served_version(channel):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = MODEL
  response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
  available = [s.version for s in response.model_version_status
               if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]
  assert available, response
  return max(available)


def _rest(endpoint, path, body=None, raw=None):
  data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
  request = urllib.request.Request(f'http://{endpoint[1]}{path}', data=data,
                                   method='POST' if data is not None else 'GET')
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read() or b'{}')


# ---- what works ----------------------------------------------------------------

def test_grpc_predict_returns_probability_and_label_per_image(channel, images):
  response = _predict(channel, _request({'image_bytes': _images_tensor(images)}))
  probabilities = tf.make_ndarray(response.outputs['fake_probability'])
  labels = tf.make_ndarray(response.outputs['label'])
  assert probabilities.shape == (3,) and probabilities.dtype == np.float32
  assert np.all((probabilities >= 0) & (probabilities <= 1))
  assert [lab.decode() for lab in labels] == ['fake' if p >= 0.5 else 'real' for p in probabilities]
  assert response.model_spec.name == MODEL
  assert response.model_spec.signature_name == 'serving_default'
  assert response.model_spec.version.value == _served_version(channel)


def test_grpc_specific_version_and_from_examples_signature_agree(channel, images):
  version = _served_version(channel)
  by_bytes = _predict(channel, _request({'image_bytes': _images_tensor(images)}, version=version))
  examples = [tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()
              for image in images]
  by_examples = _predict(channel, _request({'examples': _images_tensor(examples)},
                                           signature='from_examples'))
  np.testing.assert_allclose(tf.make_ndarray(by_bytes.outputs['fake_probability']),
                             tf.make_ndarray(by_examples.outputs['fake_probability']), rtol=1e-5)
  assert set(by_examples.outputs) == {'fake_probability'}


def test_grpc_output_filter_returns_only_the_asked_output(channel, images):
  request = _request({'image_bytes': _images_tensor(images[:1])})
  request.output_filter.append('label')
  assert set(_predict(channel, request).outputs) == {'label'}


def test_grpc_metadata_lists_every_contract_signature(channel):
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
  request.model_spec.name = MODEL
  response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
      request, timeout=10)
  signatures = get_model_metadata_pb2.SignatureDefMap()
  response.metadata['signature_def'].Unpack(signatures)
  serving = signatures.signature_def['serving_default']
  assert serving.inputs['image_bytes'].dtype == tf.string.as_datatype_enum
  assert set(serving.outputs) == {'fake_probability', 'label'}
  assert set(signatures.signature_def) - {'__saved_model_init_op'} == set(contract.SIGNATURES)
  for name, signature in contract.SIGNATURES.items():
    assert set(signatures.signature_def[name].inputs) == {signature.input_key}
    assert set(signatures.signature_def[name].outputs) == set(signature.outputs)
  assert response.model_spec.version.value == _served_version(channel)


def test_rest_status_and_metadata(endpoint, channel):
  status, body = _rest(endpoint, f'/v1/models/{MODEL}')
  assert status == 200
  assert {'version': str(_served_version(channel)), 'state': 'AVAILABLE'}.items() <= \
      body['model_version_status'][0].items()
  status, body = _rest(endpoint, f'/v1/models/{MODEL}/versions/{_served_version(channel)}/metadata')
  assert status == 200
  assert body['model_spec']['name'] == MODEL
  inputs = body['metadata']['signature_def']['signature_def']['serving_default']['inputs']
  assert inputs['image_bytes']['dtype'] == 'DT_STRING'


def test_rest_formats_match_grpc(endpoint, channel, images):
  grpc_p = tf.make_ndarray(_predict(channel, _request({'image_bytes': _images_tensor(images)}))
                           .outputs['fake_probability'])
  b64 = [{'b64': base64.b64encode(image).decode()} for image in images]
  path = f'/v1/models/{MODEL}:predict'
  status, bare = _rest(endpoint, path, {'instances': b64})
  assert status == 200, bare
  status, named = _rest(endpoint, path, {'signature_name': 'serving_default',
                                         'instances': [{'image_bytes': b} for b in b64]})
  assert status == 200, named
  status, columnar = _rest(endpoint, f'/v1/models/{MODEL}/versions/{_served_version(channel)}:predict',
                           {'inputs': {'image_bytes': b64}})
  assert status == 200, columnar
  for rows in (bare['predictions'], named['predictions']):
    np.testing.assert_allclose([r['fake_probability'] for r in rows], grpc_p, rtol=1e-5)
    assert all(r['label'] in ('real', 'fake') for r in rows)
  np.testing.assert_allclose(columnar['outputs']['fake_probability'], grpc_p, rtol=1e-5)


def test_client_library_over_grpc_and_rest(endpoint, images):
  with client_lib.ServingClient(endpoint[0]) as grpc_client:
    over_grpc = grpc_client.predict(images)
    assert 'serving_default' in grpc_client.signature_names()
    assert 'AVAILABLE' in grpc_client.model_status().values()
  with client_lib.ServingClient(endpoint[1], rest=True, signature_name='from_examples') as rest_client:
    over_rest = rest_client.predict(images)
  assert [p.label for p in over_grpc] == [p.label for p in over_rest]
  np.testing.assert_allclose([p.fake_probability for p in over_grpc],
                             [p.fake_probability for p in over_rest], rtol=1e-5)
  assert over_grpc[0].model_version is not None


def test_predict_command_prints_label_and_probability(endpoint, images, tmp_path, capsys):
  paths = []
  for i, image in enumerate(images[:2]):
    paths.append(str(tmp_path / f'face{i}.png'))
    with open(paths[-1], 'wb') as f:
      f.write(image)
  assert cli.main(['predict', *paths, '--aligned', '--server', endpoint[0]]) == 0
  grpc_lines = capsys.readouterr().out.strip().splitlines()
  assert cli.main(['predict', *paths, '--aligned', '--server', endpoint[1], '--rest']) == 0
  rest_lines = capsys.readouterr().out.strip().splitlines()
  # One line per face, then each photo's summary line (faces found and scored).
  assert len(grpc_lines) == 4 and grpc_lines == rest_lines
  assert grpc_lines[1] == (f'{paths[0]}\tsummary\tno face detection: the centred square of the '
                           'photo was scored as one face crop')
  path, face, box, probability, label = grpc_lines[0].split('\t')
  assert path == paths[0] and face == 'face 1' and box == 'box=0,0,48,48'
  assert label in ('real', 'fake') and probability.startswith('p(fake)=')


def test_predict_command_names_a_missing_file_and_bad_image(endpoint, images, tmp_path, capsys):
  missing = str(tmp_path / 'nope.jpg')
  assert cli.main(['predict', missing, '--aligned', '--server', endpoint[0]]) == 1
  assert missing in capsys.readouterr().err
  not_image = tmp_path / 'notes.jpg'
  not_image.write_bytes(b'this is text, not a JPEG')
  assert cli.main(['predict', str(not_image), '--aligned', '--server', endpoint[0]]) == 1
  assert 'not a readable image' in capsys.readouterr().err
  good = tmp_path / 'face.png'
  good.write_bytes(images[0])
  assert cli.main(['predict', str(good), str(not_image), '--aligned', '--server', endpoint[0]]) == 1
  out, err = capsys.readouterr()
  # The readable photo's face and summary lines only.
  assert out.startswith(f'{good}\t') and len(out.strip().splitlines()) == 2
  assert f'{not_image}: not a readable image' in err


# ---- bad requests: the proper status, and the server keeps serving ------------------------------

def _float_tensor():
  return tf.make_tensor_proto(np.zeros([1], np.float32))


BAD_GRPC_REQUESTS = {
    'not_an_image': (lambda: _request({'image_bytes': _images_tensor([b'GIF? no, plain text'])}),
                     grpc.StatusCode.INVALID_ARGUMENT, 'image'),
    'empty_bytes': (lambda: _request({'image_bytes': _images_tensor([b''])}),
                    grpc.StatusCode.INVALID_ARGUMENT, 'empty'),
    'empty_batch': (lambda: _request({'image_bytes': tf.make_tensor_proto([], dtype=tf.string)}),
                    grpc.StatusCode.INVALID_ARGUMENT, 'empty'),
    'no_inputs': (lambda: _request({}), grpc.StatusCode.INVALID_ARGUMENT, 'input'),
    'wrong_input_name': (lambda: _request({'pixels': _images_tensor([b'x'])}),
                         grpc.StatusCode.INVALID_ARGUMENT, 'pixels'),
    'wrong_dtype': (lambda: _request({'image_bytes': _float_tensor()}),
                    grpc.StatusCode.INVALID_ARGUMENT, 'DT_STRING'),
    'wrong_shape': (lambda: _request({'image_bytes': tf.make_tensor_proto([[b'a'], [b'b']],
                                                                          dtype=tf.string)}),
                    grpc.StatusCode.INVALID_ARGUMENT, 'shape'),
    'unknown_model': (lambda: _request({'image_bytes': _images_tensor([b'x'])}, name='nomodel'),
                      grpc.StatusCode.NOT_FOUND, 'nomodel'),
    'unknown_signature': (lambda: _request({'image_bytes': _images_tensor([b'x'])},
                                           signature='nosuchsig'),
                          grpc.StatusCode.FAILED_PRECONDITION, 'nosuchsig'),
    'unknown_version': (lambda: _request({'image_bytes': _images_tensor([b'x'])}, version=42),
                        grpc.StatusCode.NOT_FOUND, '42'),
}


@pytest.mark.parametrize('case', sorted(BAD_GRPC_REQUESTS))
def test_grpc_bad_request_gets_its_status_and_server_keeps_serving(channel, images, case):
  build, code, words = BAD_GRPC_REQUESTS[case]
  with pytest.raises(grpc.RpcError) as raised:
    _predict(channel, build())
  assert raised.value.code() == code, raised.value.details()
  if EXTERNAL is None:
    assert words.lower() in raised.value.details().lower()
  ok = _predict(channel, _request({'image_bytes': _images_tensor(images[:1])}))
  assert tf.make_ndarray(ok.outputs['fake_probability']).shape == (1,)


@own_server_only
def test_grpc_oversized_request_is_resource_exhausted(channel, images):
  big = [b'\xff' * (MAX_REQUEST_BYTES + 1024)]
  with pytest.raises(grpc.RpcError) as raised:
    _predict(channel, _request({'image_bytes': _images_tensor(big)}))
  assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
  assert _predict(channel, _request({'image_bytes': _images_tensor(images[:1])})).outputs


def test_grpc_status_and_metadata_errors(channel):
  stub = model_service_pb2_grpc.ModelServiceStub(channel)
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = 'nomodel'
  with pytest.raises(grpc.RpcError) as raised:
    stub.GetModelStatus(request, timeout=10)
  assert raised.value.code() == grpc.StatusCode.NOT_FOUND
  request.model_spec.name = MODEL
  request.model_spec.version.value = 42
  with pytest.raises(grpc.RpcError) as raised:
    stub.GetModelStatus(request, timeout=10)
  assert raised.value.code() == grpc.StatusCode.NOT_FOUND
  metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['no_such_field'])
  metadata.model_spec.name = MODEL
  with pytest.raises(grpc.RpcError) as raised:
    prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(metadata, timeout=10)
  assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_bad_requests_get_json_errors_and_server_keeps_serving(endpoint, images):
  predict = f'/v1/models/{MODEL}:predict'
  not_image = {'instances': [{'b64': base64.b64encode(b'plain text').decode()}]}
  cases = [
      (predict, not_image, None, 400),
      (predict, {'instances': []}, None, 400),
      (predict, {'instances': [1.5]}, None, 400),  # wrong dtype
      (predict, None, b'{"instances": [', 400),  # not JSON
      (predict, {'instances': [{'b64': 'x'}], 'signature_name': 'nosuchsig'}, None, 400),
      ('/v1/models/nomodel:predict', not_image, None, 404),
      (f'/v1/models/{MODEL}/versions/42:predict', not_image, None, 404),
      ('/v1/models/nomodel', None, None, 404),
  ]
  for path, body, raw, expected in cases:
    status, answer = _rest(endpoint, path, body, raw)
    assert status == expected, (path, body, raw, answer)
    assert isinstance(answer.get('error'), str) and answer['error'], answer
  status, answer = _rest(endpoint, predict, {'instances': [{'b64': base64.b64encode(images[0]).decode()}]})
  assert status == 200 and len(answer['predictions']) == 1


@own_server_only
def _raw_http(endpoint, head: str, body: bytes = b'') -> bytes:
  """Sends `head` (+ `body`) on a fresh socket and reads the whole answer until the server closes.

  Deterministic where urllib was not: urllib writes the whole oversized body
  first, and under CPU load the server had already answered and closed, so the
  client got EPIPE before it could read the 413. Here the client sends only
  the headers (and a small prefix of the body, well under the socket buffer),
  so nothing it writes can fail, and it then reads the answer.
  """
  host, port = endpoint[1].rsplit(':', 1)
  with socket.create_connection((host, int(port)), timeout=30) as conn:
    conn.sendall(head.encode() + body)
    chunks = []
    while True:
      chunk = conn.recv(65536)
      if not chunk:  # the server closed the connection: the answer is complete
        return b''.join(chunks)
      chunks.append(chunk)


def test_rest_oversized_body_is_refused_unread(endpoint, images):
  host = endpoint[1].rsplit(':', 1)[0]
  # Content-Length over the limit and only 1 KiB of the body sent: the server must
  # answer 413 from the header alone (were it reading the body, it would wait for
  # the rest and this recv would time out) and close the connection.
  answer = _raw_http(endpoint, f'POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: {host}\r\n'
                     f'Content-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n', b' ' * 1024)
  head, _, body = answer.partition(b'\r\n\r\n')
  assert head.startswith(b'HTTP/1.1 413'), answer[:200]
  assert b'Connection: close' in head
  assert 'limit' in json.loads(body)['error']
  # A chunked body over the limit: refused once the chunks pass it, connection closed.
  chunk = b' ' * (MAX_REQUEST_BYTES // 2 + 1)
  answer = _raw_http(endpoint, f'POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: {host}\r\n'
                     'Transfer-Encoding: chunked\r\n\r\n',
                     (b'%x\r\n' % len(chunk) + chunk + b'\r\n') * 2 + b'0\r\n\r\n')
  assert answer.startswith(b'HTTP/1.1 413'), answer[:200]
  status, _ = _rest(endpoint, f'/v1/models/{MODEL}:predict',
                    {'instances': [{'b64': base64.b64encode(images[0]).decode()}]})
  assert status == 200


def test_client_raises_serving_error_with_code(endpoint):
  with client_lib.ServingClient(endpoint[0], model_name='nomodel') as client:
    with pytest.raises(status_lib.ServingError) as raised:
      client.predict([b'x'])
  assert raised.value.code == grpc.StatusCode.NOT_FOUND
  with client_lib.ServingClient(endpoint[1], rest=True, version=42) as client:
    with pytest.raises(status_lib.ServingError) as raised:
      client.predict([b'x'])
  assert raised.value.code == grpc.StatusCode.NOT_FOUND



# ---- what a client written against tensorflow_model_server sends ----------------------------

def _field_bodies(field_case):
  folder = field_case('rest_b64_variants')
  bodies = {}
  for name in ('standard', 'wrapped76', 'unpadded'):
    with open(f'{folder}/body_{name}.json', 'rb') as f:
      bodies[name] = f.read()
  return bodies


def test_rest_b64_variants_tf_serving_accepts_are_accepted(endpoint, field_case):
  """Whitespace-wrapped and unpadded base64 decode in TF Serving (absl::Base64Unescape)."""
  predict = f'/v1/models/{MODEL}:predict'
  answers = {}
  for name, raw in _field_bodies(field_case).items():
    status, answer = _rest(endpoint, predict, None, raw)
    assert status == 200, (name, answer)
    answers[name] = answer['predictions']
  assert answers['wrapped76'] == answers['standard'] == answers['unpadded']
  # URL-safe characters stay refused (TF Serving uses the standard alphabet only).
  urlsafe = json.loads(_field_bodies(field_case)['standard'])
  text = urlsafe['instances'][0]['b64']
  urlsafe['instances'][0]['b64'] = text.replace('+', '-').replace('/', '_')
  assert text != urlsafe['instances'][0]['b64']
  status, answer = _rest(endpoint, predict, urlsafe)
  assert status == 400 and 'base64' in answer['error'], answer


def test_rest_b64_decoder_follows_absl_rules():
  from fakefaces.serving import rest_service  # pylint: disable=g-import-not-at-top
  accepted = {'YQ==': b'a', 'YQ': b'a', 'YQ..': b'a', ' Y Q\n=\t=\r\n': b'a', 'YWI': b'ab',
              'YWI=': b'ab', '': b'', 'YWJj': b'abc', '+/8=': b'\xfb\xff'}
  for text, expected in accepted.items():
    assert rest_service.decode_b64(text) == expected, text
  for text in ('Y', 'YQ=', 'YWI==', 'YQ=a', '-_8=', 'YQ==YQ==', 'YQ*'):
    with pytest.raises(ValueError):
      rest_service.decode_b64(text)


def _post_raw(endpoint, path, body: bytes, headers) -> tuple:
  request = urllib.request.Request(f'http://{endpoint[1]}{path}', data=body, method='POST',
                                   headers=headers)
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_rest_bodies_headers_and_paths_as_tf_serving(endpoint, images):
  b64 = base64.b64encode(images[0]).decode()
  body = json.dumps({'instances': [{'b64': b64}]}).encode()
  status, plain = _rest(endpoint, f'/v1/models/{MODEL}:predict', None, body)
  assert status == 200
  probability = plain['predictions'][0][contract.PROBABILITY_KEY]
  # float32 outputs are written as their shortest decimal, as TF Serving writes them.
  assert repr(probability) == str(np.float32(probability))
  import gzip  # pylint: disable=g-import-not-at-top
  # gzip-encoded and chunked bodies (TF Serving's HTTP server reads both).
  status, answer = _post_raw(endpoint, f'/v1/models/{MODEL}:predict', gzip.compress(body),
                             {'Content-Encoding': 'gzip'})
  assert (status, answer) == (200, plain)
  status, answer = _post_raw(endpoint, f'/v1/models/{MODEL}:predict', iter([body[:10], body[10:]]),
                             {'Transfer-Encoding': 'chunked'})
  assert (status, answer) == (200, plain)
  # Paths match case-insensitively; names are URL-decoded.
  status, answer = _rest(endpoint, f'/V1/Models/{MODEL}:PREDICT', None, body)
  assert (status, answer) == (200, plain)
  status, answer = _rest(endpoint, '/v1/models/' + ''.join(f'%{ord(c):02X}' for c in MODEL)
                         + ':predict', None, body)
  assert (status, answer) == (200, plain)
  # Columnar inputs: keys other than the signature's inputs are ignored.
  status, answer = _rest(endpoint, f'/v1/models/{MODEL}:predict',
                         {'inputs': {contract.IMAGE_BYTES_INPUT: [{'b64': b64}], 'extra': [1]}})
  assert status == 200 and 'outputs' in answer, answer
  for path, body_json, expected in [
      ('/v1/models', None, 400),  # "Missing model name in request."
      (f'/v1/models/{MODEL}/nonsense', None, 400),  # malformed: INVALID_ARGUMENT
      (f'/v1/models/{MODEL}/versions/99999999999999999999', None, 400),
      (f'/v1/models/{MODEL}:predict', {'instances': [{'b64': b64}], 'signature_name': None}, 400),
      (f'/v1/models/{MODEL}:predict', {'inputs': {'wrong_name': [{'b64': b64}]}}, 400),
  ]:
    status, answer = _rest(endpoint, path, body_json)
    assert status == expected, (path, body_json, answer)
    assert isinstance(answer.get('error'), str) and answer['error'], answer


# ---- rest_get_with_body: a pooled connection never desynchronises -----------------------------

def test_rest_request_bodies_are_drained_on_every_method_and_error(endpoint, field_case):
  """Field case rest_get_with_body (repro.py, repro2.py): a body on a GET, a PUT, an unknown
  path or model, then a plain GET on the same keep-alive connection (what requests.Session
  does). The unread body was parsed as the next request: 400 HTML. Each next GET is the model's
  status (200 JSON), or the server closed the connection and said so."""
  import http.client  # pylint: disable=g-import-not-at-top
  field_case('rest_get_with_body')
  host, port = endpoint[1].rsplit(':', 1)
  body = json.dumps({'instances': [{'b64': 'AAAA'}]}).encode()
  cases = [('GET', f'/v1/models/{MODEL}'), ('GET', f'/v1/models/{MODEL}/metadata'),
           ('GET', f'/v1/models/{MODEL}:predict'), ('PUT', f'/v1/models/{MODEL}:predict'),
           ('DELETE', f'/v1/models/{MODEL}'), ('POST', f'/v1/models/{MODEL}/nonsense'),
           ('POST', '/v1/models/nosuchmodel:predict'), ('POST', f'/v1/models/{MODEL}:predict')]
  for method, path in cases:
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
      connection.request(method, path, body=body, headers={'Content-Type': 'application/json'})
      first = connection.getresponse()
      first_body = first.read()
      assert first.getheader('Content-Type') == 'application/json', (method, path, first_body)
      if first.getheader('Connection', '').lower() == 'close':
        continue  # closed, and said so: a pooled client opens a new connection
      connection.request('GET', f'/v1/models/{MODEL}')
      second = connection.getresponse()
      answer = second.read()
      assert second.status == 200, (method, path, second.status, answer[:200])
      assert json.loads(answer)['model_version_status'], answer
    finally:
      connection.close()
