"""The vectors the annotator's classifiers read, by `annotator.features`.

* `dlib_descriptors` (default): dlib's 128-d face descriptor
  (components/face_preparation/descriptors.py), the one ingestion stored with
  `ingest.face_descriptors: true`, else taken from the stored crop.
* `clip_embedding`: the 512-d CLIP ViT-B/16 embedding of the stored crop
  (components/image_encoder/embedder.py), through the embedding cache the
  Trainer's `clip_vit_b16` and `fused` architectures read: same key (the crop's
  bytes), same backbone, so with the same `embedding_cache_dir` the Trainer's
  run reuses these vectors. Measured against the descriptors in
  components/demographic_annotator/README.md ("Features").

A face whose image cannot be described is returned as its exception, never
raised, so one bad face costs that face only.
"""

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from fakefaces.components.demographic_annotator.config import CLIP_EMBEDDING, DLIB_DESCRIPTORS
from fakefaces.components.face_preparation import descriptors
from fakefaces.components.image_encoder import clip
from fakefaces.components.image_encoder.embedder import Embedder

SIZES = {DLIB_DESCRIPTORS: descriptors.DESCRIPTOR_SIZE, CLIP_EMBEDDING: clip.EMBEDDING_SIZE}

Outcome = Union[np.ndarray, Exception]


class DlibDescriptors:
  """dlib's descriptor: the one stored at ingestion, else computed from the crop (~113 CPU-ms)."""
  name = DLIB_DESCRIPTORS
  size = descriptors.DESCRIPTOR_SIZE
  description = ('dlib_face_recognition_resnet_model_v1 on the 5-point shape of the fixed '
                 'aligned-face box (components/face_preparation/descriptors.py)')

  def __init__(self):
    self._describer = descriptors.FaceDescriber()

  def stored(self, example) -> Optional[np.ndarray]:
    return descriptors.from_example(example)

  def describe(self, images: Sequence[bytes]) -> List[Outcome]:
    out = []
    for image in images:
      try:
        out.append(self._describer.describe(image))
      except Exception as e:  # pylint: disable=broad-except  (one bad face never stops a run)
        out.append(e)
    return out

  def summary(self) -> Dict[str, object]:
    return {}


class ClipEmbeddings:
  """The crop's CLIP ViT-B/16 embedding, read from or written to the shared embedding cache."""
  name = CLIP_EMBEDDING
  size = clip.EMBEDDING_SIZE
  description = ('CLIP ViT-B/16 image embedding of the stored crop, float32 tower on the serving '
                 'decode (components/image_encoder/embedder.py), through the embedding cache')

  def __init__(self, settings):
    """`settings`: has `backbone_weights` and `embedding_cache_dir` (an AnnotatorConfig)."""
    self._embedder = Embedder(settings)

  def stored(self, example) -> Optional[np.ndarray]:
    del example  # nothing is stored at ingestion: the cache is the store
    return None

  def _one(self, image: bytes) -> Outcome:
    try:
      return self._embedder([image])[0]
    except Exception as e:  # pylint: disable=broad-except  (one bad face never stops a run)
      return e

  def describe(self, images: Sequence[bytes]) -> List[Outcome]:
    try:
      return list(self._embedder(images, batch_size=len(images) or 1))
    except Exception:  # pylint: disable=broad-except
      # A batch fails as a whole (one undecodable crop): each face alone, so only it is lost.
      return [self._one(image) for image in images]

  def summary(self) -> Dict[str, object]:
    cache = self._embedder.cache
    return {'embedding_cache': cache.folder, 'embeddings_computed': cache.computed,
            'embeddings_reused': cache.reused}


Features = Union[DlibDescriptors, ClipEmbeddings]
DESCRIPTIONS = {kind.name: kind.description for kind in (DlibDescriptors, ClipEmbeddings)}


def make(config) -> Features:
  """The features `config.features` names (an AnnotatorConfig, validated), models loaded."""
  return ClipEmbeddings(config) if config.features == CLIP_EMBEDDING else DlibDescriptors()
