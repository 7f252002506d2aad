"""Image preprocessing shared by training, `serving_default` and `from_examples`.

Training (`data.py`), the report command and both exported signatures decode
through `decode_image` and nothing else, so a model can never see one
preprocessing at training time and another when served. The only step that
differs is `random_flip`, a training-only augmentation applied afterwards.
"""

import tensorflow as tf

CHANNELS = {'grayscale': 1, 'rgb': 3}

# Leading bytes of the formats tf.io.decode_image reads. Checked up front so a
# bad request fails with a message naming the element, not a codec error.
_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'GIF8', b'BM')


def channels_for(color_mode: str) -> int:
  try:
    return CHANNELS[color_mode]
  except KeyError:
    raise ValueError(f'color_mode must be one of {sorted(CHANNELS)}, got {color_mode!r}') from None


def is_supported_image(image_bytes: tf.Tensor) -> tf.Tensor:
  """Scalar bool: do the bytes start like a JPEG, PNG, GIF or BMP file?"""
  return tf.reduce_any([tf.strings.substr(image_bytes, 0, len(m)) == m for m in _MAGIC])


def _checked(image_bytes: tf.Tensor, message: tf.Tensor) -> tf.Tensor:
  """`image_bytes`, only after asserting they look like an image (else `message`)."""
  # The explicit dependency orders the check before the codec, also inside
  # map_fn's loop body where automatic control dependencies do not apply.
  check = tf.debugging.Assert(is_supported_image(image_bytes), [message])
  with tf.control_dependencies([check]):
    return tf.identity(image_bytes)


def decode_image(image_bytes: tf.Tensor, image_size: int, color_mode: str) -> tf.Tensor:
  """Encoded JPEG/PNG/GIF/BMP bytes (scalar) -> float32 [size, size, channels] in [0, 1].

  Accepts any size and channel count: grayscale is expanded to RGB first, alpha
  is dropped, 16-bit PNGs are scaled to 8 bits, a GIF gives its first frame.
  Grayscale is the JPEG's own luma plane for JPEGs and the ITU-R 601 weighted
  sum of R, G, B for everything else (the same weights JPEG uses). Bytes that
  are no image raise InvalidArgumentError.
  """
  channels = channels_for(color_mode)
  image_bytes = _checked(image_bytes, tf.strings.format(
      'image bytes are not an encoded JPEG, PNG, GIF or BMP image; they start with {}',
      tf.strings.substr(image_bytes, 0, 8)))

  def decode_rgb():
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    # Grayscale before resizing: both are linear, and this resizes 1 channel, not 3.
    return tf.image.rgb_to_grayscale(image) if channels == 1 else image

  def decode_jpeg_luma():
    # A JPEG stores luma: decoding only that is ~2x faster than RGB + conversion
    # and equal to it within JPEG rounding. CMYK JPEGs have no luma plane.
    return tf.cond(
        tf.equal(tf.io.extract_jpeg_shape(image_bytes)[2], 4), decode_rgb,
        lambda: tf.image.convert_image_dtype(tf.io.decode_jpeg(image_bytes, channels=1),
                                             tf.float32))

  image = tf.cond(tf.io.is_jpeg(image_bytes), decode_jpeg_luma, decode_rgb) if channels == 1 \
      else decode_rgb()
  # Antialiased resizing to the same size is the identity, bit for bit, and the
  # costliest step of the input pipeline (~4x decoding), so skip it then.
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  image = tf.cond(
      tf.logical_and(tf.equal(height, image_size), tf.equal(width, image_size)),
      lambda: image,
      lambda: tf.image.resize(image, [image_size, image_size], method='bilinear', antialias=True))
  image = tf.clip_by_value(image, 0.0, 1.0)  # antialiased resampling can overshoot slightly
  image.set_shape([image_size, image_size, channels])
  return image


def decode_batch(image_bytes: tf.Tensor, image_size: int, color_mode: str) -> tf.Tensor:
  """[batch] encoded bytes -> [batch, size, size, channels] float32.

  The error for an undecodable element names its index in the batch.
  """
  image_bytes = tf.convert_to_tensor(image_bytes, tf.string)

  def decode_one(args):
    data, index = args
    data = _checked(data, tf.strings.format(
        'image_bytes[{}] is not an encoded JPEG, PNG, GIF or BMP image', index))
    return decode_image(data, image_size, color_mode)

  indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
  return tf.map_fn(
      decode_one, (image_bytes, indices),
      fn_output_signature=tf.TensorSpec([image_size, image_size, channels_for(color_mode)],
                                        tf.float32))


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Training-only augmentation: horizontal flip with probability 1/2.

  Stateless, keyed by `seed` (shape [2] int), so a run is reproducible even
  with parallel map calls.
  """
  return tf.image.stateless_random_flip_left_right(image, seed=seed)
