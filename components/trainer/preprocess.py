"""Image preprocessing shared by training, `serving_default` and `from_examples`.

Training and both exported signatures call `decode_image` and nothing else, so
a model can never see one preprocessing at training time and another when
served.
"""

import tensorflow as tf

CHANNELS = {'grayscale': 1, 'rgb': 3}


def channels_for(color_mode: str) -> int:
  try:
    return CHANNELS[color_mode]
  except KeyError:
    raise ValueError(f'color_mode must be one of {sorted(CHANNELS)}, got {color_mode!r}') from None


def decode_image(image_bytes: tf.Tensor, image_size: int, color_mode: str) -> tf.Tensor:
  """Encoded JPEG/PNG/GIF/BMP bytes (scalar) -> float32 [size, size, channels] in [0, 1].

  Accepts any size and channel count: grayscale is expanded, alpha is dropped,
  16-bit PNGs are scaled down to 8 bits by `decode_image`.
  """
  image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
  image = tf.image.convert_image_dtype(image, tf.float32)
  image = tf.image.resize(image, [image_size, image_size], method='bilinear', antialias=True)
  if channels_for(color_mode) == 1:
    image = tf.image.rgb_to_grayscale(image)
  image = tf.clip_by_value(image, 0.0, 1.0)
  image.set_shape([image_size, image_size, channels_for(color_mode)])
  return image


def decode_batch(image_bytes: tf.Tensor, image_size: int, color_mode: str) -> tf.Tensor:
  """[batch] encoded bytes -> [batch, size, size, channels] floats."""
  return tf.map_fn(
      lambda b: decode_image(b, image_size, color_mode),
      image_bytes,
      fn_output_signature=tf.TensorSpec([image_size, image_size, channels_for(color_mode)],
                                        tf.float32))
