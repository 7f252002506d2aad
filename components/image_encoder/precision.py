"""`train.precision`: which Keras mixed-precision policy the Trainer uses, and why.

Values:

* `float32`: everything in float32 (the reference).
* `mixed_bfloat16`: layers compute in bfloat16, variables stay float32 (no loss
  scaling needed: bfloat16 has float32's exponent range).
* `mixed_float16`: layers compute in float16, variables float32, dynamic loss
  scaling (Keras wraps the optimizer). For GPUs without bfloat16 (before Ampere).
* `auto` (default): `mixed_bfloat16` where the hardware computes bfloat16
  natively, `mixed_float16` on an older NVIDIA GPU (what the Trainer always did
  on GPUs), else `float32`:
  - a GPU of compute capability >= 8.0 (A100, H100/H200, RTX 30xx and later);
  - no GPU, and a CPU whose /proc/cpuinfo flags list `avx512_bf16` or
    `amx_bf16` (Cooper Lake, Sapphire Rapids and later Xeons, Zen 4 and later).
  Elsewhere oneDNN emulates bfloat16 and it is slower than float32: measured on
  this project's 2-core AMD EPYC without those flags (docs/performance.md,
  "Mixed precision"; `python bench/train.py --variants default,bf16`).

In every policy the output layer (`model.OUTPUT_LAYER`, dtype float32) and the
loss stay float32, and the exported SavedModel is rebuilt in float32
(`float32_copy`): its signatures take and return the same dtypes as always, and
it serves at float32 speed on machines without bfloat16 instructions.
"""

import contextlib
import os
from typing import Iterator, Optional

import tensorflow as tf
import tf_keras as keras

from fakefaces.components.image_encoder.policy_names import PRECISIONS

# /proc/cpuinfo flags of native bfloat16 arithmetic (dot products / tile matmuls).
CPU_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
# Ampere (8.0) introduced bfloat16 tensor cores.
GPU_BF16_MIN_CAPABILITY = (8, 0)


# Read instead of /proc/cpuinfo when set: a file standing in for another CPU's, so the
# suite can run `auto` as it resolves on a CPU with bfloat16 (`pytest --cpu-bf16`, tests/conftest.py).
CPUINFO_ENV = 'FAKEFACES_CPUINFO'


def cpu_bf16_flags(cpuinfo: Optional[str] = None) -> list:
  """The bfloat16 flags this CPU reports (empty when none, or where the file is absent).

  `cpuinfo`: the file to read; default $FAKEFACES_CPUINFO, else /proc/cpuinfo.
  """
  cpuinfo = cpuinfo or os.environ.get(CPUINFO_ENV) or '/proc/cpuinfo'
  if not os.path.exists(cpuinfo):
    return []
  with open(cpuinfo, encoding='utf-8', errors='replace') as f:
    for line in f:
      if line.startswith('flags'):
        flags = set(line.split(':', 1)[1].split())
        return [flag for flag in CPU_BF16_FLAGS if flag in flags]
  return []


def gpu_capability() -> Optional[tuple]:
  """Compute capability (major, minor) of the first visible GPU, or None without a GPU."""
  gpus = tf.config.list_physical_devices('GPU')
  if not gpus:
    return None
  details = tf.config.experimental.get_device_details(gpus[0])
  return tuple(details.get('compute_capability') or (0, 0))


def resolve(setting: str, cpuinfo: Optional[str] = None,
            capability: Optional[tuple] = ...) -> str:
  """The Keras policy name `setting` means on this machine (see the module doc).

  `capability` overrides the GPU probe (None: no GPU); tests use it.

  Raises:
    ValueError: `setting` is not one of PRECISIONS (names `train.precision`).
  """
  if setting not in PRECISIONS:
    raise ValueError(f'train.precision {setting!r} is not one of {list(PRECISIONS)}')
  if setting != 'auto':
    return setting
  if capability is ...:
    capability = gpu_capability()
  if capability is not None:
    return 'mixed_bfloat16' if capability >= GPU_BF16_MIN_CAPABILITY else 'mixed_float16'
  return 'mixed_bfloat16' if cpu_bf16_flags(cpuinfo) else 'float32'


@contextlib.contextmanager
def policy(name: str) -> Iterator[str]:
  """Sets the global Keras policy `name` (a resolved one) and restores the previous after."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield name
  finally:
    keras.mixed_precision.set_global_policy(previous)


def float32_copy(model: keras.Model) -> keras.Model:
  """`model` itself when it computes in float32, else the same graph and weights in float32.

  Mixed-precision variables are float32 already, so the copy holds exactly the
  trained values; only the compute dtype of each layer changes.
  """
  if all(layer.dtype_policy.compute_dtype == 'float32' for layer in model.layers):
    return model
  config = model.get_config()
  for layer in config['layers']:
    layer['config']['dtype'] = 'float32'
  with policy('float32'):
    copy = model.__class__.from_config(config)
  copy.set_weights(model.get_weights())
  return copy
