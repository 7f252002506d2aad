"""Exports a trained model as a TF Serving SavedModel with two signatures.

* `serving_default`: `image_bytes` (string [batch], raw encoded JPEG/PNG of any
  size and channel count, as gRPC sends them and REST decodes `{"b64": ...}`)
  -> `fake_probability` (float32 [batch]) and `label` (string [batch], 'real'
  or 'fake').
* `from_examples`: `examples` (string [batch], serialized tf.Example) ->
  `fake_probability`. TFMA feeds this one (it cannot feed raw bytes reliably).

Both decode through `preprocess.decode_batch`, the function training uses.
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
PREPROCESSING_FILE = 'preprocessing.json'  # under assets/: how inputs must be shaped


class _ServingModule(tf.Module):

  def __init__(self, model, image_size: int, color_mode: str, decision_threshold: float):
    super().__init__()
    self.model = model
    self.image_size = image_size
    self.color_mode = color_mode
    self.decision_threshold = tf.constant(decision_threshold, tf.float32)

  def _predict(self, image_bytes):
    images = preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)
    return tf.reshape(self.model(images, training=False), [-1])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_bytes')])
  def serve_images(self, image_bytes):
    probability = self._predict(image_bytes)
    label = tf.where(probability >= self.decision_threshold,
                     tf.constant(features.LABEL_NAMES[features.FAKE]),
                     tf.constant(features.LABEL_NAMES[features.REAL]))
    return {PROBABILITY_KEY: probability, LABEL_KEY: label}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, examples):
    parsed = tf.io.parse_example(examples,
                                 {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
    return {PROBABILITY_KEY: self._predict(parsed[features.IMAGE])}


def export_saved_model(model, export_dir: str, image_size: int, color_mode: str,
                       decision_threshold: float = 0.5) -> None:
  """Writes `model` with both signatures to `export_dir` (TF SavedModel)."""
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
               'decision_threshold': decision_threshold}, f)
