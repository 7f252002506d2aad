"""Every architecture of `train.architecture` builds, trains a step, draws its curves and exports.

Tiny on purpose (32 px, batch 2, one step): this checks that the five CNNs
plug into the same input, head, training loop and serving signatures, not how
well they learn (docs/architectures.md compares that).
"""


import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.image_encoder import precision, preprocess
from fakefaces.components.trainer import curves, export, flops, model as model_lib
from fakefaces.components.trainer import training
from fakefaces.components.trainer.config import ARCHITECTURE_NAMES, TrainConfig
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.pipeline import demo_data

SIZE = 32  # the smallest side keras.applications accept


def _jpegs(n):
  return [demo_data.encode_jpeg(demo_data.render_image(i, fake=i % 2 == 1, seed=7)[0])
          for i in range(n)]


def _example(image_bytes):
  return tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}))


# Saved and loaded back: the two own CNNs and one tf_keras.applications backbone (all three
# are built by model._application, so VGG16 stands for ResNet-50 and DenseNet-121 there).
# The deep two call the same serving module's functions in process: saving and loading
# DenseNet-121's 427 layers with four signatures took 265 s of a 28-minute suite, and
# ResNet-50's 131 s, and proves nothing the VGG16 export does not. They also run every
# tf.function eagerly (Keras' train and eval steps, the serving functions): the same Python
# on the same layers, without tracing the graphs that the VGG16 row traces through the same
# wrapper (traced, DenseNet-121 spent ~90% of its row building graphs: each serving function
# ~30 s). Side by side, the two rows: 501 s traced, 110 s eager (docs/performance.md).
SAVED_AND_LOADED = ('baseline', 'vgg10', 'vgg16')


def _signatures(keras_model, color_mode, export_dir, saved):
  """{signature name: callable}: the loaded SavedModel's, or the same module's in process."""
  if saved:
    export.export_saved_model(keras_model, export_dir, SIZE, color_mode)
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures) == set(contract.SIGNATURES)
    return loaded.signatures
  module = export._ServingModule(  # pylint: disable=protected-access
      precision.float32_copy(keras_model), SIZE, color_mode, 0.5,
      FacePreparation(output_size=SIZE))
  # Closures, not the bound tf.functions: those hold the module by a weak reference only.
  methods = {contract.SERVING_SIGNATURE: 'serve_images', contract.EXAMPLES_SIGNATURE:
             'serve_examples', contract.EXPLAIN_SIGNATURE: 'explain',
             contract.FACE_PREPARATION_SIGNATURE: 'face_preparation'}
  assert set(methods) == set(contract.SIGNATURES)
  return {name: lambda method=method, **inputs: getattr(module, method)(**inputs)
          for name, method in methods.items()}


# `auto` is float32 here or bfloat16 on a CPU with AVX512-BF16/AMX (precision.py); the
# baseline also runs with each precision forced, so both paths run on every machine
# (bfloat16 emulated where the CPU lacks it: one step at 32 px).
@pytest.mark.parametrize('architecture, color_mode, precision_setting', [
    ('baseline', 'grayscale', 'float32'),
    pytest.param('baseline', 'grayscale', 'mixed_bfloat16', marks=pytest.mark.slow),
    pytest.param('vgg10', 'grayscale', 'auto', marks=pytest.mark.slow),
    pytest.param('vgg16', 'rgb', 'auto', marks=pytest.mark.slow),
    pytest.param('resnet50', 'grayscale', 'auto', marks=pytest.mark.slow),
    pytest.param('densenet121', 'grayscale', 'auto', marks=pytest.mark.slow)])
