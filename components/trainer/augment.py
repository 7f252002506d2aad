"""Processing-history augmentation: random resize, blur and JPEG re-compression.

Sources of face photos differ in how they were processed (resizes, JPEG
generations); a detector trained on them learns those traces as evidence of
"real" or "fake" (docs/training_and_quality.md, "The source shortcut"). Randomising them during
training makes them unreliable evidence. Training only: the serving signature
never augments.
"""

import tensorflow as tf

from fakefaces.components.trainer.config import TrainConfig


# tf.image.resize methods the resampling draws from (photos are resized by all of them).
RESIZE_FILTERS = ('area', 'bilinear', 'bicubic', 'lanczos3', 'nearest', 'mitchellcubic',
                  'gaussian', 'lanczos5')


def augments(config: TrainConfig) -> bool:
  """Whether `config` asks for any processing-history augmentation."""
  return bool(config.augment_jpeg_quality or config.augment_blur_sigma or
              config.augment_min_scale or config.augment_noise_sigma)


def check_config(config: TrainConfig) -> None:
  """Raises ValueError naming the `train.` field for augmentation values out of range."""
  if config.augment_jpeg_quality and not (
      len(config.augment_jpeg_quality) == 2 and
      1 <= config.augment_jpeg_quality[0] < config.augment_jpeg_quality[1] <= 100):
    raise ValueError('train.augment_jpeg_quality must be [] or [low, high] with 1 <= low < high '
                     f'<= 100, got {config.augment_jpeg_quality}')
  if config.augment_jpeg_twice and not config.augment_jpeg_quality:
    raise ValueError('train.augment_jpeg_twice needs train.augment_jpeg_quality [low, high]')
  if not 0.0 <= config.augment_probability <= 1.0:
    raise ValueError(f'train.augment_probability must be in [0, 1], got '
                     f'{config.augment_probability}')
  if config.augment_blur_sigma < 0:
    raise ValueError(f'train.augment_blur_sigma must be >= 0, got {config.augment_blur_sigma}')
  if config.augment_min_scale and not 0.1 <= config.augment_min_scale < 1.0:
    raise ValueError(f'train.augment_min_scale must be 0 (off) or in [0.1, 1), got '
                     f'{config.augment_min_scale}')
  unknown = [f for f in config.augment_resize_filters if f not in RESIZE_FILTERS]
  if unknown or not config.augment_resize_filters:
    raise ValueError(f'train.augment_resize_filters must be a non-empty list of '
                     f'{list(RESIZE_FILTERS)}, got {config.augment_resize_filters}')
  if not 0.0 <= config.augment_noise_sigma <= 0.2:
    raise ValueError(f'train.augment_noise_sigma must be in [0, 0.2], got '
                     f'{config.augment_noise_sigma}')


def _resize(image: tf.Tensor, size: tf.Tensor, filters, pick: tf.Tensor) -> tf.Tensor:
  """`image` resized to size x size with filter number `pick` of `filters`."""
  branches = [lambda f=f: tf.image.resize(image, [size, size], method=f) for f in filters]
  return tf.switch_case(pick, branches)


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
  """Random resampling, blur, noise and JPEG re-compression of a [size, size, c] image in [0, 1].

  Stateless, keyed by `seed` ([2] int64), like the flip; the label is not an
  input, so both classes draw their operations from one distribution. Applied
  in the order processing happens to a photo: resampled (down by a factor in
  [augment_min_scale, 1), back up, each with a filter drawn from
  augment_resize_filters), softened, sensor noise, compressed (once, or twice
  at independent qualities).
  """
  size = image.shape[0]
  seeds = tf.random.experimental.stateless_split(seed, 12)
  filters = list(config.augment_resize_filters)

  def maybe(k, fn, x):
    apply = tf.random.stateless_uniform([], seeds[k]) < config.augment_probability
    return tf.cond(apply, lambda: fn(x), lambda: x)

  def pick(k):
    return tf.random.stateless_uniform([], seeds[k], 0, len(filters), dtype=tf.int32)

  if config.augment_min_scale:
    def rescale(x):
      scale = tf.random.stateless_uniform([], seeds[1], config.augment_min_scale, 1.0)
      small = tf.cast(tf.round(scale * size), tf.int32)
      x = _resize(x, small, filters, pick(6))
      return _resize(x, tf.constant(size), filters, pick(7))
    image = maybe(0, rescale, image)
  if config.augment_blur_sigma:
    image = maybe(2, lambda x: _gaussian_blur(
        x, tf.random.stateless_uniform([], seeds[3], 0.3, config.augment_blur_sigma)), image)
  if config.augment_noise_sigma:
    def noise(x):
      sigma = tf.random.stateless_uniform([], seeds[9], 0.0, config.augment_noise_sigma)
      return x + sigma * tf.random.stateless_normal(tf.shape(x), seeds[10])
    image = maybe(8, noise, image)
  if config.augment_jpeg_quality:
    low, high = config.augment_jpeg_quality
    image = tf.clip_by_value(image, 0.0, 1.0)  # JPEG encodes 8-bit pixels
    image = maybe(4, lambda x: tf.image.stateless_random_jpeg_quality(
        x, low, high, tf.cast(seeds[5], tf.int32)), image)
    if config.augment_jpeg_twice:
      image = maybe(11, lambda x: tf.image.stateless_random_jpeg_quality(
          x, low, high, tf.cast(tf.reverse(seeds[5], [0]), tf.int32)), image)
  image = tf.clip_by_value(image, 0.0, 1.0)
  image.set_shape([size, size, image.shape[-1]])
  return image
