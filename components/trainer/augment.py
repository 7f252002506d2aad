"""Processing-history augmentation: random resize, blur and JPEG re-compression.

Sources of face photos differ in how they were processed (resizes, JPEG
generations); a detector trained on them learns those traces as evidence of
"real" or "fake" (README: "No source shortcut"). Randomising them during
training makes them unreliable evidence. Training only: the serving signature
never augments.
"""

import tensorflow as tf

from fakefaces.components.trainer.config import TrainConfig


def augments(config: TrainConfig) -> bool:
  """Whether `config` asks for any processing-history augmentation."""
  return bool(config.augment_jpeg_quality or config.augment_blur_sigma or
              config.augment_min_scale)


def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """[h, w, c] float image blurred with a 7-tap separable Gaussian of width `sigma`."""
  taps = tf.range(-3, 4, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-3)))
  kernel /= tf.reduce_sum(kernel)
  channels = tf.shape(image)[-1]
  x = image[tf.newaxis]
  row = tf.tile(tf.reshape(kernel, [1, 7, 1, 1]), [1, 1, channels, 1])
  col = tf.tile(tf.reshape(kernel, [7, 1, 1, 1]), [1, 1, channels, 1])
  x = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [0, 0], [3, 3], [0, 0]], 'SYMMETRIC'), row,
                             [1, 1, 1, 1], 'VALID')
  x = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [3, 3], [0, 0], [0, 0]], 'SYMMETRIC'), col,
                             [1, 1, 1, 1], 'VALID')
  return x[0]


def augment_history(image: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
  """Random resize, blur and JPEG re-compression of a [size, size, c] image in [0, 1].

  Stateless, keyed by `seed` ([2] int64), like the flip. Applied in the order
  processing happens to a photo: resampled, softened, compressed.
  """
  size = image.shape[0]
  seeds = tf.random.experimental.stateless_split(seed, 7)

  def maybe(k, fn, x):
    apply = tf.random.stateless_uniform([], seeds[k]) < config.augment_probability
    return tf.cond(apply, lambda: fn(x), lambda: x)

  if config.augment_min_scale:
    def rescale(x):
      scale = tf.random.stateless_uniform([], seeds[1], config.augment_min_scale, 1.0)
      small = tf.cast(tf.round(scale * size), tf.int32)
      x = tf.image.resize(x, [small, small], method='area')
      return tf.image.resize(x, [size, size], method='bilinear')
    image = maybe(0, rescale, image)
  if config.augment_blur_sigma:
    image = maybe(2, lambda x: _gaussian_blur(
        x, tf.random.stateless_uniform([], seeds[3], 0.3, config.augment_blur_sigma)), image)
  if config.augment_jpeg_quality:
    low, high = config.augment_jpeg_quality
    image = maybe(4, lambda x: tf.image.stateless_random_jpeg_quality(
        x, low, high, tf.cast(seeds[5], tf.int32)), image)
  image = tf.clip_by_value(image, 0.0, 1.0)
  image.set_shape([size, size, image.shape[-1]])
  return image
