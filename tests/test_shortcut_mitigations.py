"""Source-shortcut mitigations: the same treatment for every source in
ingestion, balanced source x label sampling, processing-history augmentation and
MinDiff in the Trainer. Real tf.data pipelines and a real (tiny) MinDiff fit."""

import collections
import dataclasses
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_preparation import treatment
from fakefaces.components.shared.config_base import from_dict
from fakefaces.components.face_example_gen.config import IngestConfig
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.trainer import augment, data, mitigation, training
from fakefaces.components.trainer.config import TrainConfig

SIZE = 32


def _jpeg(seed: int, size: int = SIZE) -> bytes:
  pixels = np.random.RandomState(seed).randint(0, 255, (size, size, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format='JPEG', quality=90)
  return buf.getvalue()


def _write(path, strata):
  """strata: [(source, label, count)] -> gzipped TFRecords like FaceExampleGen's."""
  with tf.io.TFRecordWriter(str(path), options='GZIP') as writer:
    i = 0
    for source, label, count in strata:
      for _ in range(count):
        feature = {
            features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[_jpeg(i)])),
            features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            features.SOURCE: tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[source.encode()]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                     .SerializeToString())
        i += 1
  return str(path)


# -------------------------------------------------------------- ingestion


def test_treatment_drops_the_border_and_keeps_the_size():
  # A face-like centre on a padding-like border that only one source would show.
  pixels = np.full((128, 128, 3), 200, np.uint8)
  pixels[32:96, 32:96] = 60
  config = FacePreparation(output_size=128, crop_fraction=0.5, resample_size=64,
                           shared_jpeg_quality=75)
  out = np.asarray(treatment.equalize(Image.fromarray(pixels), config).convert('L'), float)
  assert out.shape == (128, 128)
  assert abs(out[5:-5, 5:-5].mean() - 60) < 5, 'the border survived the crop'
  assert treatment.equalize(Image.fromarray(pixels), IngestConfig().face) is not None
  assert treatment.is_identity(IngestConfig().face)


@pytest.mark.parametrize('field,value', [('crop_fraction', 0.1), ('resample_size', 4),
                                         ('resample_size', 512), ('shared_jpeg_quality', 101)])
def test_treatment_config_errors_name_the_field(field, value):
  with pytest.raises(ValueError, match=f'ingest.face.{field}'):
    from_dict(IngestConfig, {'face': {'output_size': 128, field: value}}, 'ingest')


# --------------------------------------------------------------- training


def test_balanced_sampling_gives_each_label_half_and_each_source_an_equal_share(tmp_path):
  path = _write(tmp_path / 'train.gz', [('a', 0, 60), ('b', 0, 10), ('b', 1, 30)])
  counts = mitigation.count_strata([path])
  assert counts == {('a', 0): 60, ('b', 0): 10, ('b', 1): 30}
  assert mitigation.stratum_weights(counts) == {('a', 0): 0.25, ('b', 0): 0.25, ('b', 1): 0.5}
  config = mitigation.balanced_config(TrainConfig(batch_size=10), counts)
  assert config.steps_per_epoch == 10 and not config.class_weighting
  drawn = collections.Counter()
  spec = {features.SOURCE: tf.io.FixedLenFeature([], tf.string)}
  # Recover each drawn image's source by its bytes.
  by_image = {}
  for raw in tf.data.TFRecordDataset(path, compression_type='GZIP'):
    example = tf.train.Example.FromString(raw.numpy())
    by_image[example.features.feature[features.IMAGE].bytes_list.value[0]] = (
        example.features.feature[features.SOURCE].bytes_list.value[0].decode())
  del spec
  for image, label in mitigation.balanced_pairs([path], counts, config).take(800):
    drawn[(by_image[image.numpy()], int(label))] += 1
  shares = {k: v / 800 for k, v in drawn.items()}
  assert shares[('a', 0)] == pytest.approx(0.25, abs=0.06)
  assert shares[('b', 0)] == pytest.approx(0.25, abs=0.06)  # 10 examples, drawn as often as 60
  assert shares[('b', 1)] == pytest.approx(0.5, abs=0.06)
  with pytest.raises(ValueError, match='needs real and fake'):
    mitigation.stratum_weights({('a', 0): 3})


