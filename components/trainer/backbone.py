"""`train.architecture: clip_vit_b16`: a head trained on frozen CLIP features, served with the backbone.

The backbone (image_encoder/clip.py) runs once per image: each split's crops are decoded by
`preprocess.decode_batch` (the serving signatures' decode), embedded in
float32 and cached (image_encoder/embedding_cache.py); the head then trains on the cached
vectors in seconds with the same loop as the CNNs (training.train). The
exported model is the tower followed by the head in one float32 Keras model,
so the SavedModel computes the features itself from the encoded bytes and
every signature and client works unchanged.

What the head reads (`train.clip_features`): the 512-d embedding, or the class
tokens of `train.clip_blocks` (all 12 blocks: 9,216 features), flattened by
clip.ClassTokenFeatures, the same layer on the cached tokens and in the served model.

Heads (`train.head`), both after a fixed standardisation of each feature
(mean and variance of the train split, a Normalization layer inside the
model): 'linear', one sigmoid unit (logistic regression, the linear probe of
Ojha et al., CVPR 2023); 'mlp', a 128-unit ReLU layer (dropout
`train.dropout`) before it. For class tokens the per-feature standardisation
is also the per-block one: the blocks' tokens differ in scale (mean norm 4.1 to
8.5 by block, docs/clip_backbone.md), and each feature's own train mean and
variance take that out; no per-block LayerNormalization, which would divide
each image's token by its own statistics (dropping its norm) and add
parameters for a few thousand training crops.

`train.head_ensemble` N > 1 trains N heads at seeds seed ... seed + N - 1 on
the same cached features and merges them exactly into one head whose logit is
the members' mean logit (`merge_heads`): the same layers, N times wider, so
`compose`, export and every signature take it unchanged.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from fakefaces.components.shared import example_files, features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.image_encoder import clip, clip_weights, embedding_cache, precision
from fakefaces.components.image_encoder.embedder import Embedder
from fakefaces.components.image_encoder.feature_kinds import CLASS_TOKENS
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


def head_features(embedder: Embedder, images: Sequence[bytes], config: TrainConfig) -> np.ndarray:
  """What the head of `config` reads, [n, d], from the cache (or the tower, cached): Embedder.head_features."""
  return embedder.head_features(images, config.clip_features, config.head_blocks,
                                config.batch_size)


def feature_size(config: TrainConfig) -> int:
  """d of the head's input [b, d]: 512, or len(blocks) x 768 for class tokens (9,216 for all 12)."""
  if config.clip_features == CLASS_TOKENS:
    return len(config.head_blocks) * clip.WIDTH
  return clip.EMBEDDING_SIZE


def embedding_dataset(embeddings: np.ndarray, labels: np.ndarray, config: TrainConfig,
                      training: bool) -> tf.data.Dataset:
  """(features [b, d], float labels [b]) batches; shuffled (and repeated with steps_per_epoch) for training."""
  ds = tf.data.Dataset.from_tensor_slices((embeddings.astype(np.float32),
                                           labels.astype(np.float32)))
  if training:
    ds = ds.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.repeat() if config.steps_per_epoch else ds
  return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


STANDARDIZE_LAYER = 'head_standardize'
HIDDEN_LAYER = 'head_dense'  # the mlp head's ReLU layer


def build_head(config: TrainConfig, train_embeddings: np.ndarray, learning_rate=None,
               units: int = clip.MLP_HEAD_UNITS) -> keras.Model:
  """The compiled head: features [b, d] -> P(fake) [b, 1] (see the module doc).

  d is `train_embeddings`' [n, d]: 512 for the embedding, len(blocks) * 768 for class tokens.
  `units`: the mlp head's hidden width (a merged ensemble of N heads has N x MLP_HEAD_UNITS).
  """
  inputs = keras.Input((train_embeddings.shape[1],), name='embedding')
  normalize = keras.layers.Normalization(
      axis=-1, mean=train_embeddings.mean(0), variance=train_embeddings.var(0) + 1e-6,
      name=STANDARDIZE_LAYER)
  x = normalize(inputs)
  if config.head == 'mlp':
    x = keras.layers.Dense(units, activation='relu', name=HIDDEN_LAYER)(x)
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


