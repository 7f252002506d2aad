"""Frozen-backbone embeddings computed once per image and backbone, reused by every later run.

Key: sha256 of the encoded image bytes (what the Trainer decodes; a changed
image is a new key, so it is recomputed) under a folder named by the
backbone's weights sha256 (other weights never see these vectors). Storage:
`<directory>/<backbone sha256[:16]>/embeddings-<sha256 of the keys>.npz`, one
file per batch of new images, each with `keys` (str [n]) and `embeddings`
(float32 [n, d]); written to a temporary name and renamed, so an interrupted
run leaves no half file. A run reads all files of its backbone once.
"""

import hashlib
import io
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf
from absl import logging


def default_directory() -> str:
  """$XDG_CACHE_HOME/fakefaces/embeddings, or ~/.cache/fakefaces/embeddings without it."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'fakefaces', 'embeddings')


def image_key(image_bytes: bytes) -> str:
  return hashlib.sha256(image_bytes).hexdigest()


class EmbeddingCache:
  """Embeddings of one backbone, by image key; `embed` computes only the missing ones.

  Attributes:
    computed, reused: images embedded by the backbone / read from the cache, over
      this object's `embed` calls (a second run over the same images: computed 0).
  """

  def __init__(self, directory: str, backbone_sha256: str):
    self.folder = os.path.join(directory or default_directory(), backbone_sha256[:16])
    self._vectors: Dict[str, np.ndarray] = {}
    self.computed = self.reused = 0
    if tf.io.gfile.isdir(self.folder):
      for name in sorted(tf.io.gfile.listdir(self.folder)):
        if name.startswith('embeddings-') and name.endswith('.npz'):
          self._read(os.path.join(self.folder, name))

  def _read(self, path: str) -> None:
    try:
      with tf.io.gfile.GFile(path, 'rb') as f:
        content = f.read()
      with np.load(io.BytesIO(content)) as stored:
        self._vectors.update(zip(stored['keys'].tolist(), stored['embeddings']))
    except (OSError, ValueError, KeyError) as e:  # a damaged file costs a recomputation only
      logging.warning('embedding cache: %s unreadable (%s); its images are recomputed', path, e)

  def _write(self, keys: List[str], vectors: np.ndarray) -> None:
    tf.io.gfile.makedirs(self.folder)
    name = 'embeddings-' + hashlib.sha256(''.join(keys).encode()).hexdigest()[:24] + '.npz'
    path = os.path.join(self.folder, name)
    temporary = path + '.tmp'
    buffer = io.BytesIO()  # np.savez seeks, which gfile's writer cannot
    np.savez(buffer, keys=np.asarray(keys), embeddings=vectors.astype(np.float32))
    with tf.io.gfile.GFile(temporary, 'wb') as f:
      f.write(buffer.getvalue())
    tf.io.gfile.rename(temporary, path, overwrite=True)

  def embed(self, images: Sequence[bytes],
            compute: Callable[[List[bytes]], np.ndarray], batch_size: int = 32) -> np.ndarray:
    """float32 [len(images), d]: cached vectors, and `compute(batch of bytes)` for the others.

    New vectors are written after each batch, so an interrupted run keeps what it computed.
    """
    keys = [image_key(b) for b in images]
    missing = list(dict.fromkeys(k for k in keys if k not in self._vectors))
    new = set(missing)
    self.reused += sum(1 for k in keys if k not in new)
    by_key = dict(zip(keys, images))
    for start in range(0, len(missing), batch_size):
      batch = missing[start:start + batch_size]
      vectors = np.asarray(compute([by_key[k] for k in batch]), np.float32)
      self._write(batch, vectors)
      self._vectors.update(zip(batch, vectors))
      self.computed += len(batch)
    if not keys:
      return np.zeros([0, 0], np.float32)
    return np.stack([self._vectors[k] for k in keys])
