"""The project's server in a child process, and the line that says it is ready.

`start_builtin(ServerOptions(...))` runs `ModelServer` in a child process
(`python -m fakefaces.serving.process OPTIONS_JSON`) and returns once it
listens, with the ports it picked. The ServingCanary starts the candidate model
this way: a model that crashes the server (a native crash in a TensorFlow op)
then takes down only the child, never the pipeline that asked.

A server is ready when it prints `ready_line` on stdout; `fakefaces serve`
prints the same line, so `ServerProcess` can also wait for the command line
started in a subprocess (what the serving tests do).
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence, Tuple

from fakefaces.serving.server import ModelServer, ServerOptions
from fakefaces.serving.versions import VersionPolicy

# What `ready_line` prints, e.g. 'serving fakefaces versions [1] gRPC 127.0.0.1:40123 REST off'.
READY_LINE = re.compile(r'^serving (?P<name>\S+) versions .* gRPC (?P<grpc>\S+) REST (?P<rest>\S+)')


def ready_line(model_server: ModelServer) -> str:
  """The one line a started server prints: its model, served versions and listening addresses."""
  options = model_server.options
  rest = f'{options.host}:{model_server.rest_port}' if model_server.rest_port else 'off'
  return (f'serving {options.model_name} versions '
          f'{model_server.manager.served_versions() or "none yet"}'
          f' gRPC {options.host}:{model_server.grpc_port} REST {rest}')


def serve_until_stopped(model_server: ModelServer) -> None:
  """Prints `ready_line` for a started server, then serves until SIGTERM or SIGINT."""
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: _stop_in_background(model_server))
  print(ready_line(model_server), flush=True)
  while not model_server.wait(1.0):
    pass


def _stop_in_background(model_server: ModelServer) -> None:
  # Signal handlers run on the main thread, which is blocked in wait(): stop elsewhere.
  threading.Thread(target=model_server.stop, daemon=True).start()


class ServerProcess:
  """A server started by `command` in a child process; ready once it prints `ready_line`.

  Attributes:
    grpc_target: 'host:port' of its gRPC API.
    rest_target: 'host:port' of its REST API, or 'off'.

  Raises:
    RuntimeError: the child exited before it was ready, or was not ready within
      `startup_timeout` seconds (then it is stopped).
  """

  def __init__(self, command: Sequence[str], startup_timeout: float = 120.0,
               log_path: Optional[str] = None, cwd: Optional[str] = None):
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
               PYTHONUNBUFFERED='1')
    self._log = open(log_path or os.devnull, 'wb')  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=self._log)
    self.grpc_target, self.rest_target = self._wait_ready(startup_timeout)

  def _wait_ready(self, timeout: float) -> Tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      line = self.process.stdout.readline().decode('utf-8', 'replace')
      if not line and self.process.poll() is not None:
        raise RuntimeError(f'the server process exited with {self.process.returncode} before it '
                           'was ready')
      match = READY_LINE.match(line)
      if match:
        return match['grpc'], match['rest']
    self.stop()
    raise RuntimeError(f'the server process was not ready within {timeout:.0f}s')

  def stop(self, timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the child's exit status."""
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)
      try:
        self.process.wait(timeout)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self.process.stdout.close()
    self._log.close()
    return self.process.returncode

  def __enter__(self) -> 'ServerProcess':
    return self

  def __exit__(self, *exc) -> None:
    self.stop()


def start_builtin(options: ServerOptions, startup_timeout: float = 120.0,
                  log_path: Optional[str] = None) -> ServerProcess:
  """`ModelServer(options)` in a child process, returned once it listens.

  Port 0 in `options` picks a free port; the chosen ones are the result's
  `grpc_target` and `rest_target`. The child's stderr (its log) goes to
  `log_path`, or nowhere.
  """
  command = [sys.executable, '-m', 'fakefaces.serving.process',
             json.dumps(dataclasses.asdict(options))]
  return ServerProcess(command, startup_timeout, log_path)


def _options_from_json(text: str) -> ServerOptions:
  values = json.loads(text)
  policy = values.pop('policy')
  return ServerOptions(**values, policy=VersionPolicy(policy['kind'], tuple(policy['versions'])))


def main(argv: Sequence[str]) -> int:
  """The child's side of `start_builtin`: serve `argv[1]` (ServerOptions as JSON) until SIGTERM."""
  model_server = ModelServer(_options_from_json(argv[1]))
  try:
    model_server.start()
  except OSError as e:
    print(f'fakefaces serving process: {e}', file=sys.stderr)
    return 1
  serve_until_stopped(model_server)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
