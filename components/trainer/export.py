"""Exports a trained model as a TF Serving SavedModel with two signatures.

* `serving_default`: `image_bytes` (string [batch], raw encoded JPEG/PNG/GIF/BMP
  of any size and channel count, as gRPC sends them and REST decodes
  `{"b64": ...}`) -> `fake_probability` (float32 [batch]) and `label`
  (string [batch], 'real' or 'fake'). Bytes that are no image fail the request
  with InvalidArgumentError naming the batch index; the server stays up.
* `from_examples`: `examples` (string [batch], serialized tf.Example) ->
  `fake_probability`. TFMA and InfraValidator feed this one.

Both decode through `preprocess.decode_batch`, which calls
`preprocess.decode_image`, the function the training input pipeline uses.
The loaded object also exposes `preprocess(image_bytes)` (not a signature) so
tests and debugging can see the exact tensor the model receives.
"""

import json
import os

import tensorflow as tf

from components import features
from components.trainer import preprocess

SERVING_SIGNATURE = 'serving_default'
EXAMPLES_SIGNATURE = 'from_examples'
PROBABILITY_KEY = 'fake_probability'
LABEL_KEY = 'label'
IMAGE_BYTES_INPUT = 'image_bytes'
EXAMPLES_INPUT = 'examples'
PREPROCESSING_FILE = 'preprocessing.json'  # under assets/: how inputs are shaped


class _ServingModule(tf.Module):
  """Holds the Keras model and the preprocessing constants it was trained with."""

  def __init__(self, model, image_size: int, color_mode: str, decision_threshold: float):
    super().__init__()
    self.model = model
    self.image_size = image_size
    self.color_mode = color_mode
    self.decision_threshold = tf.Variable(decision_threshold, dtype=tf.float32, trainable=False,
                                          name='decision_threshold')

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
  def preprocess(self, image_bytes):
    return preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)

  def _predict(self, image_bytes):

    def predict():
      images = preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)
      return tf.reshape(tf.cast(self.model(images, training=False), tf.float32), [-1])

    # An empty request gets an empty answer; oneDNN convolutions reject empty batches.
    return tf.cond(tf.size(image_bytes) > 0, predict, lambda: tf.zeros([0], tf.float32))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
  def serve_images(self, image_bytes):
    probability = self._predict(image_bytes)
    label = tf.where(probability >= self.decision_threshold,
                     tf.constant(features.LABEL_NAMES[features.FAKE]),
                     tf.constant(features.LABEL_NAMES[features.REAL]))
    return {PROBABILITY_KEY: probability, LABEL_KEY: label}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
  def serve_examples(self, examples):
    parsed = tf.io.parse_example(examples,
                                 {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
    return {PROBABILITY_KEY: self._predict(parsed[features.IMAGE])}


def export_saved_model(model, export_dir: str, image_size: int, color_mode: str,
                       decision_threshold: float = 0.5) -> str:
  """Writes `model` with both signatures to `export_dir` (TF SavedModel); returns it."""
  preprocess.channels_for(color_mode)  # fail on a bad mode before tracing
  if not 0.0 < decision_threshold < 1.0:
    raise ValueError(f'decision_threshold must be in (0, 1), got {decision_threshold}')
  module = _ServingModule(model, image_size, color_mode, decision_threshold)
  signatures = {
      SERVING_SIGNATURE: module.serve_images.get_concrete_function(),
      EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
  }
  tf.saved_model.save(module, export_dir, signatures=signatures)
  assets = os.path.join(export_dir, 'assets')
  tf.io.gfile.makedirs(assets)
  with tf.io.gfile.GFile(os.path.join(assets, PREPROCESSING_FILE), 'w') as f:
    json.dump({'image_size': image_size, 'color_mode': color_mode,
               'decision_threshold': decision_threshold,
               'input': 'encoded JPEG/PNG/GIF/BMP bytes, any size and channel count'}, f, indent=2)
  return export_dir
