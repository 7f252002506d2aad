"""ServingCanary executor: TFX's InfraValidator LOAD_AND_QUERY, without Docker.

1. Skips the server entirely when the FairnessGate did not bless (the model
   will not be pushed anyway) and passes the refusal on.
2. Copies the candidate SavedModel to `<report>/model_base/<model name>/1/` and
   starts the serving stack on it: `tensorflow_model_server` when it is on
   PATH, otherwise the project's server (`serving.process.start_builtin`) in a
   subprocess on loopback, so a model that crashes the server cannot take the
   pipeline down. It waits until GetModelStatus says AVAILABLE.
3. Discovers every signature from the SavedModel itself (not from a list), so
   signatures added later are covered without edits, and calls each over gRPC
   Predict with
   * real inputs: a DT_STRING `image_bytes` input gets the JPEG bytes of real
     test-split examples, an `examples` input the serialized tf.Examples, any
     other input a generic value built from its TensorSpec; the answer must be
     OK, hold every declared output with one row per input, finite numbers,
     and `fake_probability` within [0, 1];
   * bad inputs: bytes that are no image / no tf.Example, or a string where a
     number is expected; the answer must be INVALID_ARGUMENT (what TF Serving
     answers for bad input), never INTERNAL/UNKNOWN or a dead server;
   and finally calls the default signature with real inputs again: the server
   must have survived the bad requests.
4. Writes report.json (every call, its status and what was wrong) and a
   ModelBlessing (TFX evaluator constants) with `blessed` = gate AND canary,
   which is the blessing the Pusher obeys and the one the
   latest-blessed-model resolver reads to find "the model in production".
"""

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_executor
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import path_utils

from fakefaces.components.shared import blessings, component_keys as keys, example_files, reports
from fakefaces.components.shared import features, ports
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.shared.config_base import from_json
from fakefaces.components.serving_canary.config import CanaryConfig, validate
from fakefaces.serving import client as client_lib
from fakefaces.serving import process as process_lib
from fakefaces.serving import server as server_lib
from fakefaces.serving import status as status_lib

MODEL_NAME = server_lib.DEFAULT_MODEL_NAME
GATE_NOT_BLESSED = 'FairnessGate did not bless the model: not loaded in the serving stack'


# ---- inputs built from each signature's TensorSpecs ----------------------------------

def read_examples(files: List[str], count: int) -> List[bytes]:
  """The first `count` serialized tf.Examples of `files` (example_files.split_files)."""
  return [record.numpy() for record in example_files.records(files).take(count)]


def image_bytes_of(serialized: List[bytes]) -> List[bytes]:
  images = []
  for record in serialized:
    example = tf.train.Example.FromString(record)
    images.append(example.features.feature[features.IMAGE].bytes_list.value[0])
  return images


def signature_specs(saved_model_dir: str) -> Dict[str, Dict[str, Any]]:
  """{signature: {'inputs': {key: (dtype, shape)}, 'outputs': {key: (dtype, shape)}}} of 'serve'."""
  saved_model = loader_impl.parse_saved_model(saved_model_dir)
  graphs = [m for m in saved_model.meta_graphs if 'serve' in m.meta_info_def.tags]
  if not graphs:
    raise ValueError(f'{saved_model_dir} has no MetaGraph tagged serve')

  def spec(info) -> Tuple[tf.DType, List[Optional[int]]]:
    shape = tf.TensorShape(info.tensor_shape)
    return tf.as_dtype(info.dtype), (shape.as_list() if shape.rank is not None else None)

  return {name: {'inputs': {k: spec(v) for k, v in sig.inputs.items()},
                 'outputs': {k: spec(v) for k, v in sig.outputs.items()}}
          for name, sig in graphs[0].signature_def.items()
          if not name.startswith('__')}  # '__saved_model_init_op' is no signature


def real_input(key: str, dtype: tf.DType, shape, examples: List[bytes]) -> np.ndarray:
  batch = len(examples)
  if dtype == tf.string:
    values = examples if key == contract.EXAMPLES_INPUT else image_bytes_of(examples)
    if shape is not None and len(shape) == 0:
      return np.array(values[0], dtype=object)
    return np.array(values, dtype=object)
  dims = [batch] + [d if d is not None else 1 for d in (shape or [None])[1:]]
  return np.zeros(dims, dtype=dtype.as_numpy_dtype)


def bad_input(key: str, dtype: tf.DType, shape, batch: int) -> np.ndarray:
  if dtype == tf.string:
    junk = contract.BAD_INPUTS.get(key, b'not an image at all')
    return np.array([junk] * batch if shape is None or len(shape) else junk, dtype=object)
  return np.array(['not a number'] * batch, dtype=object)  # wrong dtype


# ---- one Predict call, judged ----------------------------------------------------------

def _predict(stub, signature: str, inputs: Dict[str, np.ndarray], timeout: float):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL_NAME
  request.model_spec.signature_name = signature
  for key, value in inputs.items():
    dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
  return stub.Predict(request, timeout=timeout)


