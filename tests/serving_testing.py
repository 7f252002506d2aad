"""Helpers shared by the serving tests and `bench/serve.py`.

* `export_tiny_model`: an untrained 32x32 grayscale `baseline` SavedModel with
  the production signatures (what the Trainer exports, only smaller).
* `push_version`: copies a SavedModel into `<base>/<version>/` the way the TFX
  Pusher does, `saved_model.pb` last.
* `ServerProcess`: `fakefaces serve --builtin` in a subprocess on free loopback
  ports (`serving/process.py` waits for it); `external_target`: an external
  server named by FAKEFACES_SERVING_TARGET.
"""

import io
import os
import re
import shutil
import sys
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from fakefaces.serving import process

SERVING_TARGET_ENV = 'FAKEFACES_SERVING_TARGET'  # "host:grpc_port,rest_port" of a running server
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_tiny_model(export_dir: str, image_size: int = 32, architecture: str = 'baseline',
                      color_mode: str = 'grayscale', face_preparation=None) -> str:
  """Exports an untrained model with the serving signatures to `export_dir`.

  `face_preparation` (a FacePreparation) defaults to dlib alignment with the
  HOG detector only (fast) at 128 px.
  """
  from fakefaces.components.trainer import export, model  # pylint: disable=import-outside-toplevel
  from fakefaces.components.face_preparation.faces import FacePreparation  # pylint: disable=import-outside-toplevel
  channels = 1 if color_mode == 'grayscale' else 3
  keras_model = model.build_model(architecture, image_size, channels)
  export.export_saved_model(keras_model, export_dir, image_size, color_mode,
                            face_preparation=face_preparation or FacePreparation(
                                detector='hog', output_size=128))
  return export_dir


def push_version(saved_model_dir: str, base_path: str, version: int,
                 pb_delay_seconds: float = 0.0) -> str:
  """Copies `saved_model_dir` to `<base_path>/<version>/`, saved_model.pb last (as the Pusher)."""
  target = os.path.join(base_path, str(version))
  shutil.copytree(saved_model_dir, target, ignore=shutil.ignore_patterns('saved_model.pb'))
  if pb_delay_seconds:
    time.sleep(pb_delay_seconds)  # lets a watcher see the half-written directory
  shutil.copy2(os.path.join(saved_model_dir, 'saved_model.pb'), os.path.join(target, 'saved_model.pb'))
  return target


def encode_images(count: int, size: int = 64, seed: int = 0, fmt: str = 'PNG') -> List[bytes]:
  """`count` distinct random RGB images, encoded."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(count):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, fmt)
    images.append(buffer.getvalue())
  return images


def external_target() -> Optional[Tuple[str, str]]:
  """(grpc target, rest target) from FAKEFACES_SERVING_TARGET=host:grpc_port,rest_port, if set."""
  value = os.environ.get(SERVING_TARGET_ENV)
  if not value:
    return None
  match = re.fullmatch(r'(?P<host>.+):(?P<grpc>\d+),(?P<rest>\d+)', value.strip())
  if match is None:
    raise ValueError(f'{SERVING_TARGET_ENV} must look like host:grpc_port,rest_port, got {value!r}')
  return f'{match["host"]}:{match["grpc"]}', f'{match["host"]}:{match["rest"]}'


class ServerProcess(process.ServerProcess):
  """`fakefaces serve --builtin` as a child process on free loopback ports: the command line, tested."""

  def __init__(self, model_base_path: str, extra_args: Sequence[str] = (),
               startup_timeout: float = 120.0, log_path: Optional[str] = None):
    command = [sys.executable, '-m', 'fakefaces.pipeline.cli', 'serve', '--builtin',
               '--model-base-path', model_base_path, '--host', '127.0.0.1',
               '--port', '0', '--rest-port', '0', *extra_args]
    super().__init__(command, startup_timeout, log_path, cwd=PROJECT_ROOT)
