"""Model versions under a TF Serving base path: discovery, loading, hot swaps.

The TFX Pusher writes `<base>/<unix timestamp>/` and copies `saved_model.pb`
last, so a numbered directory without `saved_model.pb` is still being written
and is ignored. `ModelManager.poll()` (run by a watcher thread every few
seconds) loads a new version *beside* the one being served and swaps the
served set only once the new one has loaded and answered a warm-up call;
in-flight requests keep the `Servable` they resolved, so a swap never fails a
request. A version whose load fails keeps the old one serving and is retried
later (at once when its files change).
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import grpc

from fakefaces.serving import status as status_lib
from fakefaces.serving.servable import Servable

SAVED_MODEL_PB = 'saved_model.pb'
POLICIES = ('latest', 'specific')

# tensorflow_serving.apis.get_model_status_pb2.ModelVersionStatus.State values.
LOADING, AVAILABLE, UNLOADING, END = 'LOADING', 'AVAILABLE', 'UNLOADING', 'END'

log = logging.getLogger(__name__)


def list_versions(base_path: str) -> Dict[int, str]:
  """{version: dir} of numbered directories that hold a saved_model.pb."""
  try:
    names = os.listdir(base_path)
  except (FileNotFoundError, NotADirectoryError):
    return {}
  versions = {}
  for name in names:
    path = os.path.join(base_path, name)
    if name.isdigit() and os.path.isfile(os.path.join(path, SAVED_MODEL_PB)):
      versions[int(name)] = path
  return versions


def _fingerprint(path: str) -> Tuple:
  """Changes whenever the version's files are (re)written, to retry a failed load at once."""
  stats = []
  for rel in (SAVED_MODEL_PB, os.path.join('variables', 'variables.index')):
    try:
      st = os.stat(os.path.join(path, rel))
      stats.append((st.st_size, st.st_mtime_ns))
    except OSError:
      stats.append(None)
  return tuple(stats)


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """Which versions to serve: the newest one ('latest') or the listed ones ('specific')."""
  kind: str = 'latest'
  versions: Tuple[int, ...] = ()

  def __post_init__(self):
    if self.kind not in POLICIES:
      raise ValueError(f'version policy must be one of {POLICIES}, got {self.kind!r}')
    if self.kind == 'specific' and not self.versions:
      raise ValueError('version policy "specific" needs at least one version')


@dataclasses.dataclass
class VersionStatus:
  state: str
  error_code: grpc.StatusCode = grpc.StatusCode.OK
  error_message: str = ''


@dataclasses.dataclass
class _LoadFailure:
  fingerprint: Tuple
  attempts: int
  retry_at: float