def _standardisation(head: keras.Model) -> List[np.ndarray]:
  """The head's Normalization: its mean and variance (given at build, in its config) and weights."""
  layer = head.get_layer(STANDARDIZE_LAYER)
  layer_config = layer.get_config()
  return ([np.asarray(layer_config.get(k), np.float32) for k in ('mean', 'variance')]
          + layer.get_weights())


def merge_heads(heads: Sequence[keras.Model]) -> keras.Model:
  """One head whose logit is the mean of `heads`' logits: sigmoid(mean_i logit_i), exactly.

  A mean of logits is linear in the last layer's inputs, so N heads are one
  wider head: linear heads, the mean kernel [d, 1] and bias; mlp heads, the
  members' hidden layers side by side (kernel [d, N x units], biases
  concatenated) and their output kernels stacked and divided by N [N x units, 1],
  the mean output bias. Dropout is the identity at inference. The layers keep
  their names and order (float32), so `compose` and export take the result as
  one head. One head is returned as it is.

  Raises:
    ValueError: no heads, members with different layers, or different
      standardisations (members must train on the same embeddings).
  """
  if not heads:
    raise ValueError('merge_heads: no heads to merge')
  first = heads[0]
  if len(heads) == 1:
    return first
  names = [layer.name for layer in first.layers]
  reference = _standardisation(first)
  for i, head in enumerate(heads[1:], 1):
    if [layer.name for layer in head.layers] != names:
      raise ValueError(f'merge_heads: member {i} has layers {[l.name for l in head.layers]}, '
                       f'member 0 has {names}')
    theirs = _standardisation(head)
    if len(theirs) != len(reference) or not all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(reference, theirs)):
      raise ValueError(f'merge_heads: member {i}\'s {STANDARDIZE_LAYER} differs from member 0\'s '
                       '(members must be trained on the same embeddings)')
  n = len(heads)
  kernels, biases = zip(*(head.get_layer(model_lib.OUTPUT_LAYER).get_weights() for head in heads))
  weights = {model_lib.OUTPUT_LAYER: [np.mean(kernels, 0), np.mean(biases, 0)]}
  if HIDDEN_LAYER in names:
    hidden_kernels, hidden_biases = zip(*(head.get_layer(HIDDEN_LAYER).get_weights()
                                          for head in heads))
    weights[HIDDEN_LAYER] = [np.concatenate(hidden_kernels, 1), np.concatenate(hidden_biases)]
    weights[model_lib.OUTPUT_LAYER][0] = np.concatenate(kernels, 0) / n
  units = {HIDDEN_LAYER: weights[HIDDEN_LAYER][0].shape[1]} if HIDDEN_LAYER in weights else {}
  with precision.policy('float32'):
    inputs = keras.Input(first.input_shape[1:], name=first.layers[0].name)
    x, copies = _float32_layers(first, inputs, units)
    merged = keras.Model(inputs, x, name=first.name)
  for copy, layer in copies:
    copy.set_weights(weights.get(layer.name, layer.get_weights()))
  return merged


def _float32_layers(head: keras.Model, x, units: Optional[Dict[str, int]] = None):
  """(output, [(copy, layer)]): `head`'s layers after its input rebuilt float32 from their configs on `x`.

  `units` replaces the width of the named Dense layers (a merged head's). The
  copies have no trained weights yet: the caller sets them once the model is built.
  """
  copies = []
  for layer in head.layers[1:]:
    layer_config = dict(layer.get_config(), dtype='float32')
    if layer.name in (units or {}):
      layer_config['units'] = units[layer.name]
    copy = layer.__class__.from_config(layer_config)
    x = copy(x)
    copies.append((copy, layer))
  return x, copies


def compose(head: keras.Model, weights: Dict[str, np.ndarray], config: TrainConfig) -> keras.Model:
  """One float32 model: image [b, s, s, 3] in [0, 1] -> tower -> `head` -> P(fake) [b, 1];
  s = `config.image_size` (224, or another of feature_kinds.IMAGE_SIZES).

  The head reads `config.clip_features` (and `config.head_blocks`) from the tower.

  The head's layers are rebuilt in float32 from their configs and given the
  trained weights (a head trained under a mixed policy serves in float32, like
  the CNNs' export; float32 variables hold the exact trained values).
  """
  with precision.policy('float32'):
    inputs = keras.Input((config.image_size, config.image_size, 3), name='image')
    x = clip.head_input(clip.build_tower(inputs), config.clip_features, config.head_blocks)
    x, copies = _float32_layers(head, x)
    full = keras.Model(inputs, x, name=clip.NAME)
  for copy, layer in copies:
    copy.set_weights(layer.get_weights())
  clip.load_weights(full, weights)
  return full


