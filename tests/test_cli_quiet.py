"""The `fakefaces` command line's first screen shows the project's output, not library noise.

Each test runs the real `fakefaces` command (or a Python process using the same
filter) in a subprocess, because the noise is written by TensorFlow's C++ code
to file descriptor 2, where pytest's capture cannot see it.
"""

import os
import subprocess
import sys

import serving_testing as testing

CUDA_NOISE = 'Unable to register'


def _fakefaces(*args, timeout=300):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # what a user's shell has: nothing set
  return subprocess.run([sys.executable, '-m', 'fakefaces.pipeline.cli', *args],
                        capture_output=True, text=True, timeout=timeout, env=env,
                        cwd=testing.PROJECT_ROOT, check=False)


def test_help_prints_no_library_noise():
  result = _fakefaces('--help')
  assert result.returncode == 0
  assert 'usage: fakefaces' in result.stdout
  assert result.stderr == ''


def test_predict_without_a_server_prints_only_its_own_error(tmp_path):
  photo = tmp_path / 'face.jpg'
  photo.write_bytes(b'not read: the server is asked first')
  # Port 1 on loopback: nothing listens, so the client fails fast with UNAVAILABLE.
  result = _fakefaces('predict', str(photo), '--server', '127.0.0.1:1', '--timeout', '5')
  assert result.returncode != 0
  assert CUDA_NOISE not in result.stderr, result.stderr
  assert 'Warning' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert lines and all(line.startswith('fakefaces predict:') for line in lines), result.stderr


def test_the_filter_drops_only_the_noise_and_survives_a_crash():
  """Real errors pass, in order, even when the process aborts right after writing them."""
  script = (
      'import os\n'
      'from fakefaces.pipeline import quiet\n'
      'quiet.filter_native_stderr()\n'
      "os.write(2, b'E cuda_dnn.cc:10575] Unable to register cuDNN factory: Attempting to "
      "register factory for plugin cuDNN when one has already been registered\\n')\n"
      "os.write(2, b'F real_op.cc:12] Check failed: a real error\\n')\n"
      "os.write(2, b'E cuda_driver.cc:282] failed call to cuInit: UNKNOWN ERROR (303)\\n')\n"
      "os.write(2, b'partial line without newline')\n"
      'os.abort()\n')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, timeout=120,
                          check=False, cwd=testing.PROJECT_ROOT)
  assert result.returncode != 0
  assert result.stderr == b'F real_op.cc:12] Check failed: a real error\npartial line without newline'


def test_library_log_noise_is_dropped_and_errors_pass():
  import logging  # pylint: disable=import-outside-toplevel
  from fakefaces.pipeline import quiet  # pylint: disable=import-outside-toplevel

  def record(level, message):
    return logging.LogRecord('tensorflow', level, __file__, 1, message, None, None)

  keep = quiet.LibraryNoiseLogFilter().filter
  assert not keep(record(logging.WARNING, 'ArtifactQuery.property_predicate is not supported.'))
  assert not keep(record(logging.WARNING, 'From tfma/x.py:1: RecordReader (from tf.io) is '
                                          'deprecated and will be removed in a future version.'))
  assert keep(record(logging.WARNING, 'FairnessGate: 3 checks lack examples'))
  assert keep(record(logging.ERROR, 'op X is deprecated and will be removed; and it failed'))
