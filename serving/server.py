"""The local model server: TF Serving's gRPC and REST APIs for one model's versions.

`ModelServer(ServerOptions(...)).start()` loads the newest version, then serves
gRPC (`PredictionService`, `ModelService`) and REST (`/v1/models/...`) on
loopback by default, while a watcher swaps in new versions. Production runs the
real `tensorflow_model_server`; `model_server_command` builds its equivalent
command line (`fakefaces serve` execs it when the binary is on PATH).
"""

import dataclasses
import logging
import os
import threading
from concurrent import futures
from typing import List, Optional

import grpc

from fakefaces.serving import grpc_service, model_config
from fakefaces.serving.registry import ModelRegistry
from fakefaces.serving.rest_service import RestServer
from fakefaces.serving.versions import ModelManager, VersionPolicy

MODEL_SERVER_BINARY = 'tensorflow_model_server'
DEFAULT_MODEL_NAME = 'fakefaces'
DEFAULT_HOST = '127.0.0.1'
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # about 32 full-size PNG photos in one request

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServerOptions:
  model_base_path: str
  model_name: str = DEFAULT_MODEL_NAME
  host: str = DEFAULT_HOST  # loopback unless told otherwise
  grpc_port: int = DEFAULT_GRPC_PORT  # 0 picks a free port
  rest_port: Optional[int] = DEFAULT_REST_PORT  # 0 picks a free port, None disables REST
  policy: VersionPolicy = dataclasses.field(default_factory=VersionPolicy)
  poll_seconds: float = 2.0  # how often the base path is checked for new versions
  load_retry_seconds: float = 30.0  # wait before reloading a version that failed to load
  max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # gRPC message and REST body limit
  grpc_workers: int = 8
  max_concurrent_rpcs: int = 64  # beyond this gRPC answers RESOURCE_EXHAUSTED instead of queueing


def _grpc_address(host: str, port: int) -> str:
  return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


class ModelServer:
  """gRPC + REST server over a `ModelManager` watching `options.model_base_path`."""

  def __init__(self, options: ServerOptions):
    self.options = options
    self.manager = ModelManager(options.model_name, options.model_base_path, options.policy,
                                load_retry_seconds=options.load_retry_seconds)
    self.registry = ModelRegistry([self.manager])
    self.grpc_port: Optional[int] = None
    self.rest_port: Optional[int] = None
    self._grpc_server: Optional[grpc.Server] = None
    self._rest_server: Optional[RestServer] = None
    self._stopped = threading.Event()

  def start(self) -> 'ModelServer':
    opts = self.options
    self.manager.start(opts.poll_seconds)
    self._grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=opts.grpc_workers, thread_name_prefix='grpc'),
        maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
        options=[('grpc.max_receive_message_length', opts.max_request_bytes),
                 ('grpc.max_send_message_length', opts.max_request_bytes),
                 ('grpc.so_reuseport', 0)])
    grpc_service.add_services(self._grpc_server, self.registry, opts.max_request_bytes)
    address = _grpc_address(opts.host, opts.grpc_port)
    try:
      self.grpc_port = self._grpc_server.add_insecure_port(address)
    except RuntimeError as e:
      raise OSError(f'cannot listen for gRPC on {address}: {e}') from None
    if not self.grpc_port:
      raise OSError(f'cannot listen for gRPC on {address} (port in use?)')
    self._grpc_server.start()
    if opts.rest_port is not None:
      try:
        self._rest_server = RestServer(opts.host, opts.rest_port, self.registry,
                                       opts.max_request_bytes)
      except OSError as e:
        self.stop(0)  # the gRPC server and the version poller started above
        raise OSError(f'cannot listen for REST on {_grpc_address(opts.host, opts.rest_port)}: '
                      f'{e.strerror or e}') from None
      self.rest_port = self._rest_server.port
      threading.Thread(target=self._rest_server.serve_forever, kwargs={'poll_interval': 0.5},
                       name='rest', daemon=True).start()
    log.warning('serving model %s from %s: gRPC %s, REST %s', opts.model_name,
                self.manager.base_path, _grpc_address(opts.host, self.grpc_port),
                _grpc_address(opts.host, self.rest_port) if self.rest_port else 'off')
    return self

  def stop(self, grace_seconds: float = 2.0) -> None:
    if self._rest_server is not None:
      self._rest_server.shutdown()
      self._rest_server.server_close()
    if self._grpc_server is not None:
      self._grpc_server.stop(grace_seconds).wait()
    self.manager.stop()
    self._stopped.set()

  def wait(self, timeout: Optional[float] = None) -> bool:
    return self._stopped.wait(timeout)

  def __enter__(self) -> 'ModelServer':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()


def model_server_command(options: ServerOptions, binary: str, config_dir: str) -> List[str]:
  """The `tensorflow_model_server` command serving the same model, ports and policy.

  The real server has no bind-address flag: it listens on all interfaces, so
  production relies on the container's network, not on `host`.
  """
  command = [binary, f'--port={options.grpc_port}',
             f'--file_system_poll_wait_seconds={max(1, int(round(options.poll_seconds)))}',
             f'--grpc_channel_arguments=grpc.max_receive_message_length={options.max_request_bytes}']
  if options.rest_port is not None:
    command.append(f'--rest_api_port={options.rest_port}')
  base_path = os.path.abspath(options.model_base_path)
  if options.policy.kind == 'latest':
    command += [f'--model_name={options.model_name}', f'--model_base_path={base_path}']
  else:
    # Specific versions need a model config file; the flags cannot express them.
    path = os.path.join(config_dir, 'models.config')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(model_config.model_config_text(options.model_name, base_path, 'specific',
                                             options.policy.versions))
    command.append(f'--model_config_file={path}')
  return command