def served_part(model: keras.Model, config: TrainConfig) -> keras.Model:
  """`model`'s layers after the tower (`compose`'s or a part of it): cached features [b, d] -> its output."""
  return keras.Model(model.get_layer(clip.FEATURES_LAYERS[config.clip_features]).output,
                     model.output)


def backbone_features(config: TrainConfig) -> contract.BackboneFeatures:
  """What the exported model's backbone signature reads (serving_contract.BackboneFeatures):
  `config`'s feature kind and blocks, their width, and the cache the Trainer filled."""
  return contract.BackboneFeatures(
      kind=config.clip_features,
      blocks=tuple(config.head_blocks) if config.clip_features == CLASS_TOKENS else (),
      width=feature_size(config), backbone_sha256=clip_weights.SHA256,
      backbone_weights=config.backbone_weights,
      embedding_cache_dir=config.embedding_cache_dir or embedding_cache.default_directory(),
      image_size=config.image_size)


MEMBER_RUN = 'head_member_'  # + i: the run dir of ensemble member i > 0, inside the run's


def train_head(config: TrainConfig, train_files: Sequence[str], eval_files: Sequence[str],
               run_dir: str, embedder: Optional[Embedder] = None):
  """Embeds both splits (cached), trains the head, returns (full float32 model, eval data, summary).

  With `config.head_ensemble` N > 1, member i trains at seed `config.seed + i`
  (member 0 in `run_dir`, the others in `run_dir`/head_member_<i>) and the
  members are merged (`merge_heads`); the summary is member 0's with
  'head_ensemble': every member's seed, run dir and metrics of its kept epoch.

  Eval data: (P(fake) [n] of the float32 head on the eval embeddings, int labels
  [n]), what the operating point is chosen on: the served model's scores up to
  the tower's batch-order rounding (docs/clip_backbone.md).
  """
  embedder = embedder or Embedder(config)
  train_images, train_labels = read_records(train_files)
  eval_images, eval_labels = read_records(eval_files)
  train_embeddings = head_features(embedder, train_images, config)
  eval_embeddings = head_features(embedder, eval_images, config)
  class_counts = {features.REAL: int((train_labels == features.REAL).sum()),
                  features.FAKE: int((train_labels == features.FAKE).sum())}
  heads, members = [], []
  for i in range(config.head_ensemble):
    member = dataclasses.replace(config, seed=config.seed + i)
    member_dir = os.path.join(run_dir, f'{MEMBER_RUN}{i}') if i else run_dir
    head, member_summary = training.train(
        member, embedding_dataset(train_embeddings, train_labels, member, training=True),
        embedding_dataset(eval_embeddings, eval_labels, member, training=False),
        class_counts, member_dir,
        build_fn=lambda rate, member=member: build_head(member, train_embeddings, rate))
    heads.append(head)
    kept = member_summary['weights_from_epoch']
    members.append({'seed': member.seed, 'run_dir': member_dir,
                    'weights_from_epoch': kept, 'epochs_run': member_summary['epochs_run'],
                    'metrics': {k: v[kept - 1] for k, v in member_summary['history'].items()
                                if len(v) >= kept}})
    if not i:
      summary = member_summary
  head = merge_heads(heads)
  if config.head_ensemble > 1:
    summary['head_ensemble'] = members
  summary['embeddings'] = {'computed': embedder.cache.computed, 'reused': embedder.cache.reused,
                           'cache': embedder.cache.folder}
  training.write_history(summary, run_dir)
  full = compose(head, embedder.weights, config)
  # The served head: the full model's layers after the tower, on the cached features.
  served_head = served_part(full, config)
  scores, labels = training.predict_probabilities(
      served_head, embedding_dataset(eval_embeddings, eval_labels, config, training=False))
  return full, (scores, labels), summary
