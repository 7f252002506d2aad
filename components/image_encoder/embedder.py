"""Encoded crops to CLIP ViT-B/16 features, computed once per image and backbone.

The Trainer's `clip_vit_b16` and `fused` heads and the DemographicAnnotator's
`features: clip_embedding` embed through this class, so both share one decode
(`preprocess.decode_batch`, the serving signatures'), one float32 tower
(clip.py) and one cache (embedding_cache.py): an image embedded by one is
read back, not recomputed, by the other. One pass of the tower gives both
feature kinds (feature_kinds.py: the embedding and the per-block class tokens),
and the cache keeps both, whichever kind was asked.
"""

from typing import Dict, List, Optional, Protocol, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from fakefaces.components.image_encoder import clip, clip_weights, embedding_cache, preprocess
from fakefaces.components.image_encoder.feature_kinds import CLASS_TOKENS, EMBEDDING


class EncoderSettings(Protocol):
  """What an Embedder reads: fields of TrainConfig and of AnnotatorConfig.

  The tower's input side is TrainConfig's `image_size` where the settings have
  one (a backbone's, checked by the config); the annotator's have none and use
  clip.IMAGE_SIZE (224).
  """
  # The backbone's ONNX file; '' is the one in the installed package (clip_weights.py).
  backbone_weights: str
  # Where embeddings are cached across runs; '' is embedding_cache.default_directory().
  embedding_cache_dir: str


class Embedder:
  """The float32 tower and its cache: encoded crops -> embeddings [n, 512] or class tokens [n, 12, 768].

  Attributes:
    image_size: the tower's input side, px; crops are decoded to it and cached under it.
  """

  def __init__(self, config: EncoderSettings, weights: Optional[Dict[str, np.ndarray]] = None,
               encoder: Optional[keras.Model] = None):
    """`weights` (clip.read_weights) and `encoder` (clip.build_encoder of them) when already loaded.

    Otherwise each is read or built when first used: a run whose crops are all
    cached (e.g. the Evaluator's) never loads the tower.

    Raises:
      ValueError: `encoder`'s input side is not the settings' image_size.
    """
    self.image_size = int(getattr(config, 'image_size', clip.IMAGE_SIZE))
    if encoder is not None and encoder.input_shape[1] != self.image_size:
      raise ValueError(f'Embedder: the encoder reads {encoder.input_shape[1]} px, '
                       f'image_size is {self.image_size}')
    self._weights_file = config.backbone_weights or None
    self._weights = weights
    self._encoder = encoder
    self.cache = embedding_cache.EmbeddingCache(config.embedding_cache_dir, clip_weights.SHA256,
                                                self.image_size)

  @property
  def weights(self) -> Dict[str, np.ndarray]:
    if self._weights is None:
      self._weights = clip.read_weights(self._weights_file)
    return self._weights

  @property
  def encoder(self) -> keras.Model:
    return self._build_encoder()

  def _build_encoder(self) -> keras.Model:
    if self._encoder is None:
      self._encoder = clip.build_encoder(self.weights, self.image_size)
    return self._encoder

  # No autograph: no Python control flow here, and converting the tower's layers costs seconds.
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def _embed(self, image_bytes):
    # The serving signatures' decode (export.py), so cached and served embeddings agree.
    return self.encoder(preprocess.decode_batch(image_bytes, self.image_size, 'rgb'),
                        training=False)

  def compute(self, images: List[bytes]) -> Dict[str, np.ndarray]:
    """Every kind of encoded crops, computed now (no cache): {EMBEDDING: [n, 512],
    CLASS_TOKENS: [n, 12, 768]}, from one pass of the tower."""
    # Built eagerly, before `_embed` is traced: built during the tracing, its variables
    # would be created in that graph and never hold the loaded weights.
    self._build_encoder()
    return {kind: v.numpy() for kind, v in self._embed(tf.constant(images)).items()}

  def __call__(self, images: Sequence[bytes], batch_size: int = 32,
               kind: str = EMBEDDING) -> np.ndarray:
    """`kind`'s vectors [n, ...] of the crops, from the cache or computed (and cached, all kinds)."""
    return self.cache.embed(images, self.compute, batch_size, kind)

  def head_features(self, images: Sequence[bytes], kind: str = EMBEDDING,
                    blocks: Sequence[int] = (), batch_size: int = 32) -> np.ndarray:
    """What a head on `kind` reads, [n, d], from the cache (or the tower, cached).

    The embedding [n, 512], or the class tokens of `blocks` (1..12) flattened
    [n, len(blocks) * 768] by clip.ClassTokenFeatures, the served model's layer.
    """
    vectors = self(images, batch_size, kind)
    if kind != CLASS_TOKENS:
      return vectors
    if not len(vectors):
      return np.zeros([0, len(blocks) * clip.WIDTH], np.float32)
    return clip.ClassTokenFeatures(blocks)(vectors).numpy()
