"""Keeps the command line's first screen for the project's own output.

TensorFlow, XLA and the Google libraries TFX pulls in print start-up chatter
that is not the user's concern and reads like failures:

* XLA's CUDA plugins, compiled into the TensorFlow wheel, print three
  `E ... Unable to register cuFFT/cuDNN/cuBLAS factory` lines on import on
  every machine, and `failed call to cuInit` on one without a GPU. They come
  from C++ before Python's logging exists and ignore TF_CPP_MIN_LOG_LEVEL=2
  (level 3 would also hide real TensorFlow errors).
* Python warnings raised by library imports (deprecations, "upgrade package X").
* TensorFlow's and TFMA's "... is deprecated and will be removed" log lines,
  about calls inside TFX and TFMA, not in the user's config, and TFX's
  "ArtifactQuery.property_predicate is not supported" (MLMD on SQLite).

`filter_native_stderr` sends file descriptor 2 through a small filter process
that drops exactly the lines matching NOISE and passes every other byte on, so
real errors (a C++ check failure, a crash's traceback) still show. The filter
is a separate process so that it flushes what the command wrote even when the
command dies. `-v` (`--verbose`) turns all of this off.
"""

import logging
import os
import re
import subprocess
import sys
import warnings

# Lines of native (C++) output that are never the user's concern; each was seen on
# `fakefaces predict` / `fakefaces run` on this CPU-only machine with tensorflow 2.16.2.
NOISE = (
    r'Unable to register cu(FFT|DNN|BLAS) factory: Attempting to register factory',
    r'failed call to cuInit',
    r'TF-TRT Warning: Could not find TensorRT',
    r'All log messages before absl::InitializeLog\(\) is called are written to STDERR',
    r'oneDNN custom operations are on',
    r'This TensorFlow binary is optimized to use available CPU instructions',
    r'To enable the following instructions: .* in other operations, rebuild TensorFlow',
)

# Library log records the user cannot act on: a library calling a deprecated API
# (TensorFlow's `deprecation` module, TFMA, Beam), and TFX's resolver saying, once per
# component, that MLMD's SQLite store lacks a query feature it then works around.
LIBRARY_NOISE_LOG = re.compile(
    r'is deprecated and will be removed|deprecated and will be removed in a future'
    r'|Instructions for updating:|ArtifactQuery\.property_predicate is not supported')

_FILTERS = []

_FILTER_SCRIPT = r'''
import re, sys
noise = re.compile(sys.argv[1].encode())
out = sys.stderr.buffer
for line in sys.stdin.buffer:
    if not noise.search(line):
        out.write(line)
        out.flush()
'''


def filter_native_stderr() -> None:
  """Routes this process's fd 2 through a child that drops the NOISE lines.

  Does nothing when stderr is not a real file descriptor (e.g. under pytest's
  capture), so tests and library callers see everything.
  """
  try:
    original = os.dup(2)
  except OSError:
    return
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, '-S', '-c', _FILTER_SCRIPT, '|'.join(NOISE)], stdin=subprocess.PIPE,
      stdout=subprocess.DEVNULL, stderr=original, close_fds=True)
  sys.stderr.flush()
  os.dup2(process.stdin.fileno(), 2)  # the child sees EOF only when this process exits
  process.stdin.close()
  os.close(original)
  _FILTERS.append(process)  # kept, so the Popen object is not collected while it runs


def quiet_python_warnings() -> None:
  """Hides deprecation and upgrade warnings that library imports raise; the project's own show."""
  for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
    warnings.filterwarnings('ignore', category=category)
    warnings.filterwarnings('default', category=category, module=r'fakefaces\.')
  warnings.filterwarnings('ignore', message=r'(Distutils was imported before Setuptools'
                          r'|Setuptools is replacing distutils)', category=UserWarning)


class LibraryNoiseLogFilter(logging.Filter):
  """Drops the library log records LIBRARY_NOISE_LOG matches; errors always pass."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR:
      return True
    return not LIBRARY_NOISE_LOG.search(record.getMessage())
