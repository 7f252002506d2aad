"""run_fn end to end from TFRecords, and the tf.data input pipeline it uses."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from fakefaces.components.shared import features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.trainer import curves, data, module, training
from fakefaces.pipeline.fixtures import demo_records
from fakefaces.pipeline.config import ConfigError, TrainConfig

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  """Demo TFRecords as FaceExampleGen writes them: {split: file pattern}."""
  return demo_records.write_tfrecords(str(tmp_path_factory.mktemp('records')), num_images=60,
                                      seed=11)


def _fn_args(records, tmp_path, **config):
  return FnArgs(train_files=[records[features.TRAIN]], eval_files=[records[features.EVAL]],
                model_run_dir=str(tmp_path / 'model_run'),
                serving_model_dir=str(tmp_path / 'serving_model'), custom_config=config)


def test_run_fn_trains_and_exports(records, tmp_path):
  args = _fn_args(records, tmp_path, architecture='vgg10', image_size=32, color_mode='rgb',
                  epochs=2, steps_per_epoch=2, batch_size=8, validation_steps=1,
                  face_preparation={'align': 'none', 'output_size': 64, 'jpeg_quality': 90})
  module.run_fn(args)
  # The ingestion's face preparation travels with the model (the pipeline passes it).
  assets = json.loads((tmp_path / 'serving_model' / 'assets' / 'preprocessing.json').read_text())
  assert assets['face_preparation']['align'] == 'none'
  assert assets['face_preparation']['output_size'] == 64
  history = json.loads((tmp_path / 'model_run' / training.HISTORY_FILE).read_text())
  assert history['epochs_run'] == 2 and len(history['history']['val_loss']) == 2
  assert history['config']['color_mode'] == 'rgb'
  counts = history['class_counts']
  assert counts['0'] == counts['1'] > 0  # demo pairs are balanced
  assert history['class_weights'] == {'0': 1.0, '1': 1.0}
  assert tf.io.gfile.glob(str(tmp_path / 'model_run' / 'train' / 'events.out.tfevents.*'))
  # The learning curves beside the SavedModel too, where the model card finds them.
  png = (tmp_path / 'serving_model' / curves.LEARNING_CURVES_FILE).read_bytes()
  assert png.startswith(b'\x89PNG') and png == (
      tmp_path / 'model_run' / curves.LEARNING_CURVES_FILE).read_bytes()
  loaded = tf.saved_model.load(args.serving_model_dir)
  raw = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(records[features.TEST]),
                                          compression_type='GZIP').batch(3)))
  out = loaded.signatures[contract.EXAMPLES_SIGNATURE](examples=raw)
  assert out[contract.PROBABILITY_KEY].shape == (3,)


def test_count_labels_reads_labels_only(records):
  counts = data.count_labels([records[features.TRAIN], records[features.EVAL]])
  raw = tf.data.TFRecordDataset(
      tf.io.gfile.glob(records[features.TRAIN]) + tf.io.gfile.glob(records[features.EVAL]),
      compression_type='GZIP')
  labels = [tf.train.Example.FromString(r.numpy()).features.feature[features.LABEL]
            .int64_list.value[0] for r in raw]
  assert counts == {0: labels.count(0), 1: labels.count(1)}


def test_training_input_is_shuffled_flipped_and_reproducible(records):
  config = TrainConfig(image_size=32, batch_size=64, seed=5)
  plain, plain_labels = next(iter(data.tfrecord_dataset([records[features.TRAIN]], config,
                                                        training=False)))
  first = [b.numpy() for b, _ in data.tfrecord_dataset([records[features.TRAIN]], config,
                                                       training=True)]
  again = [b.numpy() for b, _ in data.tfrecord_dataset([records[features.TRAIN]], config,
                                                       training=True)]
  np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
  # With shuffling off, every training image is the eval image or its mirror.
  unshuffled = TrainConfig(image_size=32, batch_size=64, seed=5, shuffle_buffer=1)
  images, labels = next(iter(data.tfrecord_dataset([records[features.TRAIN]], unshuffled,
                                                    training=True)))
  np.testing.assert_array_equal(labels.numpy(), plain_labels.numpy())
  flipped = [not np.array_equal(a, b) for a, b in zip(images.numpy(), plain.numpy())]
  for a, b, was_flipped in zip(images.numpy(), plain.numpy(), flipped):
    np.testing.assert_array_equal(a, b[:, ::-1] if was_flipped else b)
  assert 0 < sum(flipped) < len(flipped)


def test_steps_per_epoch_repeats_the_training_data(records):
  config = TrainConfig(image_size=32, batch_size=16, steps_per_epoch=3)
  dataset = data.tfrecord_dataset([records[features.TRAIN]], config, training=True)
  assert len(list(dataset.take(20))) == 20  # 20 batches from ~42 examples: it repeats


def test_bad_inputs_fail_with_names(records, tmp_path):
  with pytest.raises(ConfigError, match='custom_config: unknown key.*epoch_count'):
    module.run_fn(_fn_args(records, tmp_path, epoch_count=3))
  missing = str(tmp_path / 'nowhere' / '*')
  with pytest.raises(ValueError, match='no TFRecord files match.*nowhere'):
    data.count_labels([missing])
  with pytest.raises(ValueError, match='train split has no fake examples'):
    data.class_weights({0: 10, 1: 0})


def test_early_stopping_can_watch_val_auc_and_keeps_its_best_epoch(records, tmp_path):
  args = _fn_args(records, tmp_path, architecture='baseline', image_size=32, epochs=3,
                  steps_per_epoch=2, batch_size=8, early_stopping_monitor='val_auc',
                  early_stopping_patience=5)
  module.run_fn(args)
  history = json.loads((tmp_path / 'model_run' / training.HISTORY_FILE).read_text())
  aucs = history['history']['val_auc']
  assert history['best_epoch'] == aucs.index(max(aucs)) + 1
  assert history['weights_from_epoch'] == history['best_epoch']


def test_unknown_early_stopping_monitor_is_named(records, tmp_path):
  args = _fn_args(records, tmp_path, image_size=32, epochs=1, early_stopping_monitor='auc')
  with pytest.raises(ValueError, match='train.early_stopping_monitor'):
    module.run_fn(args)


def test_the_same_records_and_seed_train_the_same_model(records, tmp_path):
  """With FaceExampleGen's runner-independent shards, a rerun repeats the model."""
  config = dict(architecture='vgg10', image_size=32, color_mode='grayscale', epochs=2,
                steps_per_epoch=3, batch_size=8, validation_steps=1, seed=7,
                augment_jpeg_quality=[30, 95], augment_blur_sigma=1.5, augment_probability=0.5)
  raw = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(records[features.TEST]),
                                          compression_type='GZIP').batch(16)))
  scores, losses = [], []
  for run in ('first', 'second'):
    args = _fn_args(records, tmp_path / run, **config)
    module.run_fn(args)
    history = json.loads((tmp_path / run / 'model_run' / training.HISTORY_FILE).read_text())
    losses.append(history['history']['loss'] + history['history']['val_loss'])
    served = tf.saved_model.load(args.serving_model_dir).signatures[contract.EXAMPLES_SIGNATURE]
    scores.append(served(examples=raw)[contract.PROBABILITY_KEY].numpy())
  assert losses[0] == losses[1]
  np.testing.assert_array_equal(scores[0], scores[1])
  assert np.ptp(scores[0]) > 0  # a trained model, not a constant


def test_the_log_says_which_epochs_weights_were_kept():
  summary = {'weights_from_epoch': 2, 'epochs_run': 5, 'stopped_early': True,
             'config': {'early_stopping_patience': 3},
             'history': {'val_loss': [0.9, 0.41, 0.5, 7.0, 149.69]}}
  message = training.kept_weights_message(summary, 'val_loss')
  assert 'weights of epoch 2 of 5' in message
  assert 'best val_loss (0.41)' in message and "epoch 5's was 149.7" in message
  assert 'stopped early' in message
  summary.update(weights_from_epoch=5, stopped_early=False, config={'early_stopping_patience': 0})
  assert 'epoch 5 of 5: the last epoch (early stopping is off' in training.kept_weights_message(
      summary, 'val_loss')
