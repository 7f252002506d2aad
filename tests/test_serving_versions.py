"""Version handling of our server on loopback: hot swaps under load, half-written and broken
versions, the specific-versions policy, an empty base path. The server runs in-process with a
fast poll so each scenario takes seconds; requests go through the official gRPC stubs."""

import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from fakefaces.serving import server as server_lib
import serving_testing as testing
from fakefaces.serving.versions import VersionPolicy

MODEL = 'fakefaces'
POLL_SECONDS = 0.2


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
  return testing.export_tiny_model(str(tmp_path_factory.mktemp('tiny') / 'model'))


@pytest.fixture(scope='module')
def image():
  return testing.encode_images(1, size=40, seed=5)[0]


def _start(base, policy=VersionPolicy()):
  options = server_lib.ServerOptions(model_base_path=str(base), host='127.0.0.1', grpc_port=0,
                                     rest_port=None, policy=policy, poll_seconds=POLL_SECONDS,
                                     load_retry_seconds=0.5)
  return server_lib.ModelServer(options).start()


def _predict(channel, image, version=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  if version is not None:
    request.model_spec.version.value = version
  request.inputs['image_bytes'].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
  return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def _status(channel):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = MODEL
  response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
  names = get_model_status_pb2.ModelVersionStatus.State.Name
  return {s.version: (names(s.state), s.status.error_message) for s in response.model_version_status}


def _wait_for(condition, timeout=60.0, what='condition'):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError(f'timed out after {timeout:.0f}s waiting for {what}')


def test_new_version_swaps_in_under_load_without_failed_requests(tmp_path, saved_model, image):
  testing.push_version(saved_model, str(tmp_path), 1)
  server = _start(tmp_path)
  failures, versions_seen, stop = [], [], threading.Event()

  def load_loop():
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      while not stop.is_set():
        try:
          versions_seen.append(_predict(channel, image).model_spec.version.value)
        except grpc.RpcError as e:
          failures.append(f'{e.code()}: {e.details()}')

  threads = [threading.Thread(target=load_loop) for _ in range(2)]
  try:
    for t in threads:
      t.start()
    _wait_for(lambda: len(versions_seen) >= 10, what='traffic on version 1')
    testing.push_version(saved_model, str(tmp_path), 2, pb_delay_seconds=3 * POLL_SECONDS)
    _wait_for(lambda: versions_seen and versions_seen[-1] == 2, what='version 2 to answer')
    answered_by_2 = len(versions_seen)
    _wait_for(lambda: len(versions_seen) >= answered_by_2 + 10, what='more traffic on version 2')
  finally:
    stop.set()
    for t in threads:
      t.join()
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      status = _status(channel)
    server.stop()
  assert failures == []
  assert set(versions_seen) == {1, 2}
  assert versions_seen.index(2) > 0 and 1 not in versions_seen[versions_seen.index(2) + 20:]
  assert status == {1: ('END', ''), 2: ('AVAILABLE', '')}


def test_half_written_and_broken_versions_are_never_served_and_retried(tmp_path, saved_model, image):
  testing.push_version(saved_model, str(tmp_path), 1)
  server = _start(tmp_path)
  try:
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      # Half-written: everything but saved_model.pb. Not a version yet.
      half = tmp_path / '3'
      shutil.copytree(saved_model, half, ignore=shutil.ignore_patterns('saved_model.pb'))
      time.sleep(5 * POLL_SECONDS)
      assert _predict(channel, image).model_spec.version.value == 1
      assert 3 not in _status(channel)
      # Broken saved_model.pb: the load fails, version 1 keeps serving, the error is reported.
      (half / 'saved_model.pb').write_bytes(b'not a SavedModel protobuf')
      _wait_for(lambda: _status(channel).get(3, ('',))[0] == 'END', what='the failed load of 3')
      assert 'failed' in _status(channel)[3][1].lower()
      assert _predict(channel, image).model_spec.version.value == 1
      with pytest.raises(grpc.RpcError) as raised:
        _predict(channel, image, version=3)
      assert raised.value.code() == grpc.StatusCode.NOT_FOUND
      # The real file arrives: the retry loads it and it takes over.
      shutil.copy2(os.path.join(saved_model, 'saved_model.pb'), half / 'saved_model.pb')
      _wait_for(lambda: _predict(channel, image).model_spec.version.value == 3,
                what='version 3 after the retry')
      assert _status(channel)[3] == ('AVAILABLE', '')
  finally:
    server.stop()


def test_specific_policy_serves_only_the_listed_versions(tmp_path, saved_model, image):
  for version in (1, 2):
    testing.push_version(saved_model, str(tmp_path), version)
  server = _start(tmp_path, VersionPolicy('specific', (1,)))
  try:
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      assert _predict(channel, image).model_spec.version.value == 1
      assert _predict(channel, image, version=1).model_spec.version.value == 1
      with pytest.raises(grpc.RpcError) as raised:
        _predict(channel, image, version=2)
      assert raised.value.code() == grpc.StatusCode.NOT_FOUND
      assert _status(channel) == {1: ('AVAILABLE', '')}
  finally:
    server.stop()


def test_empty_base_path_is_unavailable_until_a_version_is_pushed(tmp_path, saved_model, image):
  server = _start(tmp_path)
  try:
    with grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}') as channel:
      with pytest.raises(grpc.RpcError) as raised:
        _predict(channel, image)
      assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
      with pytest.raises(grpc.RpcError) as raised:
        _status(channel)
      assert raised.value.code() == grpc.StatusCode.NOT_FOUND
      testing.push_version(saved_model, str(tmp_path), 1700000000)
      _wait_for(lambda: server.manager.served_versions() == [1700000000], what='the pushed version')
      assert _predict(channel, image).model_spec.version.value == 1700000000
  finally:
    server.stop()


