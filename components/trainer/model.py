"""The CNNs of "Fighting Fakes Fairly", built with tf_keras (Keras 2).

`vgg10` is the paper's best model: 10 weight layers, i.e. 8 convolutions
(3x3, ReLU, 'same' padding) and 2 dense layers (128 ReLU, then 1 sigmoid).
The convolutions form three VGG blocks:

    block1: 32, 32      -> batch norm -> 2x2 max pool
    block2: 64, 64      -> batch norm -> 2x2 max pool
    block3: 128 x 4     -> batch norm -> 2x2 max pool

Why three blocks (32,32 | 64,64 | 128,128,128,128) and not four blocks of two
(32,32 | 64,64 | 128,128 | 128,128), which an earlier version of this file used:
the paper lists the filters as 32, 32, 64, 64 and then four convolutions of
128, and VGG's design rule is that every pooling step doubles the filter
count. Four-of-two would put a pool between two 128-filter blocks without
doubling, which no VGG variant does; VGG itself grows the *last* blocks in
depth (VGG-16: 2,2,3,3,3; VGG-19: 2,2,4,4,4), exactly like a final block of
four. Both readings have 8 convolutions and the name VGG10 either way, so the
filter sequence and the VGG rule decide. At 128x128 input the flattened
features are 16x16x128.

`baseline` is the paper's 3-convolution reference network (32, 64, 128), one
pool after each convolution, same dense head.

`vgg16`, `resnet50` and `densenet121` are the paper's deeper comparisons: the
convolutional part of `tf_keras.applications` (`include_top=False`,
`weights=None`: trained from scratch, nothing downloaded) on the same input
(any channel count, so grayscale works), followed by the same head. Their
batch norm layers get momentum 0.9 like VGG10's, for the reason given in
`_features_vgg10`. Each architecture names the layer whose output Grad-CAM
explains (`grad_cam_layer`): the last feature map before the head, i.e. for
ResNet-50 the block output after the residual add, and for DenseNet-121 the
final batch norm + ReLU, not their last Conv2D (a 32-channel growth
convolution inside a dense block, for DenseNet). Measured comparison:
docs/architectures.md.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf
import tf_keras as keras

from fakefaces.components.trainer.config import ARCHITECTURE_NAMES

VGG10_BLOCKS = ((32, 32), (64, 64), (128, 128, 128, 128))
BASELINE_FILTERS = (32, 64, 128)
DENSE_UNITS = 128
BATCH_NORM_MOMENTUM = 0.9
INPUT_FILTERS = ('none', 'highpass')
# The residual is scaled so its spread matches the pixels': std 0.036 against 0.23 on the
# quality bench's crops (bench/quality.py, 64 px centre crops of gan_faces/k140/FairFace).
# Without it the first epochs start near p = 0.5 everywhere and learn slowly.
HIGHPASS_GAIN = 6.0
STEM_FILTERS = 32  # filters of each full-resolution stem convolution (as VGG's first block)
OUTPUT_LAYER = 'fake_probability'  # the final sigmoid layer (export's Grad-CAM reads its weights)
OPTIMIZERS = {'adam': keras.optimizers.Adam, 'sgd': keras.optimizers.SGD,
              'rmsprop': keras.optimizers.RMSprop}


def _features_vgg10(x):
  for i, block in enumerate(VGG10_BLOCKS, start=1):
    for j, filters in enumerate(block, start=1):
      x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu',
                              name=f'block{i}_conv{j}')(x)
    # momentum 0.9, not Keras' 0.99: inference uses the moving statistics, and
    # at 0.99 they still weigh their initial values by ~50% after 70 steps, so a
    # short run (the demo's) scores at chance on held-out data despite fitting.
    x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f'block{i}_bn')(x)
    x = keras.layers.MaxPooling2D(2, name=f'block{i}_pool')(x)
  return x


def _features_baseline(x):
  for i, filters in enumerate(BASELINE_FILTERS, start=1):
    x = keras.layers.Conv2D(filters, 3, padding='same', activation='relu', name=f'conv{i}')(x)
    x = keras.layers.MaxPooling2D(2, name=f'pool{i}')(x)
  return x


def _application(constructor):
  """Features from a tf_keras.applications backbone, built on the given tensor.

  Built on the tensor (`input_tensor`), not called as a nested model, so its
  layers are the model's own: Grad-CAM finds its layer by name and
  `flops.model_flops` counts every convolution.
  """

  def features(x):
    backbone = constructor(include_top=False, weights=None, input_tensor=x)
    for layer in backbone.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = BATCH_NORM_MOMENTUM  # read when the training step is traced
    return backbone.output

  return features


@dataclasses.dataclass(frozen=True)
class Architecture:
  features: Callable  # image tensor [batch, size, size, channels] -> feature map tensor
  grad_cam_layer: str  # layer whose output is the feature map Grad-CAM weighs
  min_size: int  # smallest image side in pixels the architecture accepts


# keras.applications refuse inputs under 32 px (their pooling would reach 0 px).
ARCHITECTURES = {
    'baseline': Architecture(_features_baseline, f'conv{len(BASELINE_FILTERS)}',
                             2**len(BASELINE_FILTERS)),
    'vgg10': Architecture(_features_vgg10, f'block{len(VGG10_BLOCKS)}_conv{len(VGG10_BLOCKS[-1])}',
                          2**len(VGG10_BLOCKS)),
    'vgg16': Architecture(_application(keras.applications.VGG16), 'block5_conv3', 32),
    'resnet50': Architecture(_application(keras.applications.ResNet50), 'conv5_block3_out', 32),
    'densenet121': Architecture(_application(keras.applications.DenseNet121), 'relu', 32),
}
if tuple(ARCHITECTURES) != ARCHITECTURE_NAMES:
  raise AssertionError(f'model.ARCHITECTURES {tuple(ARCHITECTURES)} and config.ARCHITECTURE_NAMES '
                       f'{ARCHITECTURE_NAMES} disagree')


def grad_cam_layer(model: keras.Model) -> str:
  """Name of the layer whose output Grad-CAM explains, for a model built by `build_model`.

  A model of another origin (its name is no architecture here) gets its last
  Conv2D layer; raises ValueError when it has none.
  """
  if model.name in ARCHITECTURES:
    return ARCHITECTURES[model.name].grad_cam_layer
  convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
  if not convs:
    raise ValueError(f'model {model.name} has no Conv2D layer to explain')
  return convs[-1]


@keras.utils.register_keras_serializable(package='fakefaces')
class HighPassResidual(keras.layers.Layer):
  """The image minus its 2x down-up copy: a fixed high-pass residual, [b, h, w, c] -> same.

  Down: 2x2 average (area) pooling; up: bilinear resize back to h x w. What is
  left is the top octave of the spectrum, where GAN upsampling leaves its
  traces, without the face's content: a smooth image gives ~0, a 1-px
  checkerboard survives at half its amplitude (times HIGHPASS_GAIN). Part of the model, so the
  serving signatures apply it too. Reported lead, not re-measured by a bench here (small CNN, 128 px
  RGB gan_faces, 3 epochs): AUC 0.986 with this input against 0.75 on raw pixels.
  h and w must be even.
  """

  def call(self, inputs):
    size = tf.shape(inputs)[1:3]
    low = tf.nn.avg_pool2d(inputs, ksize=2, strides=2, padding='VALID')
    low = tf.cast(tf.image.resize(low, size, method='bilinear'), inputs.dtype)
    return (inputs - low) * HIGHPASS_GAIN


def input_stage(inputs, input_filter: str = 'none', full_resolution_convs: int = 0):
  """What the architecture's first block sees: the fixed filter, then the full-resolution stem.

  `full_resolution_convs` 3x3 convolutions (STEM_FILTERS each, ReLU) before the
  architecture's first pooling, so pixel-level evidence is combined before it
  is averaged away (`baseline` pools after its first convolution).
  """
  if input_filter not in INPUT_FILTERS:
    raise ValueError(f'train.input_filter must be one of {list(INPUT_FILTERS)}, '
                     f'got {input_filter!r}')
  if not 0 <= full_resolution_convs <= 4:
    raise ValueError(f'train.full_resolution_convs must be in 0..4, got {full_resolution_convs}')
  x = inputs
  if input_filter == 'highpass':
    x = HighPassResidual(name='highpass_residual')(x)
  for i in range(1, full_resolution_convs + 1):
    x = keras.layers.Conv2D(STEM_FILTERS, 3, padding='same', activation='relu',
                            name=f'stem_conv{i}')(x)
  return x


def build_model(architecture: str, image_size: int, channels: int, dropout: float = 0.0,
                learning_rate=1e-3, optimizer: str = 'adam',
                seed: Optional[int] = None, input_filter: str = 'none',
                full_resolution_convs: int = 0) -> keras.Model:
  """Returns a compiled binary classifier whose single output is P(fake).

  Build it inside the distribution strategy's scope; under a mixed-precision
  policy the layers compute in float16 but the output stays float32.
  `learning_rate` is a float or a keras LearningRateSchedule; `input_filter`
  and `full_resolution_convs` choose the input stage (`input_stage`).
  """
  if architecture not in ARCHITECTURES:
    raise ValueError(f'architecture must be one of {ARCHITECTURE_NAMES}, got {architecture!r}')
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}')
  min_size = ARCHITECTURES[architecture].min_size
  if image_size < min_size:
    raise ValueError(f'image_size must be at least {min_size} for {architecture}, got {image_size}')
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f'dropout must be in [0, 1), got {dropout}')
  inputs = keras.Input(shape=(image_size, image_size, channels), name='image')
  if input_filter == 'highpass' and image_size % 2:
    raise ValueError(f'train.image_size must be even for input_filter highpass, got {image_size}')
  x = ARCHITECTURES[architecture].features(input_stage(inputs, input_filter, full_resolution_convs))
  x = keras.layers.Flatten(name='flatten')(x)
  x = keras.layers.Dense(DENSE_UNITS, activation='relu', name='dense')(x)
  if dropout:
    x = keras.layers.Dropout(dropout, seed=seed, name='dropout')(x)
  # float32 output even under mixed precision, so probabilities stay exact.
  outputs = keras.layers.Dense(1, activation='sigmoid', dtype='float32', name=OUTPUT_LAYER)(x)
  model = keras.Model(inputs, outputs, name=architecture)
  model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate),
                loss='binary_crossentropy',
                metrics=[keras.metrics.BinaryAccuracy(name='accuracy'),
                         keras.metrics.AUC(name='auc')])
  return model
