"""Resumable runs: SIGKILL a real run during training, run it again.

`fakefaces run` runs in its own process group. The test polls MLMD (SQLite)
until the Trainer's execution is RUNNING (a condition, not a delay), then
kills the whole group with SIGKILL, as an OOM killer or a lost node would.
Then:

* nothing was pushed (the Pusher never ran), and the killed Trainer never
  reached COMPLETE;
* running the same config again reuses every component that had finished
  (MLMD CACHED executions, none executed twice), trains, and pushes one
  complete version (saved_model.pb, written last by the Pusher) with its card.
"""

import os
import signal
import subprocess
import sys
import time

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from fakefaces.components.model_card import executor as card_executor
from fakefaces.pipeline import config as config_lib
from fakefaces.pipeline import demo_data, local_runner
from tiny_pipeline import tiny_config, write_config, write_thresholds
from wiring_thresholds import LENIENT

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out


PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE_TRAINER = ('FaceExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'ExampleValidator',
                  'DataGate')
State = metadata_store_pb2.Execution.State


def _executions(metadata_path: str):
  """{component class name: [execution states]} from MLMD; {} while the store is not there."""
  if not os.path.exists(metadata_path):
    return {}
  store = mlmd.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
  result = {}
  for execution_type in store.get_execution_types():
    name = execution_type.name.rsplit('.', 1)[-1]
    states = [e.last_known_state for e in store.get_executions_by_type(execution_type.name)]
    result.setdefault(name, []).extend(states)
  return result


def _trainer_running(metadata_path: str) -> bool:
  try:
    return State.RUNNING in _executions(metadata_path).get('Trainer', [])
  except Exception:  # pylint: disable=broad-except  (the store is being written: ask again)
    return False


def _config_file(root) -> str:
  manifest = demo_data.generate(str(root / 'data'), num_images=240, seed=3, image_size=64)
  thresholds = write_thresholds(root / 'thresholds.yaml', **LENIENT)
  return write_config(tiny_config('resume', root, manifest, thresholds), root / 'resume.yaml')


def test_killed_during_training_resumes_from_cache_and_pushes_once(tmp_path):
  config_path = _config_file(tmp_path)
  config = config_lib.load_config(config_path)
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  with open(tmp_path / 'killed_run.log', 'wb') as log:
    process = subprocess.Popen([sys.executable, '-m', 'fakefaces.pipeline.cli', 'run', '--config',
                                config_path], cwd=PROJECT_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
      deadline = time.monotonic() + 900  # a guard against a hang, not a timing assumption
      while not _trainer_running(config.metadata_path):
        assert process.poll() is None, (
            f'the run ended ({process.returncode}) before the Trainer started: '
            + (tmp_path / 'killed_run.log').read_text()[-3000:])
        assert time.monotonic() < deadline, 'the Trainer never started'
        time.sleep(0.2)
      os.killpg(process.pid, signal.SIGKILL)  # the whole group: the run and any child
    finally:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
      process.wait()
  assert process.returncode == -signal.SIGKILL

  killed = _executions(config.metadata_path)
  assert State.COMPLETE not in killed.get('Trainer', []), 'training finished before the kill'
  for name in BEFORE_TRAINER:
    assert killed[name] == [State.COMPLETE], (name, killed[name])
  assert 'Pusher' not in killed
  serving_dir = tmp_path / 'serving_model'
  assert not serving_dir.exists() or not os.listdir(serving_dir)

  local_runner.run_local(config)  # the same config, again

  resumed = _executions(config.metadata_path)
  for name in BEFORE_TRAINER:  # reused, not executed again
    assert sorted(resumed[name]) == sorted([State.COMPLETE, State.CACHED]), (name, resumed[name])
  assert resumed['Trainer'].count(State.COMPLETE) == 1
  assert resumed['Pusher'] == [State.COMPLETE]
  versions = os.listdir(serving_dir)
  assert len(versions) == 1, versions
  version_dir = serving_dir / versions[0]
  assert (version_dir / 'saved_model.pb').is_file()
  assert (version_dir / card_executor.CARD_JSON).is_file()
  assert (version_dir / card_executor.CARD_HTML).is_file()