def test_architecture_trains_a_step_and_exports_every_signature(architecture, color_mode,
                                                                  precision_setting, tmp_path,
                                                                  request):
  if architecture not in SAVED_AND_LOADED:
    tf.config.run_functions_eagerly(True)
    request.addfinalizer(lambda: tf.config.run_functions_eagerly(False))
  config = TrainConfig(architecture=architecture, image_size=SIZE, color_mode=color_mode,
                       epochs=1, steps_per_epoch=1, validation_steps=1, batch_size=2,
                       early_stopping_patience=0, seed=5, precision=precision_setting)
  jpegs = _jpegs(4)
  images = preprocess.decode_batch(tf.constant(jpegs), SIZE, color_mode)
  labels = tf.constant([0.0, 1.0, 0.0, 1.0])
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2).repeat()
  run_dir = tmp_path / 'run'
  keras_model, summary = training.train(config, dataset, dataset, {0: 2, 1: 2}, str(run_dir))

  assert keras_model.name == architecture
  assert keras_model.input_shape == (None, SIZE, SIZE, preprocess.channels_for(color_mode))
  assert keras_model.get_layer(model_lib.OUTPUT_LAYER).output_shape == (None, 1)
  assert summary['epochs_run'] == 1 and np.isfinite(summary['history']['loss'][0])
  # Grad-CAM's layer is a spatial feature map of this model.
  assert len(keras_model.get_layer(model_lib.grad_cam_layer(keras_model)).output_shape) == 4
  png = (run_dir / curves.LEARNING_CURVES_FILE).read_bytes()
  assert png.startswith(b'\x89PNG') and len(png) > 1000

  signatures = _signatures(keras_model, color_mode, str(tmp_path / 'serving'),
                           saved=architecture in SAVED_AND_LOADED)
  batch = tf.constant(jpegs)
  served = signatures[contract.SERVING_SIGNATURE](image_bytes=batch)
  probability = served[contract.PROBABILITY_KEY].numpy()
  # Like with like: the export is the float32 rebuild of the trained model (precision.py),
  # so it must give that rebuild's numbers to float32 rounding, whatever the training
  # precision. (The bfloat16 model itself differs by up to ~3e-4: its 8-bit mantissa.)
  served_model = precision.float32_copy(keras_model)
  np.testing.assert_allclose(
      probability, served_model(images, training=False).numpy().reshape(-1), rtol=1e-4, atol=1e-5)
  if precision.resolve(precision_setting) == 'mixed_bfloat16':
    assert served_model is not keras_model
    # bfloat16 keeps 8 significant bits: relative error 2^-8 per rounding; a probability
    # through a few layers stays within a few percent of the float32 one.
    np.testing.assert_allclose(
        probability, keras_model(images, training=False).numpy().reshape(-1), atol=0.05)
  from_examples = signatures[contract.EXAMPLES_SIGNATURE](
      examples=tf.constant([_example(j).SerializeToString() for j in jpegs]))
  np.testing.assert_allclose(from_examples[contract.PROBABILITY_KEY].numpy(), probability,
                             rtol=1e-5, atol=1e-6)
  explained = signatures[contract.EXPLAIN_SIGNATURE](image_bytes=batch)
  heatmap = explained[contract.HEATMAP_KEY].numpy()
  assert heatmap.shape == (4, SIZE, SIZE)
  assert np.all(np.isfinite(heatmap)) and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
  # Grad-CAM's P(fake) comes from the head's logit: the same number serving gives.
  np.testing.assert_allclose(explained[contract.PROBABILITY_KEY].numpy(), probability,
                             rtol=1e-4, atol=1e-5)
  parameters = signatures[contract.FACE_PREPARATION_SIGNATURE](query=tf.constant([b'q']))
  assert parameters[contract.PARAMETERS_KEY].shape == (1,)


def test_every_configured_name_builds_and_bad_sizes_are_named():
  assert tuple(model_lib.ARCHITECTURES) == ARCHITECTURE_NAMES
  with pytest.raises(ValueError, match='image_size must be at least 32 for resnet50'):
    model_lib.build_model('resnet50', 16, 1)


def test_flops_count_the_backbone_layers():
  # VGG16's 13 convolutions at 224x224x3 are 15,346,630,656 multiply-adds (the
  # published 15.5 G minus its dense layers), 2 FLOPs each; the head adds a
  # 7x7x512 -> 128 -> 1 dense pair. Counted from the flattened layers, so a
  # nested backbone (counted as 0) would fail this.
  net = model_lib.build_model('vgg16', 224, 3)
  head = 2 * (7 * 7 * 512 * 128 + 128)
  assert flops.model_flops(net)['forward'] == 2 * 15_346_630_656 + head


def test_learning_curves_png(tmp_path):
  history = {'loss': [0.7, 0.5, 0.4], 'val_loss': [0.69, 0.6, 0.65],
             'auc': [0.55, 0.7, 0.8], 'val_auc': [0.52, 0.6, 0.58]}
  path = curves.plot_learning_curves(history, str(tmp_path / 'deep' / 'curves.png'),
                                     title='vgg10', best_epoch=2)
  with Image.open(path) as image:
    assert image.format == 'PNG'
    width, height = curves.FIGURE_INCHES
    assert image.size == (width * curves.DPI, height * curves.DPI)
    pixels = np.asarray(image.convert('L'))
  assert pixels.std() > 10  # lines and text, not a blank canvas
  with pytest.raises(ValueError, match='no per-epoch loss'):
    curves.plot_learning_curves({'auc': [0.5]}, str(tmp_path / 'x.png'))


def test_unknown_model_explains_its_last_convolution():
  inputs = keras.Input((8, 8, 1))
  x = keras.layers.Conv2D(2, 3, name='first')(inputs)
  x = keras.layers.Conv2D(2, 3, name='second')(x)
  assert model_lib.grad_cam_layer(keras.Model(inputs, x, name='custom')) == 'second'
  dense_only = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
  with pytest.raises(ValueError, match='no Conv2D layer'):
    model_lib.grad_cam_layer(dense_only)