def test_history_augmentation_is_random_reproducible_and_training_only(tmp_path):
  config = TrainConfig(image_size=SIZE, augment_jpeg_quality=[20, 40], augment_blur_sigma=2.0,
                       augment_min_scale=0.5, augment_probability=1.0, horizontal_flip=False)
  image = tf.image.convert_image_dtype(tf.io.decode_jpeg(_jpeg(1), channels=1), tf.float32)
  seed = tf.constant([1, 2], tf.int64)
  once = augment.augment_history(image, seed, config)
  assert once.shape == image.shape
  assert float(tf.reduce_mean(tf.abs(once - image))) > 0.02
  np.testing.assert_array_equal(once.numpy(), augment.augment_history(image, seed, config).numpy())
  assert not np.array_equal(once.numpy(), augment.augment_history(
      image, tf.constant([1, 3], tf.int64), config).numpy())
  # The eval/serving path never augments: the same bytes decode to the same pixels.
  path = _write(tmp_path / 'eval.gz', [('a', 0, 4), ('a', 1, 4)])
  plain = dataclasses.replace(config, augment_jpeg_quality=[], augment_blur_sigma=0.0,
                              augment_min_scale=0.0)
  a = next(iter(data.tfrecord_dataset([path], dataclasses.replace(config, image_size=SIZE),
                                      training=False)))[0]
  b = next(iter(data.tfrecord_dataset([path], plain, training=False)))[0]
  np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize('changes,field', [
    (dict(augment_jpeg_quality=[50]), 'train.augment_jpeg_quality'),
    (dict(augment_probability=1.5), 'train.augment_probability'),
    (dict(min_diff_weight=1.0), 'train.min_diff_sensitive'),
    (dict(min_diff_feature='colour'), 'train.min_diff_feature')])
def test_mitigation_config_errors_name_the_field(changes, field):
  with pytest.raises(ValueError, match=field):
    mitigation.check_config(dataclasses.replace(TrainConfig(), **changes))


def test_min_diff_refuses_a_group_without_real_photos(tmp_path):
  path = _write(tmp_path / 'train.gz', [('a', 0, 8), ('b', 1, 8)])
  config = TrainConfig(image_size=SIZE, min_diff_weight=1.0, min_diff_sensitive=['b'])
  with pytest.raises(ValueError, match=r"no real photos with source in \['b'\]"):
    mitigation.training_inputs([path], config)


def test_min_diff_trains_and_returns_the_plain_model(tmp_path):
  path = _write(tmp_path / 'train.gz', [('a', 0, 16), ('b', 0, 16), ('b', 1, 32)])
  config = TrainConfig(architecture='baseline', image_size=SIZE, epochs=1, batch_size=8,
                       steps_per_epoch=3, early_stopping_patience=0, balance_sources=True,
                       min_diff_weight=1.0, min_diff_sensitive=['a'])
  config, train_ds, wrapper = mitigation.training_inputs([path], config)
  assert wrapper is not None and config.steps_per_epoch == 3
  eval_ds = data.tfrecord_dataset([path], config, training=False)
  model, history = training.train(config, train_ds, eval_ds, data.count_labels([path]),
                                  str(tmp_path / 'run'), model_wrapper=wrapper)
  assert 'min_diff_loss' in history['history'], history['history'].keys()
  assert type(model).__name__ == 'Functional'  # what export.py saves, without MinDiff's wrapper
  scores, labels = training.predict_probabilities(model, eval_ds)
  assert scores.shape == labels.shape == (64,)
