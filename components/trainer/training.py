"""One training loop for the TFX `run_fn`, the report command and the benchmark.

The code path is the same on CPU and GPU; only the strategy and the precision
policy depend on the machine: MirroredStrategy for more than one GPU, the
default strategy otherwise; `train.precision` (image_encoder/precision.py) picks mixed
bfloat16 only where the hardware computes it natively.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

import tensorflow as tf
import tf_keras as keras
from absl import logging

from fakefaces.components.image_encoder import precision, preprocess
from fakefaces.components.trainer import curves, data
from fakefaces.components.trainer.model import build_model
from fakefaces.components.trainer.config import TrainConfig

HISTORY_FILE = 'history.json'


def pick_strategy() -> tf.distribute.Strategy:
  gpus = tf.config.list_logical_devices('GPU')
  if len(gpus) > 1:
    return tf.distribute.MirroredStrategy([d.name for d in gpus])
  return tf.distribute.get_strategy()  # default: one device, GPU if present


def precision_policy(config: TrainConfig):
  """Context: the policy `config.precision` resolves to here, restored after (yields its name)."""
  return precision.policy(precision.resolve(config.precision))


def seed_everything(config: TrainConfig) -> None:
  """Python, NumPy and TF seeds; op determinism too when `config.deterministic`.

  Call it before building the input datasets too: tf.data's shuffle combines its
  seed with the global one, so a dataset built before the global seed was set
  shuffled differently from one built after it (a second training in the same
  process started at loss 2.13 instead of 3.12).
  """
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()


def configure_threads(config: TrainConfig) -> None:
  """Applies `intra_op_threads`/`inter_op_threads` (0 keeps TensorFlow's default).

  TensorFlow fixes its thread pools when the runtime starts; when that has
  already happened in this process (a TFX component running after others),
  the setting cannot apply any more and a warning says so.
  """
  for name, setter, value in (
      ('intra_op_threads', tf.config.threading.set_intra_op_parallelism_threads,
       config.intra_op_threads),
      ('inter_op_threads', tf.config.threading.set_inter_op_parallelism_threads,
       config.inter_op_threads)):
    if value < 0:
      raise ValueError(f'train.{name} must be >= 0 (0: TensorFlow default), got {value}')
    if value:
      try:
        setter(value)
      except RuntimeError as e:
        logging.warning('train.%s=%d not applied: TensorFlow already started (%s)', name, value, e)


def apply_performance_options(model: keras.Model, config: TrainConfig) -> keras.Model:
  """XLA for the training step when `config.jit_compile` (set after compile(), like Keras' own)."""
  if config.jit_compile:
    model.jit_compile = True
  return model


class _Throughput(keras.callbacks.Callback):
  """Records wall time per epoch, so history.json tells images/sec."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs['epoch_seconds'] = time.perf_counter() - self._start


LEARNING_RATE_SCHEDULES = ('constant', 'cosine')


def learning_rate(config: TrainConfig, class_counts: Dict[int, int]):
  """`config.learning_rate`, or a cosine decay of it to 0 over the whole run's steps.

  Steps per epoch: `steps_per_epoch`, else one pass over the train split
  (`class_counts`) in batches of `batch_size`.
  """
  if config.learning_rate_schedule not in LEARNING_RATE_SCHEDULES:
    raise ValueError(f'train.learning_rate_schedule must be one of '
                     f'{list(LEARNING_RATE_SCHEDULES)}, got {config.learning_rate_schedule!r}')
  if config.learning_rate_schedule == 'constant':
    return config.learning_rate
  steps = config.steps_per_epoch or max(1, -(-sum(class_counts.values()) // config.batch_size))
  return keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps)


# Metrics early stopping may watch, and which direction is better.
_MONITOR_MODES = {'val_loss': 'min', 'val_auc': 'max', 'val_accuracy': 'max'}


def train(config: TrainConfig, train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset,
          class_counts: Dict[int, int], run_dir: str,
          model_wrapper=None,
          build_fn: Optional[Callable[[Any], keras.Model]] = None
          ) -> Tuple[keras.Model, Dict[str, Any]]:
  """Builds and fits the model; writes TensorBoard logs, history.json, learning curves to run_dir.

  `model_wrapper` (e.g. MinDiff's, from mitigation.training_inputs) turns the
  compiled model into the compiled model that is fit; the plain model is returned.
  `build_fn(learning_rate)` builds the compiled model instead of
  `config.architecture`'s CNN (a backbone's head, backbone.build_head).

  Returns the model (best weights by `early_stopping_monitor` when early stopping is on)
  and the history summary that was written.
  """
  if config.early_stopping_monitor not in _MONITOR_MODES:
    raise ValueError(f'train.early_stopping_monitor must be one of {sorted(_MONITOR_MODES)}, '
                     f'got {config.early_stopping_monitor!r}')
  seed_everything(config)
  configure_threads(config)
  strategy = pick_strategy()
  weights = data.class_weights(class_counts) if config.class_weighting else None
  with precision_policy(config) as policy, strategy.scope():
    rate = learning_rate(config, class_counts)
    model = build_fn(rate) if build_fn else build_model(
        config.architecture, config.image_size, preprocess.channels_for(config.color_mode),
        config.dropout, rate, config.optimizer, seed=config.seed,
        input_filter=config.input_filter, full_resolution_convs=config.full_resolution_convs)
    apply_performance_options(model, config)
    model.summary(print_fn=logging.info)
    fitted = model_wrapper(model) if model_wrapper else model
    callbacks = [_Throughput(),
                 keras.callbacks.TensorBoard(log_dir=run_dir, profile_batch=0)]
    early_stopping = None
    if config.early_stopping_patience:
      early_stopping = keras.callbacks.EarlyStopping(
          monitor=config.early_stopping_monitor, mode=_MONITOR_MODES[config.early_stopping_monitor],
          patience=config.early_stopping_patience, restore_best_weights=True)
      callbacks.append(early_stopping)
    fit = fitted.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                    validation_data=eval_ds, validation_steps=config.validation_steps,
                    class_weight=weights, callbacks=callbacks,
                    verbose=2)
  history = {k: [float(v) for v in values] for k, values in fit.history.items()}
  if not history.get('loss'):
    raise ValueError('training ran no steps: is the train split empty?')
  monitored = history.get(config.early_stopping_monitor, [])
  pick = min if _MONITOR_MODES[config.early_stopping_monitor] == 'min' else max
  summary = {
      'config': dataclasses.asdict(config),
      'strategy': type(strategy).__name__,
      'replicas': strategy.num_replicas_in_sync,
      'devices': [d.name for d in tf.config.list_logical_devices()],
      'precision_policy': policy,
      'class_counts': {str(k): v for k, v in class_counts.items()},
      'class_weights': {str(k): v for k, v in weights.items()} if weights else None,
      'epochs_run': len(history['loss']),
      'best_epoch': (int(pick(range(len(monitored)), key=monitored.__getitem__)) + 1
                     if monitored else None),  # by early_stopping_monitor
      'stopped_early': bool(early_stopping and early_stopping.stopped_epoch),
      # EarlyStopping(restore_best_weights) hands back the best epoch's weights.
      'weights_from_epoch': (int(early_stopping.best_epoch) + 1 if early_stopping
                             else len(history['loss'])),
      'history': history,
      'learning_curves': curves.LEARNING_CURVES_FILE,  # beside history.json
  }
  write_history(summary, run_dir)
  curves.plot_learning_curves(
      history, os.path.join(run_dir, curves.LEARNING_CURVES_FILE),
      title=f'{config.architecture}, {config.image_size} px {config.color_mode}',
      best_epoch=summary['weights_from_epoch'] if early_stopping else None)
  logging.info('%s', kept_weights_message(summary, config.early_stopping_monitor))
  return model, summary


def kept_weights_message(summary: Dict[str, Any], monitor: str) -> str:
  """One line saying which epoch's weights the model has, and why (the training log's last word).

  Keras prints every epoch's metrics; without this line the last one printed
  (possibly a bad epoch that early stopping discarded) reads as the model's.
  """
  kept, run = summary['weights_from_epoch'], summary['epochs_run']
  values = summary['history'].get(monitor) or []
  if summary['config'].get('early_stopping_patience'):
    why = (f'the best {monitor}' + (f' ({values[kept - 1]:.4g})' if len(values) >= kept else '')
           + (f'; epoch {run}\'s was {values[-1]:.4g}' if values and kept != run else '')
           + ('; training stopped early' if summary['stopped_early'] else ''))
  else:
    why = 'the last epoch (early stopping is off: train.early_stopping_patience is 0)'
  return f'Trainer: the model keeps the weights of epoch {kept} of {run}: {why}.'


def write_history(summary: Dict[str, Any], run_dir: str) -> str:
  tf.io.gfile.makedirs(run_dir)
  path = os.path.join(run_dir, HISTORY_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(summary, f, indent=2)
  return path


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset):
  """(probabilities, labels) as flat NumPy arrays over a non-repeating dataset."""
  probabilities, labels = [], []
  for images, batch_labels in dataset:
    probabilities.append(model(images, training=False).numpy().reshape(-1))
    labels.append(batch_labels.numpy().reshape(-1))
  return np.concatenate(probabilities), np.concatenate(labels).astype(int)