def test_version_policy_rejects_bad_settings():
  with pytest.raises(ValueError, match='latest'):
    VersionPolicy('newest')
  with pytest.raises(ValueError, match='at least one version'):
    VersionPolicy('specific', ())


def test_versions_without_a_policy_serve_those_versions_and_no_flag_is_ignored(
    saved_model, tmp_path, field_case):
  """Field case serve_versions_without_policy: `serve --versions 1 2` served only version 2
  (the default policy, latest, ignored --versions) and said nothing; version 1 was 404."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import urllib.request  # pylint: disable=g-import-not-at-top
  field_case('serve_versions_without_policy')
  base = tmp_path / 'base'
  for version in (1, 2):
    testing.push_version(saved_model, str(base), version)
  with testing.ServerProcess(str(base), ['--versions', '1', '2']) as server:
    for version in (1, 2):
      with urllib.request.urlopen(f'http://{server.rest_target}/v1/models/fakefaces/versions/'
                                  f'{version}', timeout=60) as response:
        states = json.loads(response.read())['model_version_status']
      assert [(s['version'], s['state']) for s in states] == [(str(version), 'AVAILABLE')], states
  # Combinations where a flag would have no effect are refused, naming it (exit 2).
  refused = {('--version-policy', 'latest', '--versions', '1', '2'): '--versions 1 2 has no effect',
             ('--version-policy', 'specific'): '--version-policy specific: ',
             ('--host', '0.0.0.0'): 'has no bind-address flag'}
  fake_binary = tmp_path / 'bin' / 'tensorflow_model_server'
  fake_binary.parent.mkdir()
  fake_binary.write_text('#!/bin/sh\nexit 3\n')
  fake_binary.chmod(0o755)
  env = dict(os.environ, PATH=f'{fake_binary.parent}{os.pathsep}{os.environ["PATH"]}')
  for flags, message in refused.items():
    # A child process: where a flag is not refused, the command serves (or execs) instead.
    done = subprocess.run([sys.executable, '-m', 'fakefaces.pipeline.cli', 'serve',
                           '--model-base-path', str(base), '--port', '0', '--rest-port', '-1',
                           *flags], capture_output=True, text=True, timeout=120,
                          cwd=testing.PROJECT_ROOT, env=env)
    err = done.stderr.strip()
    assert done.returncode == 2, (flags, done.returncode, err[-500:])
    assert err.startswith('fakefaces serve: ') and message in err and '\n' not in err, (flags, err)
