"""tf.data input pipelines: gzipped TFRecords (the TFX path) or image files (the report).

Both end in the same `to_batches`: parallel decode through
`preprocess.decode_image`, a stateless random flip for training, batch and
prefetch. Element order and augmentation are fixed by `config.seed`.
"""

from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from fakefaces.components.shared import example_files, features
from fakefaces.components.image_encoder import preprocess
from fakefaces.components.trainer import augment
from fakefaces.components.trainer.config import TrainConfig

RECORD_SPEC = {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
               features.LABEL: tf.io.FixedLenFeature([], tf.int64)}


def _records(files: List[str], config: TrainConfig, training: bool) -> tf.data.Dataset:
  """Serialized tf.Examples, interleaved across files (file order shuffled for training)."""
  compression = example_files.compression_of(files[0])  # one split's files are written alike
  ds = tf.data.Dataset.from_tensor_slices(files)
  if training:
    ds = ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
  return ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                       cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def to_batches(ds: tf.data.Dataset, config: TrainConfig, training: bool) -> tf.data.Dataset:
  """(encoded bytes, int label) elements -> (float images, float labels) batches."""
  if training:
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.repeat() if config.steps_per_epoch else ds

  def decode(index, element):
    image_bytes, label = element
    image = preprocess.decode_image(image_bytes, config.image_size, config.color_mode)
    if training and config.horizontal_flip:
      image = preprocess.random_flip(image, tf.stack([tf.constant(config.seed, tf.int64), index]))
    if training and augment.augments(config):
      image = augment.augment_history(
          image, tf.stack([tf.constant(config.seed + 1, tf.int64), index]), config)
    return image, tf.cast(label, tf.float32)

  # enumerate() after shuffle keys each flip by stream position: different per
  # epoch, identical across runs. deterministic=True keeps that order.
  ds = ds.enumerate().map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(config.batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


def tfrecord_dataset(file_patterns: Sequence[str], config: TrainConfig,
                     training: bool) -> tf.data.Dataset:
  """Gzipped TFRecords of tf.Examples -> (images, labels) batches."""

  def parse(serialized):
    example = tf.io.parse_single_example(serialized, RECORD_SPEC)
    return example[features.IMAGE], example[features.LABEL]

  ds = _records(example_files.files_matching(file_patterns), config, training)
  return to_batches(ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True),
                     config, training)


def files_dataset(paths: Sequence[str], labels: Sequence[int], config: TrainConfig,
                  training: bool) -> tf.data.Dataset:
  """Image files on disk with their labels -> (images, labels) batches."""
  if len(paths) != len(labels):
    raise ValueError(f'{len(paths)} paths but {len(labels)} labels')
  if not paths:
    raise ValueError('files_dataset needs at least one image')
  ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int64)))
  ds = ds.map(lambda path, label: (tf.io.read_file(path), label),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return to_batches(ds, config, training)


def count_labels(file_patterns: Sequence[str]) -> Dict[int, int]:
  """Examples per label in TFRecords, parsing only the label (images stay encoded)."""
  ds = example_files.records(example_files.files_matching(file_patterns),
                             num_parallel_reads=tf.data.AUTOTUNE)
  label_only = {features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
  ds = ds.batch(4096).map(lambda s: tf.io.parse_example(s, label_only)[features.LABEL])
  counts = ds.reduce(tf.zeros([2], tf.int64),
                     lambda acc, labels: acc + tf.math.bincount(labels, minlength=2, maxlength=2,
                                                                dtype=tf.int64))
  return {features.REAL: int(counts[0]), features.FAKE: int(counts[1])}


def class_weights(counts: Dict[int, int], where: str = 'train split') -> Dict[int, float]:
  """Inverse-frequency weights (total / (2 * count)); both classes must be present."""
  total = sum(counts.values())
  missing = [features.LABEL_NAMES[k] for k, v in counts.items() if not v]
  if missing:
    raise ValueError(f'{where} has no {" or ".join(missing)} examples (label counts {counts}); '
                     'a detector needs both classes')
  return {k: total / (2.0 * v) for k, v in counts.items()}
