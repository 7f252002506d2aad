"""Beam's portable runner on this machine: a job service and an external SDK worker pool.

The portable runner protocol is what Flink, Spark and Dataflow Runner v2 use
for Python: the pipeline goes to a job service as a proto, and SDK workers,
started apart from the driver, run every DoFn from what they unpickle and
import themselves. Running the data steps on it here shows what a cluster
would show: a DoFn that needs process-local state, or a name only the driver
has, fails.

    with portable_beam.local_services(log_dir) as services:
      executor.run_standalone(config, out, services.beam_args)

starts `python -m apache_beam.runners.portability.local_job_service_main` and
`python -m apache_beam.runners.worker.worker_pool_main` (this interpreter's
folder first on PATH: the pool starts SDK workers as a bare `python`), each on
a free port, and stops both, and any SDK worker left, by their process ids.

Beam's local job service runs a job on one SDK worker (its FnApiRunner keeps
`_num_workers = 1` on the job-service path; `--direct_num_workers` is read
only by the DirectRunner). `ExternalWorkersRunner` runs the same engine in the
driver with N SDK workers from the same pool.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator, List, NamedTuple, Tuple

from apache_beam.options import pipeline_options
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.transforms import environments

from fakefaces.components.shared import ports

JOB_SERVICE = 'apache_beam.runners.portability.local_job_service_main'
WORKER_POOL = 'apache_beam.runners.worker.worker_pool_main'
_START_ATTEMPTS = 3  # the pool's port is picked here and may be taken before it binds


def beam_args(job_port: int, worker_pool_port: int) -> List[str]:
  """The pipeline args that send a job to the job service with workers from the pool."""
  return ['--runner=PortableRunner', f'--job_endpoint=localhost:{job_port}',
          '--environment_type=EXTERNAL', f'--environment_config=localhost:{worker_pool_port}']


class Services(NamedTuple):
  beam_args: List[str]  # PortableRunner to the job service, SDK workers from the pool
  worker_pool_port: int
  processes: Tuple[subprocess.Popen, ...]  # (job service, worker pool)


def _start(module: str, args: List[str], log_path: str) -> subprocess.Popen:
  env = dict(os.environ)
  # Not os.path.realpath: a venv's python finds its packages through its own path.
  env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
  with open(log_path, 'wb') as log:  # a file, not a pipe: SDK workers log here too and never block
    return subprocess.Popen([sys.executable, '-m', module] + args, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # its own group: its SDK workers join it


def _wait_for(process: subprocess.Popen, log_path: str, read, deadline: float, what: str):
  """Polls `read()` (None until ready) until it answers, the process exits or time is up."""
  while True:
    value = read()
    if value is not None:
      return value
    if process.poll() is not None or time.monotonic() > deadline:
      with open(log_path, 'rb') as f:
        tail = f.read()[-3000:].decode('utf-8', 'replace')
      state = f'exited with {process.returncode}' if process.poll() is not None else 'timed out'
      raise RuntimeError(f'{what} did not start ({state}); its log {log_path}:\n{tail}')
    time.sleep(0.1)


def _read_port_file(path: str):
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read().strip()
    return int(text) if text else None
  except (OSError, ValueError):
    return None


def _listening(port: int):
  """`port` once something accepts connections on localhost:port, else None."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(1.0)
    return port if s.connect_ex(('localhost', port)) == 0 else None


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
  """Stops `process` and whatever it started in its session, by their ids.

  SIGINT first: the worker pool then stops its SDK workers itself (its atexit
  handler); what is left after `timeout_s` is killed through the process group
  that `_start` created for it.
  """
  if process.poll() is None:
    process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
  try:
    os.killpg(process.pid, signal.SIGKILL)  # SDK workers the pool did not stop
  except ProcessLookupError:
    pass


def group_alive(process: subprocess.Popen) -> bool:
  """Whether any process of `process`'s group (it and what it started) still exists."""
  try:
    os.killpg(process.pid, 0)
    return True
  except ProcessLookupError:
    return False
  except PermissionError:
    return True


@contextlib.contextmanager
def local_services(log_dir: str, start_timeout_s: float = 120.0) -> Iterator[Services]:
  """Starts the job service and the worker pool; yields their `Services`.

  Args:
    log_dir: where `job_service.log` and `worker_pool.log` (with the SDK
      workers' logs) and the job service's port file are written.
    start_timeout_s: how long each service may take to listen.

  Raises:
    RuntimeError: a service exited or did not listen in time (its log's tail).
  """
  os.makedirs(log_dir, exist_ok=True)
  port_file = os.path.join(log_dir, 'job_service.port')
  job_log, pool_log = (os.path.join(log_dir, f'{n}.log') for n in ('job_service', 'worker_pool'))
  processes = []
  try:
    processes.append(_start(JOB_SERVICE, ['--port', '0', '--port_file', port_file], job_log))
    deadline = time.monotonic() + start_timeout_s
    # The pool logs its port only at INFO, which it never prints: pick it here.
    for attempt in range(_START_ATTEMPTS):
      pool_port = ports.free_loopback_port()
      pool = _start(WORKER_POOL, ['--service_port', str(pool_port)], pool_log)
      processes.append(pool)
      try:
        _wait_for(pool, pool_log, lambda: _listening(pool_port), deadline,
                  'the Beam SDK worker pool')
        break
      except RuntimeError:
        if pool.poll() is None or attempt == _START_ATTEMPTS - 1:
          raise  # timed out, or the port was taken every time
    job_port = _wait_for(processes[0], job_log, lambda: _read_port_file(port_file), deadline,
                         'the Beam job service')
    yield Services(beam_args(job_port, pool_port), pool_port, tuple(processes))
  finally:
    for process in reversed(processes):
      stop(process)


class ExternalWorkersRunner(fn_runner.FnApiRunner):
  """Beam's FnApiRunner in the driver, with N SDK workers from an external worker pool.

  The job service runs a job on one SDK worker; this runs the same engine in
  the driver (no Job API) and asks the pool for `--direct_num_workers` of them,
  each a separate process that unpickles and imports the DoFns, and gives each
  stage's input to them in parts, as a cluster spreads it over its workers:

      --runner=fakefaces.pipeline.portable_beam.ExternalWorkersRunner
      --environment_type=EXTERNAL --environment_config=localhost:Q --direct_num_workers=N
  """

  def run_pipeline(self, pipeline, options):
    # FnApiRunner's own default is an SDK worker inside this process.
    self._default_environment = environments.Environment.from_options(
        options.view_as(pipeline_options.PortableOptions))
    return super().run_pipeline(pipeline, options)


def external_workers_args(worker_pool_port: int, workers: int) -> List[str]:
  """The pipeline args of `ExternalWorkersRunner` with `workers` SDK workers from the pool."""
  return [f'--runner={__name__}.{ExternalWorkersRunner.__name__}',
          '--environment_type=EXTERNAL', f'--environment_config=localhost:{worker_pool_port}',
          f'--direct_num_workers={workers}']
