"""Turns the bytes of an input file into an 8-bit RGB image, or says why not.

Real datasets contain files that are empty, truncated, not images at all,
CMYK, 16-bit, transparent or absurdly large. Each becomes either a normal RGB
`PIL.Image` or an `ImageProblem` whose message names what is wrong, so the
caller can account for the file instead of crashing the run.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps


class ImageProblem(Exception):
  """The file cannot become an image. `outcome` is 'unreadable' or 'filtered'."""

  def __init__(self, outcome: str, reason: str):
    super().__init__(reason)
    self.outcome = outcome
    self.reason = reason


UNREADABLE, FILTERED = 'unreadable', 'filtered'
_HIGH_BIT_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


def _to_8bit(image: Image.Image) -> Image.Image:
  """Maps 16/32-bit integer or float grey levels to 0..255 instead of clipping.

  PIL's own convert('RGB') clips everything above 255, which turns a normal
  16-bit photo white.
  """
  values = np.asarray(image, dtype=np.float64)
  if image.mode == 'F':
    top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
  else:
    top = 65535.0 if values.max(initial=0.0) > 255 else 255.0
  scaled = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return Image.fromarray(scaled, mode='L')


def _flatten_alpha(image: Image.Image) -> Image.Image:
  """Composites transparency over white: dropping alpha would expose the often black RGB."""
  rgba = image.convert('RGBA')
  background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
  return Image.alpha_composite(background, rgba).convert('RGB')


def decode_rgb(data: bytes, max_pixels: int) -> Image.Image:
  """Decodes `data` to an upright 8-bit RGB image.

  Raises:
    ImageProblem: the data is empty, not a decodable image, or has more than
      `max_pixels` pixels (checked from the header, before any pixel is decoded).
  """
  if not data:
    raise ImageProblem(UNREADABLE, 'file is empty (0 bytes)')
  try:
    with warnings.catch_warnings():
      # Our own limit below decides; PIL's warning/error is only its fallback.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise ImageProblem(FILTERED, f'image too large (decompression-bomb guard): {e}') from e
  except Exception as e:  # PIL raises many exception types on junk  # pylint: disable=broad-except
    raise ImageProblem(UNREADABLE, f'not a readable image: {type(e).__name__}: {e}') from e
  width, height = image.size
  if width * height > max_pixels:
    raise ImageProblem(
        FILTERED, f'image is {width}x{height} = {width * height} pixels, over '
        f'ingest.max_image_pixels {max_pixels} (decompression-bomb guard)')
  if width == 0 or height == 0:
    raise ImageProblem(UNREADABLE, f'image has no pixels ({width}x{height})')
  try:
    image.load()
    image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF
    if image.mode in _HIGH_BIT_DEPTH_MODES:
      image = _to_8bit(image)
    if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and 'transparency' in image.info):
      return _flatten_alpha(image)
    return image.convert('RGB')
  except Exception as e:  # truncated data surfaces only when decoding  # pylint: disable=broad-except
    raise ImageProblem(UNREADABLE, f'cannot decode image: {type(e).__name__}: {e}') from e


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
  buf = io.BytesIO()
  image.save(buf, format='JPEG', quality=quality)
  return buf.getvalue()
