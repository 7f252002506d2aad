"""TFX Trainer entry point: `run_fn` trains the paper's CNN on the TFRecords.

Hyperparameters arrive as `custom_config` (a `TrainConfig` as a dict).
"""

import dataclasses
import json
import os
from typing import List

import tensorflow as tf
from absl import logging

from components import features
from components.trainer import export, preprocess
from components.trainer.model import build_model
from pipeline.config import TrainConfig, from_dict


def _list_files(patterns: List[str]) -> List[str]:
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'no TFRecord files match {patterns}')
  return files


def make_dataset(file_patterns: List[str], config: TrainConfig, training: bool) -> tf.data.Dataset:
  """TFRecords -> (images, labels) batches: parse, decode, augment, batch, prefetch."""
  spec = {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
          features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
  ds = tf.data.TFRecordDataset(_list_files(file_patterns), compression_type='GZIP')
  if training:
    ds = ds.shuffle(2048, seed=config.seed, reshuffle_each_iteration=True)

  def parse(serialized):
    ex = tf.io.parse_single_example(serialized, spec)
    image = preprocess.decode_image(ex[features.IMAGE], config.image_size, config.color_mode)
    if training:
      image = tf.image.random_flip_left_right(image, seed=config.seed)
    return image, tf.cast(ex[features.LABEL], tf.float32)

  ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
  return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def _class_weights(dataset: tf.data.Dataset):
  counts = {0: 0, 1: 0}
  for _, labels in dataset:
    for value in labels.numpy().astype(int):
      counts[int(value)] += 1
  total = sum(counts.values())
  if not counts[0] or not counts[1]:
    raise ValueError(f'the train split needs both classes, got counts {counts}')
  return {k: total / (2.0 * v) for k, v in counts.items()}


def run_fn(fn_args) -> None:
  config = from_dict(TrainConfig, dict(fn_args.custom_config or {}), 'train')
  tf.keras.utils.set_random_seed(config.seed)
  train_ds = make_dataset(fn_args.train_files, config, training=True)
  eval_ds = make_dataset(fn_args.eval_files, config, training=False)
  model = build_model(config.architecture, config.image_size,
                      preprocess.channels_for(config.color_mode), config.dropout,
                      config.learning_rate, config.optimizer)
  model.summary(print_fn=logging.info)
  callbacks = [
      tf.keras.callbacks.EarlyStopping(monitor='val_loss', patience=config.early_stopping_patience,
                                       restore_best_weights=True),
      tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
  ]
  history = model.fit(
      train_ds.repeat() if config.steps_per_epoch else train_ds,
      epochs=config.epochs,
      steps_per_epoch=config.steps_per_epoch,
      validation_data=eval_ds,
      class_weight=_class_weights(train_ds) if config.class_weighting else None,
      callbacks=callbacks,
      verbose=2)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, 'history.json'), 'w') as f:
    json.dump({'config': dataclasses.asdict(config),
               'history': {k: [float(v) for v in vals] for k, vals in history.history.items()}},
              f, indent=2)
  export.export_saved_model(model, fn_args.serving_model_dir, config.image_size,
                            config.color_mode)