def check_answer(outputs: Dict[str, np.ndarray], expected_outputs: Dict[str, Any],
                 batch: int) -> List[str]:
  """What is wrong with a successful answer to real inputs ([] when it is as specified)."""
  problems = []
  missing = sorted(set(expected_outputs) - set(outputs))
  if missing:
    problems.append(f'outputs {missing} missing')
  for key, value in outputs.items():
    if value.ndim == 0 or value.shape[0] != batch:
      problems.append(f'output {key!r} has shape {list(value.shape)}, expected {batch} rows')
    if value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
      problems.append(f'output {key!r} has NaN or infinite values')
  probability = outputs.get(contract.PROBABILITY_KEY)
  if probability is not None and probability.dtype.kind == 'f' and (
      np.any(probability < 0) or np.any(probability > 1)):
    problems.append(f'{contract.PROBABILITY_KEY} outside [0, 1]: {probability.tolist()}')
  return problems


def query_signature(stub, name: str, spec: Dict[str, Any], examples: List[bytes],
                    timeout: float) -> List[Dict[str, Any]]:
  """The real-input call and the bad-input call of one signature, each judged."""
  calls = []
  real = {k: real_input(k, dtype, shape, examples) for k, (dtype, shape) in spec['inputs'].items()}
  call = {'signature': name, 'input': 'real', 'inputs': sorted(real), 'batch': len(examples)}
  try:
    response = _predict(stub, name, real, timeout)
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    call['code'] = 'OK'
    call['problems'] = check_answer(outputs, spec['outputs'], len(examples))
    call['outputs'] = {k: list(v.shape) for k, v in outputs.items()}
  except grpc.RpcError as e:
    call['code'], call['problems'] = e.code().name, [f'{e.code().name}: {e.details()}'[:500]]
  call['ok'] = not call['problems']
  calls.append(call)

  bad = {k: bad_input(k, dtype, shape, len(examples))
         for k, (dtype, shape) in spec['inputs'].items()}
  call = {'signature': name, 'input': 'bad', 'inputs': sorted(bad), 'batch': len(examples)}
  try:
    _predict(stub, name, bad, timeout)
    call['code'] = 'OK'
    call['problems'] = ['bad input was accepted (expected INVALID_ARGUMENT)']
  except grpc.RpcError as e:
    call['code'] = e.code().name
    call['detail'] = (e.details() or '')[:300]
    call['problems'] = ([] if e.code() == grpc.StatusCode.INVALID_ARGUMENT else
                        [f'bad input answered {e.code().name} (expected INVALID_ARGUMENT): '
                         f'{e.details()}'[:500]])
  call['ok'] = not call['problems']
  calls.append(call)
  return calls


# ---- the serving stack ------------------------------------------------------------------

class _ModelServer:
  """tensorflow_model_server (when on PATH) or the project's server, as a child process."""

  def __init__(self, base_path: str, config: CanaryConfig, log_path: str):
    binary = shutil.which(server_lib.MODEL_SERVER_BINARY)
    if config.server == 'tensorflow_model_server' and not binary:
      raise RuntimeError(f'canary.server is tensorflow_model_server but '
                         f'{server_lib.MODEL_SERVER_BINARY} is not on PATH')
    self.kind = ('tensorflow_model_server' if binary and config.server != 'builtin'
                 else 'builtin')
    self._builtin = self._process = None
    if self.kind == 'builtin':
      self._builtin = process_lib.start_builtin(
          server_lib.ServerOptions(model_base_path=base_path, model_name=MODEL_NAME,
                                   host='127.0.0.1', grpc_port=0, rest_port=None),
          startup_timeout=config.startup_timeout_seconds, log_path=log_path)
      self.grpc_target = self._builtin.grpc_target
    else:
      options = server_lib.ServerOptions(model_base_path=base_path, model_name=MODEL_NAME,
                                         grpc_port=ports.free_loopback_port(), rest_port=None)
      command = server_lib.model_server_command(options, binary, tempfile.mkdtemp())
      self._log = open(log_path, 'wb')  # pylint: disable=consider-using-with
      self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
      self.grpc_target = f'127.0.0.1:{options.grpc_port}'

  def stop(self) -> None:
    if self._builtin is not None:
      self._builtin.stop()
    if self._process is not None:
      self._process.terminate()
      try:
        self._process.wait(30)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
      self._log.close()


def wait_available(target: str, timeout: float) -> Tuple[bool, str]:
  """(True, '') once version 1 is AVAILABLE; (False, why) when it ENDs or time runs out."""
  deadline = time.monotonic() + timeout
  last = 'no answer'
  with client_lib.ServingClient(target, model_name=MODEL_NAME, timeout=10) as client:
    while time.monotonic() < deadline:
      try:
        states = client.model_status()
        last = f'version states {states}'
        if states.get(1) == 'AVAILABLE':
          return True, ''
        if states.get(1) == 'END':
          return False, f'the model did not load in the serving stack ({last})'
      except status_lib.ServingError as e:
        last = str(e)
      time.sleep(0.5)
  return False, f'the model was not AVAILABLE within {timeout:.0f}s ({last})'


