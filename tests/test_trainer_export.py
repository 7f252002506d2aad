"""The exported SavedModel: both signatures, training/serving parity, bad input."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from fakefaces.components.shared import features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.image_encoder import preprocess
from fakefaces.components.trainer import data, export, model
from fakefaces.pipeline.fixtures import demo_records
from fakefaces.pipeline import demo_data
from fakefaces.pipeline.config import TrainConfig

IMAGE_SIZE = 32
COLOR_MODE = 'grayscale'


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """An (untrained, but deterministic) VGG10 exported once; returns (keras model, loaded, dir)."""
  tf.keras.utils.set_random_seed(0)
  keras_model = model.build_model('vgg10', IMAGE_SIZE, preprocess.channels_for(COLOR_MODE))
  export_dir = str(tmp_path_factory.mktemp('export') / 'serving')
  export.export_saved_model(keras_model, export_dir, IMAGE_SIZE, COLOR_MODE, decision_threshold=0.5)
  return keras_model, tf.saved_model.load(export_dir), export_dir


def _demo_jpegs(n):
  return [demo_data.encode_jpeg(demo_data.render_image(i, fake=i % 2 == 1, seed=5)[0])
          for i in range(n)]


def _encode(pixels, fmt, mode=None):
  buf = io.BytesIO()
  image = Image.fromarray(pixels)
  (image.convert(mode) if mode else image).save(buf, format=fmt)
  return buf.getvalue()


def _example(image_bytes, label=0):
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
      features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
  })).SerializeToString()


def test_both_signatures_load_and_agree(exported):
  _, loaded, export_dir = exported
  assert set(loaded.signatures) == set(contract.SIGNATURES)
  serving = loaded.signatures[contract.SERVING_SIGNATURE]
  assert set(serving.structured_input_signature[1]) == {contract.IMAGE_BYTES_INPUT}
  jpegs = _demo_jpegs(4)
  from_bytes = serving(image_bytes=tf.constant(jpegs))
  from_examples = loaded.signatures[contract.EXAMPLES_SIGNATURE](
      examples=tf.constant([_example(j) for j in jpegs]))
  probabilities = from_bytes[contract.PROBABILITY_KEY].numpy()
  assert probabilities.shape == (4,) and probabilities.dtype == np.float32
  np.testing.assert_array_equal(probabilities, from_examples[contract.PROBABILITY_KEY].numpy())
  expected_labels = np.where(probabilities >= 0.5, b'fake', b'real')
  np.testing.assert_array_equal(from_bytes[contract.LABEL_KEY].numpy(), expected_labels)
  with open(os.path.join(export_dir, 'assets', contract.PREPROCESSING_FILE)) as f:
    assets = json.load(f)
  assert assets['image_size'] == IMAGE_SIZE
  # The model carries how its crops were made, in assets and as a signature clients call.
  parameters = loaded.signatures[contract.FACE_PREPARATION_SIGNATURE](
      query=tf.constant([b'a', b'b']))[contract.PARAMETERS_KEY].numpy()
  assert len(parameters) == 2
  assert FacePreparation.from_json(parameters[0].decode()) == FacePreparation.from_dict(
      assets['face_preparation'])


def test_serving_sees_exactly_the_training_tensor(exported, tmp_path):
  keras_model, loaded, _ = exported
  patterns = demo_records.write_tfrecords(str(tmp_path), num_images=20, seed=5,
                                          splits=[features.TRAIN])
  config = TrainConfig(image_size=IMAGE_SIZE, color_mode=COLOR_MODE, batch_size=64)
  dataset_images, _ = next(iter(data.tfrecord_dataset([patterns[features.TRAIN]], config,
                                                      training=False)))
  raw = tf.data.TFRecordDataset(tf.io.gfile.glob(patterns[features.TRAIN]), compression_type='GZIP')
  image_bytes = [tf.train.Example.FromString(r.numpy()).features.feature[features.IMAGE]
                 .bytes_list.value[0] for r in raw]
  served_images = loaded.preprocess(tf.constant(image_bytes)).numpy()
  np.testing.assert_array_equal(served_images, dataset_images.numpy())
  served = loaded.signatures[contract.SERVING_SIGNATURE](image_bytes=tf.constant(image_bytes))
  np.testing.assert_allclose(served[contract.PROBABILITY_KEY].numpy(),
                             keras_model(dataset_images, training=False).numpy().reshape(-1),
                             rtol=1e-5, atol=1e-6)


def test_any_size_format_and_channel_count(exported):
  _, loaded, _ = exported
  rng = np.random.RandomState(0)
  images = [
      _encode(rng.randint(0, 255, (70, 50), dtype=np.uint8), 'PNG'),  # grayscale, not square
      _encode(rng.randint(0, 255, (100, 200, 4), dtype=np.uint8), 'PNG'),  # RGBA
      _encode(rng.randint(0, 255, (300, 300, 3), dtype=np.uint8), 'JPEG'),  # larger than trained
      _encode(rng.randint(0, 255, (16, 16, 3), dtype=np.uint8), 'BMP'),  # smaller
      _encode(rng.randint(0, 255, (40, 40), dtype=np.uint8), 'JPEG'),  # grayscale JPEG
      _encode(rng.randint(0, 255, (40, 40, 3), dtype=np.uint8), 'JPEG', mode='CMYK'),  # no luma
      _encode(rng.randint(0, 255, (24, 24, 3), dtype=np.uint8), 'GIF'),
  ]
  out = loaded.signatures[contract.SERVING_SIGNATURE](image_bytes=tf.constant(images))
  probabilities = out[contract.PROBABILITY_KEY].numpy()
  assert probabilities.shape == (7,) and np.all((probabilities >= 0) & (probabilities <= 1))
  assert set(out[contract.LABEL_KEY].numpy()) <= {b'real', b'fake'}
  assert loaded.preprocess(tf.constant(images)).shape == (7, IMAGE_SIZE, IMAGE_SIZE, 1)


def test_grayscale_jpeg_luma_matches_rgb_conversion():
  jpeg = _demo_jpegs(1)[0]
  rgb = tf.image.convert_image_dtype(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
  reference = tf.image.resize(tf.image.rgb_to_grayscale(rgb), [IMAGE_SIZE, IMAGE_SIZE],
                              antialias=True)
  decoded = preprocess.decode_image(jpeg, IMAGE_SIZE, 'grayscale')
  np.testing.assert_allclose(decoded.numpy(), reference.numpy(), atol=3 / 255)


def test_corrupt_image_is_a_clear_error_and_the_model_keeps_serving(exported):
  _, loaded, _ = exported
  serving = loaded.signatures[contract.SERVING_SIGNATURE]
  good = _demo_jpegs(1)[0]
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'image_bytes\[.*1.*\] is not an encoded'):
    serving(image_bytes=tf.constant([good, b'this is not an image']))
  with pytest.raises(tf.errors.InvalidArgumentError):
    serving(image_bytes=tf.constant([good[:len(good) // 3]]))  # truncated JPEG: codec error
  with pytest.raises(tf.errors.InvalidArgumentError, match='is not an encoded'):
    serving(image_bytes=tf.constant([b'']))
  # The same loaded model still answers afterwards.
  assert serving(image_bytes=tf.constant([good]))[contract.PROBABILITY_KEY].shape == (1,)


def test_empty_batch_returns_empty_outputs(exported):
  _, loaded, _ = exported
  out = loaded.signatures[contract.SERVING_SIGNATURE](image_bytes=tf.constant([], tf.string))
  assert out[contract.PROBABILITY_KEY].shape == (0,)


def test_the_saved_model_holds_the_signatures_graphs_and_the_variables_not_keras_layers(exported):
  """Every variable of the model is in the checkpoint with its value; no Keras layer is saved.

  Saved Keras objects would each carry traced calls of their own that no loader
  here uses (serving/, the canary, TFMA and the CLI call the signatures), and
  tracing them was most of the CLIP model's export time (docs/clip_backbone.md).
  """
  keras_model, _, export_dir = exported
  with open(os.path.join(export_dir, 'saved_model.pb'), 'rb') as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0]
  keras_nodes = [node.user_object.identifier for node in saved.object_graph_def.nodes
                 if node.user_object.identifier.startswith('_tf_keras')]
  assert not keras_nodes
  checkpoint = tf.train.load_checkpoint(os.path.join(export_dir, 'variables', 'variables'))
  stored = [checkpoint.get_tensor(name) for name in checkpoint.get_variable_to_shape_map()
            if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')]
  # The model's variables and the decision threshold, each once.
  assert len(stored) == len(keras_model.variables) + 1
  for variable in keras_model.variables:
    assert sum(value.shape == variable.shape and np.array_equal(value, variable.numpy())
               for value in stored) >= 1, variable.name


@pytest.mark.parametrize('shape', [(32, 32, 3), (45, 32, 3), (100, 80, 4), (20, 20)])
def test_decode_image_matches_a_plain_resize(shape):
  pixels = np.random.RandomState(1).randint(0, 255, shape, dtype=np.uint8)
  rgb = tf.image.convert_image_dtype(tf.io.decode_image(_encode(pixels, 'PNG'), channels=3),
                                     tf.float32)
  reference = tf.image.rgb_to_grayscale(
      tf.image.resize(rgb, [IMAGE_SIZE, IMAGE_SIZE], method='bilinear', antialias=True))
  decoded = preprocess.decode_image(_encode(pixels, 'PNG'), IMAGE_SIZE, 'grayscale')
  np.testing.assert_allclose(decoded.numpy(), np.clip(reference.numpy(), 0, 1), atol=1e-5)
  assert preprocess.decode_image(_encode(pixels, 'PNG'), IMAGE_SIZE, 'rgb').shape == (
      IMAGE_SIZE, IMAGE_SIZE, 3)
