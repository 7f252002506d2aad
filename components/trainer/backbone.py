"""`train.architecture: clip_vit_b16`: a head trained on frozen CLIP embeddings, served with the backbone.

The backbone (image_encoder/clip.py) runs once per image: each split's crops are decoded by
`preprocess.decode_batch` (the serving signatures' decode), embedded in
float32 and cached (image_encoder/embedding_cache.py); the head then trains on the 512-d
vectors in seconds with the same loop as the CNNs (training.train). The
exported model is the tower followed by the head in one float32 Keras model,
so the SavedModel computes the embedding itself from the encoded bytes and
every signature and client works unchanged.

Heads (`train.head`), both after a fixed standardisation of each embedding
dimension (mean and variance of the train split, a Normalization layer inside
the model): 'linear', one sigmoid unit (logistic regression, the linear probe
of Ojha et al., CVPR 2023); 'mlp', a 128-unit ReLU layer (dropout
`train.dropout`) before it.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from fakefaces.components.shared import example_files, features
from fakefaces.components.image_encoder import clip, precision
from fakefaces.components.image_encoder.embedder import Embedder
from fakefaces.components.trainer import data, model as model_lib, training
from fakefaces.components.trainer.config import TrainConfig



def read_records(file_patterns: Sequence[str]) -> Tuple[List[bytes], np.ndarray]:
  """(encoded images, int labels [n]) of every tf.Example in the files, in file order."""
  ds = example_files.records(example_files.files_matching(file_patterns))
  images, labels = [], []
  for batch in ds.batch(1024).map(lambda s: tf.io.parse_example(s, data.RECORD_SPEC)):
    images.extend(batch[features.IMAGE].numpy().tolist())
    labels.extend(batch[features.LABEL].numpy().tolist())
  return images, np.asarray(labels, np.int64)


def embedding_dataset(embeddings: np.ndarray, labels: np.ndarray, config: TrainConfig,
                      training: bool) -> tf.data.Dataset:
  """(embeddings [b, 512], float labels [b]) batches; shuffled (and repeated with steps_per_epoch) for training."""
  ds = tf.data.Dataset.from_tensor_slices((embeddings.astype(np.float32),
                                           labels.astype(np.float32)))
  if training:
    ds = ds.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.repeat() if config.steps_per_epoch else ds
  return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def build_head(config: TrainConfig, train_embeddings: np.ndarray, learning_rate=None) -> keras.Model:
  """The compiled head: features [b, d] -> P(fake) [b, 1] (see the module doc).

  d is the width of `train_embeddings` [n, d] (clip.EMBEDDING_SIZE for the embedding).
  """
  inputs = keras.Input((train_embeddings.shape[-1],), name='embedding')
  normalize = keras.layers.Normalization(
      axis=-1, mean=train_embeddings.mean(0), variance=train_embeddings.var(0) + 1e-6,
      name='head_standardize')
  x = normalize(inputs)
  if config.head == 'mlp':
    x = keras.layers.Dense(clip.MLP_HEAD_UNITS, activation='relu', name='head_dense')(x)
    if config.dropout:
      x = keras.layers.Dropout(config.dropout, seed=config.seed, name='head_dropout')(x)
  outputs = keras.layers.Dense(1, activation='sigmoid', dtype='float32',
                               name=model_lib.OUTPUT_LAYER)(x)
  head = keras.Model(inputs, outputs, name=f'{clip.NAME}_{config.head}_head')
  head.compile(optimizer=model_lib.OPTIMIZERS[config.optimizer](
      learning_rate=config.learning_rate if learning_rate is None else learning_rate),
               loss='binary_crossentropy',
               metrics=[keras.metrics.BinaryAccuracy(name='accuracy'),
                        keras.metrics.AUC(name='auc')])
  return head


def compose(head: keras.Model, weights: Dict[str, np.ndarray]) -> keras.Model:
  """One float32 model: image [b, 224, 224, 3] in [0, 1] -> tower -> `head` -> P(fake) [b, 1].

  The head's layers are rebuilt in float32 from their configs and given the
  trained weights (a head trained under a mixed policy serves in float32, like
  the CNNs' export; float32 variables hold the exact trained values).
  """
  with precision.policy('float32'):
    inputs = keras.Input((clip.IMAGE_SIZE, clip.IMAGE_SIZE, 3), name='image')
    x = clip.build_tower(inputs)
    trained = []
    for layer in head.layers[1:]:
      layer_config = dict(layer.get_config(), dtype='float32')
      copy = layer.__class__.from_config(layer_config)
      x = copy(x)
      trained.append((copy, layer.get_weights()))
    full = keras.Model(inputs, x, name=clip.NAME)
  for copy, values in trained:
    copy.set_weights(values)
  clip.load_weights(full, weights)
  return full


def train_head(config: TrainConfig, train_files: Sequence[str], eval_files: Sequence[str],
               run_dir: str, embedder: Optional[Embedder] = None):
  """Embeds both splits (cached), trains the head, returns (full float32 model, eval data, summary).

  Eval data: (P(fake) [n] of the float32 head on the eval embeddings, int labels
  [n]), what the operating point is chosen on: the served model's scores up to
  the tower's batch-order rounding (docs/clip_backbone.md).
  """
  embedder = embedder or Embedder(config)
  train_images, train_labels = read_records(train_files)
  eval_images, eval_labels = read_records(eval_files)
  train_embeddings = embedder(train_images, config.batch_size)
  eval_embeddings = embedder(eval_images, config.batch_size)
  class_counts = {features.REAL: int((train_labels == features.REAL).sum()),
                  features.FAKE: int((train_labels == features.FAKE).sum())}
  head, summary = training.train(
      config, embedding_dataset(train_embeddings, train_labels, config, training=True),
      embedding_dataset(eval_embeddings, eval_labels, config, training=False),
      class_counts, run_dir,
      build_fn=lambda rate: build_head(config, train_embeddings, rate))
  summary['embeddings'] = {'computed': embedder.cache.computed, 'reused': embedder.cache.reused,
                           'cache': embedder.cache.folder}
  training.write_history(summary, run_dir)
  full = compose(head, embedder.weights)
  # The served head: the full model's layers after the tower, on the cached embeddings.
  served_head = keras.Model(full.get_layer(clip.EMBEDDING_LAYER).output, full.output)
  scores, labels = training.predict_probabilities(
      served_head, embedding_dataset(eval_embeddings, eval_labels, config, training=False))
  return full, (scores, labels), summary
