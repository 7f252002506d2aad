"""Hand-made models and example files for testing the fairness gate end to end.

Two SavedModels with the project's signatures, exported by
`fakefaces.components.trainer.export.export_saved_model`, whose outputs really depend on
the image (no training, so they are instant and deterministic):

* `nyquist_model`: scores the 2-pixel-period energy that the generated demo
  fakes carry (see pipeline/demo_data.py). Accurate for every group: fair.
* `dark_face_model`: the same, but it also calls a face fake when the centre
  of the image is dark. On the demo data that flags real faces of the darkest
  synthetic skin tone ('Black') far more often than the others: accurate
  overall, biased against one group; the gate must block it.

`write_demo_examples` writes demo images as tf.Examples in FaceExampleGen's
format (gzipped TFRecords), with every demographic feature set.
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from fakefaces.components import features
from fakefaces.components import serving_contract as contract
from fakefaces.components.face_example_gen import executor as example_gen_executor
from fakefaces.components.face_example_gen import sources
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.trainer import export
from fakefaces.components.trainer import model as model_lib
from fakefaces.pipeline import demo_data

IMAGE_SIZE = demo_data.IMAGE_SIZE
COLOR_MODE = 'grayscale'
_CENTRE_MARGIN = 44  # pixels cropped on each side: the centre 40x40 is mostly skin
DARK_CUTOFF = 0.42  # grey level (0-1) below which the dark-face model says "fake"
_NYQUIST_CUTOFF = 0.03


def _logistic_head(x, weight: float, bias: float):
  """The fake logit weight * x + bias (the sigmoid is applied once, by `_probability`)."""
  dense = keras.layers.Dense(1)
  out = dense(x)
  dense.set_weights([np.array([[weight]], np.float32), np.array([bias], np.float32)])
  return out


def _probability(logits):
  """sigmoid(max of the heads' logits) = max of their probabilities (sigmoid is monotonic).

  One final sigmoid layer named as the trainer names it, whose input is the fake
  logit: the layer the exported `explain` signature (Grad-CAM) differentiates.
  """
  logit = logits[0] if len(logits) == 1 else keras.layers.Maximum()(logits)
  head = keras.layers.Dense(1, activation='sigmoid', name=model_lib.OUTPUT_LAYER)
  out = head(logit)
  head.set_weights([np.ones((1, 1), np.float32), np.zeros([1], np.float32)])
  return out


def _nyquist_score(inputs):
  conv = keras.layers.Conv2D(1, 2, strides=2, use_bias=False)
  x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
  conv.set_weights([np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32).reshape(2, 2, 1, 1)])
  return _logistic_head(x, 200.0, -200.0 * _NYQUIST_CUTOFF)


def _dark_centre_score(inputs):
  x = keras.layers.Cropping2D(_CENTRE_MARGIN)(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return _logistic_head(x, -60.0, 60.0 * DARK_CUTOFF)


def _nyquist_keras_model() -> keras.Model:
  inputs = keras.Input([IMAGE_SIZE, IMAGE_SIZE, 1])
  return keras.Model(inputs, _probability([_nyquist_score(inputs)]))


def _dark_face_keras_model() -> keras.Model:
  # Finds every fake, and also calls dark real faces fake: accurate overall
  # (so the Evaluator's thresholds pass) and unfair to one group.
  inputs = keras.Input([IMAGE_SIZE, IMAGE_SIZE, 1])
  return keras.Model(inputs, _probability([_nyquist_score(inputs), _dark_centre_score(inputs)]))


_CORNER = 12  # the top-left 12x12 pixels: pure background, unrelated to the face drawn


def _dark_corner_score(inputs, cutoff: float):
  x = keras.layers.Cropping2D(((0, IMAGE_SIZE - _CORNER), (0, IMAGE_SIZE - _CORNER)))(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return _logistic_head(x, -60.0, 60.0 * cutoff)


def composed_model(export_dir: str, dark_cutoff: Optional[float] = None,
                   corner_cutoff: Optional[float] = None) -> str:
  """The Nyquist detector plus two kinds of false alarms, each tunable; returns `export_dir`.

  `dark_cutoff` calls real faces whose centre is darker than it fake (on the demo
  data: 'Black' faces first, a group-specific error, so the Black vs rest FPR gap
  grows with it: about 0.29-0.45 grey for Black faces, > 0.46 for the others).
  `corner_cutoff` calls images whose background corner is darker than it fake:
  an error unrelated to demographics (about 30% of reals below 0.40), so it costs
  accuracy without making the model less fair. Together they make production
  models and candidates that are more or less accurate and more or less fair.
  """
  inputs = keras.Input([IMAGE_SIZE, IMAGE_SIZE, 1])
  scores = [_nyquist_score(inputs)]
  if dark_cutoff is not None:
    x = keras.layers.Cropping2D(_CENTRE_MARGIN)(inputs)
    scores.append(_logistic_head(keras.layers.GlobalAveragePooling2D()(x), -60.0,
                                 60.0 * dark_cutoff))
  if corner_cutoff is not None:
    scores.append(_dark_corner_score(inputs, corner_cutoff))
  return export.export_saved_model(keras.Model(inputs, _probability(scores)), export_dir, IMAGE_SIZE,
                                   COLOR_MODE)


def nyquist_model(export_dir: str) -> str:
  """Exports the accurate, fair detector; returns `export_dir`."""
  return export.export_saved_model(_nyquist_keras_model(), export_dir, IMAGE_SIZE, COLOR_MODE)


def dark_face_model(export_dir: str) -> str:
  """Exports the detector biased against dark faces; returns `export_dir`."""
  return export.export_saved_model(_dark_face_keras_model(), export_dir, IMAGE_SIZE, COLOR_MODE)


def write_demo_examples(path: str, num_images: int, seed: int = 0,
                        demographics: Optional[bool] = True) -> str:
  """Writes `num_images` demo faces (half fake) as gzipped tf.Examples to `path`.

  With `demographics=False` the fakes carry 'unknown' demographics, like the
  GAN faces of the shared data set. Returns `path`.
  """
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for index in range(num_images):
      fake = index % 2 == 1
      pixels, demo = demo_data.render_image(index // 2, fake, seed)
      if fake and not demographics:
        demo = {key: features.UNKNOWN for key in demo}
      record = sources.InputRecord(
          path='', source='demo', image_id=f'demo-{index:05d}',
          label=features.FAKE if fake else features.REAL, split=features.TEST, **demo)
      example = example_gen_executor.make_example(record, demo_data.encode_jpeg(pixels),
                                                  face_size=0)
      writer.write(example.SerializeToString())
  return path


BROKEN_SIGNATURE = contract.EXPLAIN_SIGNATURE  # present, and failing


def broken_signature_model(export_dir: str) -> str:
  """The accurate, fair detector plus an `explain` signature that fails on every real input.

  It loads in TF, its `serving_default` and `from_examples` work (so TFMA and the
  gate bless it), but calling `explain` with real image bytes fails at run time
  (a reshape that cannot hold). The ServingCanary must keep it from being pushed.
  """
  module = export._ServingModule(  # pylint: disable=protected-access
      _nyquist_keras_model(), IMAGE_SIZE, COLOR_MODE, 0.5, FacePreparation(output_size=IMAGE_SIZE))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.IMAGE_BYTES_INPUT)])
  def explain(image_bytes):
    images = module.preprocess(image_bytes)
    return {'heatmap': tf.reshape(images, [-1, 7, 7])}  # 128x128 pixels do not fit 7x7 rows

  module.broken_explain = explain
  tf.saved_model.save(module, export_dir, signatures={
      contract.SERVING_SIGNATURE: module.serve_images.get_concrete_function(),
      contract.EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
      contract.FACE_PREPARATION_SIGNATURE: module.face_preparation.get_concrete_function(),
      BROKEN_SIGNATURE: explain.get_concrete_function()})
  export.write_operating_point(export_dir, 0.5)  # what the Evaluator and the gate read
  return export_dir