def _copy_tree(src: str, dst: str) -> None:
  for dirpath, _, filenames in tf.io.gfile.walk(src):
    target = os.path.join(dst, os.path.relpath(dirpath, src))
    tf.io.gfile.makedirs(target)
    for name in filenames:
      tf.io.gfile.copy(os.path.join(dirpath, name), os.path.join(target, name), overwrite=True)


def run_canary(saved_model_dir: str, examples: List[bytes], config: CanaryConfig,
               work_dir: str, log_path: Optional[str] = None) -> Dict[str, Any]:
  """Loads `saved_model_dir` in the serving stack and queries every signature; the report."""
  report: Dict[str, Any] = {'model_dir': saved_model_dir, 'calls': [], 'problems': [],
                            'server': None, 'signatures': []}
  try:
    specs = signature_specs(saved_model_dir)
  except (OSError, ValueError, IOError) as e:
    report['problems'].append(f'not a loadable SavedModel: {e}')
    return _verdict(report)
  report['signatures'] = sorted(specs)
  if not examples:
    report['problems'].append('no real examples to query with: insufficient evidence')
    return _verdict(report)
  base_path = os.path.join(work_dir, 'model_base', MODEL_NAME)
  _copy_tree(saved_model_dir, os.path.join(base_path, '1'))
  server = None
  try:
    server = _ModelServer(base_path, config, log_path or os.path.join(work_dir, 'server.log'))
    report['server'] = server.kind
    available, why = wait_available(server.grpc_target, config.startup_timeout_seconds)
    if not available:
      report['problems'].append(why)
      return _verdict(report)
    with grpc.insecure_channel(server.grpc_target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for name in sorted(specs):
        report['calls'] += query_signature(stub, name, specs[name], examples,
                                           config.request_timeout_seconds)
      # The server must still answer after every bad request.
      default = (contract.SERVING_SIGNATURE if contract.SERVING_SIGNATURE in specs
                 else sorted(specs)[0])
      after = query_signature(stub, default, specs[default], examples,
                              config.request_timeout_seconds)[0]
      after['input'] = 'real, after the bad requests'
      report['calls'].append(after)
  except (RuntimeError, OSError) as e:
    report['problems'].append(f'the serving stack failed: {e}')
  finally:
    if server is not None:
      server.stop()
  for call in report['calls']:
    report['problems'] += [f"{call['signature']} ({call['input']} input): {p}"
                           for p in call['problems']]
  return _verdict(report)


def _verdict(report: Dict[str, Any]) -> Dict[str, Any]:
  report['passed'] = not report['problems'] and bool(report['calls'])
  return report


def write_blessing(blessing, model, blessed: bool, reasons: List[str]) -> None:
  """A ModelBlessing as TFX's Evaluator writes it: what the Pusher and the resolver read."""
  blessings.write_model_blessing(blessing, model, blessed, reasons)


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Loads the gate-blessed candidate in a server, calls every signature, blesses or refuses.

    A model the FairnessGate refused is not loaded: the report says so and the
    blessing is negative.

    Args:
      input_dict: `model` (the candidate Model), `model_blessing` (the
        FairnessGate's ModelBlessing), `examples` (Examples: the test split
        gives the real queries); one artifact each.
      output_dict: `report` (ServingCanaryReport: report.json with every call,
        server.log) and `blessing` (ModelBlessing the Pusher obeys), one
        artifact each.
      exec_properties: `config` (CanaryConfig as JSON).

    Raises:
      ConfigError: a canary field is invalid (named by its dotted path).
    """
    config = from_json(CanaryConfig, exec_properties[keys.CONFIG_KEY], 'canary')
    validate(config)
    model = artifact_utils.get_single_instance(input_dict[keys.MODEL_KEY])
    gate_blessing = artifact_utils.get_single_instance(input_dict[keys.MODEL_BLESSING_KEY])
    report_dir = artifact_utils.get_single_uri(output_dict[keys.REPORT_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[keys.BLESSING_KEY])
    if not model_utils.is_model_blessed(gate_blessing):
      report = _verdict({'model_dir': model.uri, 'calls': [], 'server': None, 'signatures': [],
                         'problems': [GATE_NOT_BLESSED], 'skipped': True})
    else:
      examples = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES_KEY])
      test_files = example_files.split_files(examples, features.TEST)
      with tempfile.TemporaryDirectory(prefix='canary-') as work_dir:
        report = run_canary(path_utils.serving_model_path(model.uri),
                            read_examples(test_files, config.num_examples), config, work_dir,
                            log_path=os.path.join(report_dir, 'server.log'))
    reports.write_report(report_dir, report, default=str)
    write_blessing(blessing, model, report['passed'], report['problems'])
