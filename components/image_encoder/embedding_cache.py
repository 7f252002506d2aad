"""Frozen-backbone features computed once per image and backbone, reused by every later run.

Key: sha256 of the encoded image bytes (what the Trainer decodes; a changed
image is a new key, so it is recomputed) under a folder named by the
backbone's weights sha256 (other weights never see these vectors) and the
tower's input size (`folder_name`: 224 px, the native size, keeps the bare
sha256 folder, so caches written before other sizes existed stay valid; every
other size has its own folder, so a 224 vector never serves a 128 tower), and the
feature kind (feature_kinds.py): each kind has its own array and its own
lookup, so an `embedding` is never read as `class_tokens` or the reverse.
Storage: `<directory>/<folder_name>/embeddings-<sha256 of the keys>.npz`,
one file per batch of new images, each with `keys` (str [n]) and one array
per kind the backbone computed for them: `embeddings` (float32 [n, 512]) and
`class_tokens` (float32 [n, 12, 768]). One pass of the backbone gives every
kind (clip.build_tower), and all are written, so a run reading one kind and a
later run reading the other pay the backbone once per image. A file without
a kind's array (written before that kind existed) leaves its images missing
for that kind only. Files are written to a temporary name and renamed, so an
interrupted run leaves no half file; a run reads each kind's array of every
file of its backbone once, when it first asks for that kind.
"""

import hashlib
import io
import os
import zipfile
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from fakefaces.components.image_encoder.feature_kinds import (CLASS_TOKENS, EMBEDDING,
                                                               NATIVE_IMAGE_SIZE)

# Each kind's array in the files ('embeddings' for EMBEDDING, the name the files had
# with one kind, so they stay readable).
ARRAYS = {EMBEDDING: 'embeddings', CLASS_TOKENS: CLASS_TOKENS}


def default_directory() -> str:
  """$XDG_CACHE_HOME/fakefaces/embeddings, or ~/.cache/fakefaces/embeddings without it."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'fakefaces', 'embeddings')


def folder_name(backbone_sha256: str, image_size: int = NATIVE_IMAGE_SIZE) -> str:
  """The cache folder of one backbone at one input size: '<sha256[:16]>' at 224 px,
  '<sha256[:16]>-<size>px' at any other (e.g. '2d2da5e254d60501-128px')."""
  base = backbone_sha256[:16]
  return base if image_size == NATIVE_IMAGE_SIZE else f'{base}-{int(image_size)}px'


def image_key(image_bytes: bytes) -> str:
  return hashlib.sha256(image_bytes).hexdigest()


class EmbeddingCache:
  """Features of one backbone at one input size, by kind and image key; `embed` computes only
  the missing ones.

  Attributes:
    computed: images run through the backbone (each pass gives every kind), over
      this object's `embed` calls.
    reused: images whose vectors of the asked kind were read from the cache, over
      the same calls (a second run over the same images, one kind or both: computed 0).
  """

  def __init__(self, directory: str, backbone_sha256: str, image_size: int = NATIVE_IMAGE_SIZE):
    """`image_size`: the tower's input side, px (train.image_size), which the vectors depend on."""
    self.folder = os.path.join(directory or default_directory(),
                               folder_name(backbone_sha256, image_size))
    self._vectors: Dict[str, Dict[str, np.ndarray]] = {}  # kind -> key -> vector
    self.computed = self.reused = 0

  def _files(self) -> List[str]:
    if not tf.io.gfile.isdir(self.folder):
      return []
    return [os.path.join(self.folder, name) for name in sorted(tf.io.gfile.listdir(self.folder))
            if name.startswith('embeddings-') and name.endswith('.npz')]

  def vectors(self, kind: str) -> Dict[str, np.ndarray]:
    """Key -> vector of `kind`, read from the files on first use.

    Raises:
      ValueError: `kind` is not one of ARRAYS.
    """
    if kind not in ARRAYS:
      raise ValueError(f'embedding cache: feature kind {kind!r} is not one of {list(ARRAYS)}')
    if kind not in self._vectors:
      self._vectors[kind] = {}
      for path in self._files():
        self._read(path, kind)
    return self._vectors[kind]

  def _read(self, path: str, kind: str) -> None:
    try:
      with tf.io.gfile.GFile(path, 'rb') as f:
        content = f.read()
      with np.load(io.BytesIO(content)) as stored:
        if ARRAYS[kind] in stored.files:  # otherwise its images are missing for this kind
          self._vectors[kind].update(zip(stored['keys'].tolist(), stored[ARRAYS[kind]]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
      # A damaged file costs a recomputation only.
      logging.warning('embedding cache: %s unreadable (%s); its images are recomputed', path, e)

  def _write(self, keys: List[str], vectors: Mapping[str, np.ndarray]) -> None:
    tf.io.gfile.makedirs(self.folder)
    name = 'embeddings-' + hashlib.sha256(''.join(keys).encode()).hexdigest()[:24] + '.npz'
    path = os.path.join(self.folder, name)
    temporary = path + '.tmp'
    buffer = io.BytesIO()  # np.savez seeks, which gfile's writer cannot
    np.savez(buffer, keys=np.asarray(keys),
             **{ARRAYS[kind]: np.asarray(v, np.float32) for kind, v in vectors.items()})
    with tf.io.gfile.GFile(temporary, 'wb') as f:
      f.write(buffer.getvalue())
    tf.io.gfile.rename(temporary, path, overwrite=True)

  def embed(self, images: Sequence[bytes],
            compute: Callable[[List[bytes]], Mapping[str, np.ndarray]], batch_size: int = 32,
            kind: str = EMBEDDING) -> np.ndarray:
    """float32 [len(images), ...]: `kind`'s cached vectors, and `compute`'s for the others.

    `compute(batch of bytes)` returns {kind: float32 [batch, ...]} for every kind
    the backbone gives (`kind` among them); all are cached, written after each
    batch, so an interrupted run keeps what it computed.

    Raises:
      ValueError: `kind` is unknown, or `compute` did not return it.
    """
    cached = self.vectors(kind)
    keys = [image_key(b) for b in images]
    missing = list(dict.fromkeys(k for k in keys if k not in cached))
    new = set(missing)
    self.reused += sum(1 for k in keys if k not in new)
    by_key = dict(zip(keys, images))
    for start in range(0, len(missing), batch_size):
      batch = missing[start:start + batch_size]
      computed = {name: np.asarray(v, np.float32)
                  for name, v in compute([by_key[k] for k in batch]).items()}
      if kind not in computed or not set(computed) <= set(ARRAYS):
        raise ValueError(f'embedding cache: the backbone computed {sorted(computed)}; '
                         f'{kind!r} was asked, the kinds are {list(ARRAYS)}')
      self._write(batch, computed)
      for name, v in computed.items():
        # A kind not read yet is left to its first read, which finds this file.
        if name in self._vectors:
          self._vectors[name].update(zip(batch, v))
      self.computed += len(batch)
    if not keys:
      return np.zeros([0, 0], np.float32)
    return np.stack([cached[k] for k in keys])
