"""Training-side mitigations of the source shortcut.

docs/training_and_quality.md, "The source shortcut", says why and what each one measured.

When sources differ in processing history and are unevenly spread over the
labels, a detector learns "looks like source S -> label". Three remedies, each
off by default and measured in bench/ablation_shortcut.py:

* `balance_sources`: sampling balanced over source x label. Each label gets
  half of every batch and, within a label, every source an equal share, so no
  source is a proxy for a label by frequency. Class weights are then moot.
* processing-history augmentation (`augment_*`): random downscale-upscale,
  Gaussian blur and JPEG re-compression at a random quality, each with
  probability `augment_probability`, so resampling and compression traces stop
  being reliable evidence. Training only; serving is untouched.
* MinDiff (`min_diff_weight` > 0, tensorflow-model-remediation): an MMD
  penalty between the score distributions of two groups of *real* photos
  (`min_diff_feature` value in `min_diff_sensitive` vs the rest), so the model
  cannot call one group's reals fake more often than the other's: the FPR gap
  the fairness gate judges shrinks during training.
"""

import dataclasses
import math
import sys
import types
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from fakefaces.components.shared import example_files, features
from fakefaces.components.trainer import augment, data
from fakefaces.components.trainer.config import TrainConfig

Stratum = Tuple[str, int]  # (value of a string feature such as source, label)


def check_config(config: TrainConfig) -> None:
  """Raises ValueError naming the `train.` field for values the mitigations cannot honour."""
  augment.check_config(config)
  if config.min_diff_weight < 0:
    raise ValueError(f'train.min_diff_weight must be >= 0, got {config.min_diff_weight}')
  if config.min_diff_weight and not config.min_diff_sensitive:
    raise ValueError('train.min_diff_sensitive must name the sensitive group\'s values of '
                     f'train.min_diff_feature ({config.min_diff_feature!r}) when min_diff_weight '
                     '> 0')
  if config.min_diff_feature not in features.STRING_FEATURES:
    raise ValueError(f'train.min_diff_feature must be one of {list(features.STRING_FEATURES)}, '
                     f'got {config.min_diff_feature!r}')


# --------------------------------------------------- balanced over source x label

def _spec(feature: str) -> Dict[str, tf.io.FixedLenFeature]:
  return {feature: tf.io.FixedLenFeature([], tf.string, default_value=''),
          features.LABEL: tf.io.FixedLenFeature([], tf.int64)}


def count_strata(file_patterns: Sequence[str], feature: str = features.SOURCE
                 ) -> Dict[Stratum, int]:
  """Examples per (value of `feature`, label) in gzipped TFRecords (images stay encoded)."""
  ds = example_files.records(example_files.files_matching(file_patterns),
                             num_parallel_reads=tf.data.AUTOTUNE)
  counts: Dict[Stratum, int] = {}
  for batch in ds.batch(4096).map(lambda s: tf.io.parse_example(s, _spec(feature))):
    for value, label in zip(batch[feature].numpy(), batch[features.LABEL].numpy()):
      key = (value.decode('utf-8', 'replace'), int(label))
      counts[key] = counts.get(key, 0) + 1
  return counts


def stratum_weights(counts: Dict[Stratum, int]) -> Dict[Stratum, float]:
  """Half the draws per label, split equally over that label's sources."""
  labels = sorted({label for _, label in counts})
  if labels != [features.REAL, features.FAKE]:
    raise ValueError(f'balanced sampling needs real and fake examples; strata: {counts}')
  per_label = {label: sum(1 for _, l in counts if l == label) for label in labels}
  return {key: 0.5 / per_label[key[1]] for key in sorted(counts)}


def balanced_pairs(file_patterns: Sequence[str], counts: Dict[Stratum, int],
                   config: TrainConfig) -> tf.data.Dataset:
  """Infinite (encoded image, label) stream sampled by `stratum_weights`."""
  files = example_files.files_matching(file_patterns)
  spec = dict(_spec(features.SOURCE), **{features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
  weights = stratum_weights(counts)
  streams = []
  for index, (source, label) in enumerate(sorted(weights)):
    ds = example_files.records(files)
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec))
    ds = ds.filter(lambda e, s=source, l=label: tf.logical_and(
        tf.equal(e[features.SOURCE], s), tf.equal(e[features.LABEL], l)))
    ds = ds.map(lambda e: (e[features.IMAGE], e[features.LABEL]))
    streams.append(ds.repeat().shuffle(min(config.shuffle_buffer, 512),
                                       seed=config.seed + index))
  return tf.data.Dataset.sample_from_datasets(streams, [weights[k] for k in sorted(weights)],
                                              seed=config.seed, stop_on_empty_dataset=False)