class ModelManager:
  """Serves the versions of one model under `base_path` according to `policy`."""

  def __init__(self, name: str, base_path: str, policy: VersionPolicy = VersionPolicy(),
               load_retry_seconds: float = 30.0, max_load_retries: int = 5):
    self.name = name
    self.base_path = os.path.abspath(base_path)
    self.policy = policy
    self.load_retry_seconds = load_retry_seconds
    self.max_load_retries = max_load_retries
    self._serving: Mapping[int, Servable] = {}  # replaced whole, never mutated: lock-free reads
    self._status: Dict[int, VersionStatus] = {}
    self._failures: Dict[int, _LoadFailure] = {}
    self._pending: Dict[int, Servable] = {}  # loaded this poll, not yet swapped in (_poll_lock)
    self._poll_lock = threading.Lock()
    self._status_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  # ---- requests -------------------------------------------------------------

  def resolve(self, version: Optional[int] = None) -> Servable:
    """The servable for `version` (None = the newest served); NOT_FOUND/UNAVAILABLE otherwise."""
    serving = self._serving
    if version is None:
      if serving:
        return serving[max(serving)]
      raise status_lib.ServingError(
          grpc.StatusCode.UNAVAILABLE,
          f'Model {self.name} has no version available yet (none loaded from {self.base_path}); '
          'retry later')
    if version in serving:
      return serving[version]
    state = self.version_status().get(version)
    if state is not None and state.state == LOADING:
      raise status_lib.ServingError(grpc.StatusCode.UNAVAILABLE,
                                    f'Version {version} of model {self.name} is still loading')
    raise status_lib.ServingError(
        grpc.StatusCode.NOT_FOUND,
        f'Servable not found for request: Specific({self.name}, {version}); '
        f'served versions: {sorted(serving) or "none"}')

  def served_versions(self) -> List[int]:
    return sorted(self._serving)

  def version_status(self) -> Dict[int, VersionStatus]:
    with self._status_lock:
      return {v: dataclasses.replace(s) for v, s in self._status.items()}

  # ---- watching the base path -----------------------------------------------

  def start(self, poll_seconds: float) -> None:
    """Polls once now (so a server starts with its model loaded), then every `poll_seconds`."""
    self.poll()
    self._thread = threading.Thread(target=self._watch, args=(poll_seconds,),
                                    name=f'version-watcher-{self.name}', daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=60)

  def _watch(self, poll_seconds: float) -> None:
    while not self._stop.wait(poll_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        # The watcher must survive anything the file system throws at it.
        log.exception('polling %s failed', self.base_path)

  def poll(self) -> None:
    """Loads what the policy wants from disk, then swaps the served set in one assignment."""
    with self._poll_lock:
      on_disk = list_versions(self.base_path)
      if self.policy.kind == 'latest':
        wanted = self._newest_loadable(on_disk)
      else:
        wanted = [v for v in self.policy.versions if v in on_disk and self._ensure_loaded(v, on_disk[v])]
      new_serving = {v: self._loaded_or_current(v) for v in wanted}
      old_serving = self._serving
      if set(new_serving) == set(old_serving):
        return
      self._serving = new_serving  # the swap: requests from now on resolve the new set
      for version in sorted(set(new_serving) - set(old_serving)):
        log.warning('model %s: serving version %d', self.name, version)
      for version in sorted(set(old_serving) - set(new_serving)):
        # In-flight requests still hold their Servable; it is freed when they finish.
        self._set_status(version, UNLOADING)
        self._set_status(version, END)
        log.warning('model %s: unloaded version %d', self.name, version)

  def _newest_loadable(self, on_disk: Dict[int, str]) -> List[int]:
    """'latest': the newest version that loads; stops at the one already served."""
    for version in sorted(on_disk, reverse=True):
      if version in self._serving or self._ensure_loaded(version, on_disk[version]):
        return [version]
    return []

  def _ensure_loaded(self, version: int, path: str) -> bool:
    if version in self._serving or version in self._pending:
      return True
    if not self._may_try(version, path):
      return False
    self._set_status(version, LOADING)
    started = time.monotonic()
    try:
      servable = Servable.load(self.name, version, path)
    except Exception as e:  # pylint: disable=broad-except
      # A half-copied or broken version must never take the server down.
      message = status_lib.clean_tf_message(str(e))[:2000]
      failure = self._failures.get(version)
      attempts = failure.attempts + 1 if failure and failure.fingerprint == _fingerprint(path) else 1
      self._failures[version] = _LoadFailure(_fingerprint(path), attempts,
                                             time.monotonic() + self.load_retry_seconds)
      self._set_status(version, END, grpc.StatusCode.UNKNOWN,
                       f'Loading {path} failed (attempt {attempts}): {message}')
      log.warning('model %s: version %d failed to load (attempt %d): %s', self.name, version,
                  attempts, message)
      return False
    self._failures.pop(version, None)
    self._pending[version] = servable
    self._set_status(version, AVAILABLE)
    log.info('model %s: loaded version %d in %.1fs', self.name, version, time.monotonic() - started)
    return True

  def _loaded_or_current(self, version: int) -> Servable:
    servable = self._pending.pop(version, None)
    return servable if servable is not None else self._serving[version]

  def _may_try(self, version: int, path: str) -> bool:
    failure = self._failures.get(version)
    if failure is None or failure.fingerprint != _fingerprint(path):
      return True
    return failure.attempts < self.max_load_retries and time.monotonic() >= failure.retry_at

  def _set_status(self, version: int, state: str, code: grpc.StatusCode = grpc.StatusCode.OK,
                  message: str = '') -> None:
    with self._status_lock:
      self._status[version] = VersionStatus(state, code, message)


def parse_versions(text: Sequence[str]) -> Tuple[int, ...]:
  """['3', '5,7'] -> (3, 5, 7); names the bad entry."""
  versions = []
  for item in text:
    for part in str(item).split(','):
      part = part.strip()
      if not part:
        continue
      if not part.isdigit():
        raise ValueError(f'version must be a non-negative integer, got {part!r}')
      versions.append(int(part))
  return tuple(versions)