def balanced_config(config: TrainConfig, counts: Dict[Stratum, int]) -> TrainConfig:
  """The config balanced training runs with: an epoch is one train split's worth of
  draws, and class weights are off (the sampler already gives each label half)."""
  steps = config.steps_per_epoch or math.ceil(sum(counts.values()) / config.batch_size)
  return dataclasses.replace(config, steps_per_epoch=steps, class_weighting=False)


# -------------------------------------------------------------------- MinDiff


def group_images(file_patterns: Sequence[str], config: TrainConfig, sensitive: bool
                 ) -> tf.data.Dataset:
  """Batches of (images, labels) of the train split's *real* photos in (or out of) the
  sensitive group, repeated: MinDiff's group datasets."""
  spec = {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
          features.LABEL: tf.io.FixedLenFeature([], tf.int64),
          config.min_diff_feature: tf.io.FixedLenFeature([], tf.string, default_value='')}
  values = tf.constant(list(config.min_diff_sensitive))

  def in_group(e):
    member = tf.reduce_any(tf.equal(e[config.min_diff_feature], values))
    return tf.logical_and(tf.equal(e[features.LABEL], features.REAL),
                          member if sensitive else tf.logical_not(member))

  ds = example_files.records(example_files.files_matching(file_patterns))
  ds = ds.map(lambda s: tf.io.parse_single_example(s, spec)).filter(in_group)
  ds = ds.map(lambda e: (e[features.IMAGE], e[features.LABEL]))
  return data.to_batches(ds.repeat().shuffle(512, seed=config.seed + int(sensitive)), config,
                         training=False)


def _min_diff():
  """`tensorflow_model_remediation.min_diff`, without the package's tutorial tools.

  The package's __init__ imports tools/tutorials_utils, which imports
  tensorflow_hub 0.15 (TFX 1.16's pin), whose estimator module needs
  tf.estimator, gone from TF 2.16: the import fails. MinDiff uses neither, so
  the tools subpackage is registered as an empty module before importing.
  """
  tools = 'tensorflow_model_remediation.tools'
  if tools not in sys.modules:
    sys.modules[tools] = types.ModuleType(tools)
  from tensorflow_model_remediation import min_diff  # pylint: disable=g-import-not-at-top
  return min_diff


def min_diff_wrapper(config: TrainConfig):
  """A function turning the compiled model into a compiled MinDiffModel."""
  min_diff = _min_diff()

  def wrap(model):
    wrapped = min_diff.keras.MinDiffModel(model, loss=min_diff.losses.MMDLoss(),
                                          loss_weight=config.min_diff_weight)
    wrapped.compile(optimizer=model.optimizer, loss='binary_crossentropy',
                    metrics=[keras.metrics.BinaryAccuracy(name='accuracy'),
                             keras.metrics.AUC(name='auc')])
    return wrapped

  return wrap


def pack_min_diff(train_ds: tf.data.Dataset, file_patterns: Sequence[str],
                  config: TrainConfig) -> tf.data.Dataset:
  """The training stream packed with the two groups' streams, as MinDiffModel takes it."""
  return _min_diff().keras.utils.pack_min_diff_data(
      train_ds, group_images(file_patterns, config, True), group_images(file_patterns, config,
                                                                        False))


def min_diff_problems(counts: Dict[Stratum, int], config: TrainConfig) -> List[str]:
  """What makes MinDiff impossible: a group without real photos (its stream would never
  yield, and the penalty is undefined). `counts` by (min_diff_feature value, label)."""
  reals = {v: n for (v, label), n in counts.items() if label == features.REAL}
  sensitive = sum(n for v, n in reals.items() if v in config.min_diff_sensitive)
  rest = sum(n for v, n in reals.items() if v not in config.min_diff_sensitive)
  problems = []
  if not sensitive:
    problems.append(f'no real photos with {config.min_diff_feature} in {config.min_diff_sensitive}')
  if not rest:
    problems.append(f'no real photos with {config.min_diff_feature} outside '
                    f'{config.min_diff_sensitive}')
  return problems


def training_inputs(train_files: Sequence[str], config: TrainConfig
                    ) -> Tuple[TrainConfig, tf.data.Dataset, object]:
  """(config to train with, training dataset, model wrapper or None) for the mitigations
  `config` asks for; plain `data.tfrecord_dataset` when it asks for none."""
  check_config(config)
  wrapper = None
  if config.balance_sources:
    counts = count_strata(train_files)
    config = balanced_config(config, counts)
    train_ds = data.to_batches(balanced_pairs(train_files, counts, config), config, training=True)
  else:
    train_ds = data.tfrecord_dataset(train_files, config, training=True)
  if config.min_diff_weight:
    problems = min_diff_problems(count_strata(train_files, config.min_diff_feature), config)
    if problems:
      raise ValueError(f'train.min_diff_weight > 0 but the train split has {"; ".join(problems)}')
    train_ds = pack_min_diff(train_ds, train_files, config)
    wrapper = min_diff_wrapper(config)
  return config, train_ds, wrapper
