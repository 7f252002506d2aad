"""Turns the bytes of an input file into an 8-bit RGB image, or says why not.

Real datasets contain files that are empty, truncated, not images at all,
CMYK, 16-bit, transparent or absurdly large. Each becomes either a normal RGB
`PIL.Image` or an `ImageProblem` whose message names what is wrong, so the
caller can account for the file instead of crashing the run.

Formats: whatever Pillow reads (JPEG, PNG, GIF, BMP, TIFF, WebP, AVIF, ...)
plus HEIC/HEIF, every iPhone's default photo format, through the pillow-heif
plugin (libheif). EXIF orientation is applied the same way for all of them.
A file that cannot be read gets a reason naming its format, as recognised from
its first bytes (`sniff_format`), never the repr of a Python object.
"""

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

try:
  import pillow_heif  # pylint: disable=g-import-not-at-top
  # libheif applies the HEIF rotation/mirror boxes while decoding and pillow-heif then
  # resets the EXIF orientation to 1, so exif_transpose below cannot rotate twice.
  pillow_heif.register_heif_opener()
  HEIF_DECODER = f'pillow-heif {pillow_heif.__version__}'
except ImportError:  # the error for a HEIC file then says what is missing
  HEIF_DECODER = ''


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


# ISO base media "ftyp" major/compatible brands -> the format people know them by.
_HEIF_BRANDS = {b'heic': 'HEIC', b'heix': 'HEIC', b'heim': 'HEIC', b'heis': 'HEIC',
                b'hevc': 'HEIC', b'hevx': 'HEIC', b'hevm': 'HEIC', b'hevs': 'HEIC',
                b'mif1': 'HEIF', b'msf1': 'HEIF', b'avif': 'AVIF', b'avis': 'AVIF'}
_MAGIC = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'), (b'GIF8', 'GIF'),
          (b'BM', 'BMP'), (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'), (b'%PDF', 'PDF document'),
          (b'PK\x03\x04', 'ZIP archive'), (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'),
          (b'\xff\x0a', 'JPEG XL'), (b'\x00\x00\x00\x0cJXL ', 'JPEG XL'), (b'8BPS', 'Photoshop PSD'))
_OBJECT_REPR = re.compile(r'<[^<>]*? at 0x[0-9a-fA-F]+>')


def sniff_format(data: bytes) -> str:
  """The file format named by the first bytes of `data` ('HEIC', 'JPEG', ...), or ''."""
  head = data[:64]
  if head[4:8] == b'ftyp':
    brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(len(head), 40), 4)]
    for brand in brands:
      if brand in _HEIF_BRANDS:
        return _HEIF_BRANDS[brand]
    return f'ISO media ({head[8:12].decode("ascii", "replace").strip()}), e.g. a video'
  if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
    return 'WebP'
  for magic, name in _MAGIC:
    if head.startswith(magic):
      return name
  text = head.lstrip().lower()
  if text.startswith((b'<!doctype html', b'<html')):
    return 'HTML page'
  if text.startswith((b'<svg', b'<?xml')):
    return 'SVG/XML document'
  return ''


def error_text(error: Exception) -> str:
  """`error` as text without object reprs (`<_io.BytesIO object at 0x...>`)."""
  return _OBJECT_REPR.sub('the data', str(error)).strip()


def _unreadable(data: bytes, error: Exception, decoding: bool) -> ImageProblem:
  """The reason a file cannot be read, naming its format (from its first bytes)."""
  kind = sniff_format(data)
  if kind in ('HEIC', 'HEIF') and not HEIF_DECODER:
    return ImageProblem(UNREADABLE, f'not a readable image: {kind} photo, and no HEIF decoder '
                        'is installed (pip install pillow-heif)')
  if not kind:
    return ImageProblem(UNREADABLE, f'not a readable image: the first bytes '
                        f'({data[:8].hex(" ")}) match no image format this reader knows')
  if not isinstance(error, Image.UnidentifiedImageError):
    detail = f' ({error_text(error)})'
  else:
    detail = ''
  if kind.endswith(('document', 'page', 'archive')) or kind.startswith('ISO media'):
    return ImageProblem(UNREADABLE, f'not a readable image: the file is a {kind}, not a photo')
  return ImageProblem(UNREADABLE, f'not a readable image: {kind} file that cannot be '
                      f'{"decoded" if decoding else "opened"}: it is truncated or damaged{detail}')


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
    raise ImageProblem(FILTERED, f'image too large (decompression-bomb guard): {error_text(e)}') from e
  except Exception as e:  # PIL raises many exception types on junk  # pylint: disable=broad-except
    raise _unreadable(data, e, decoding=False) from e
  width, height = image.size
  if width * height > max_pixels:
    raise ImageProblem(
        FILTERED, f'image is {width}x{height} = {width * height} pixels, over '
        f'ingest.face.max_image_pixels {max_pixels} (decompression-bomb guard)')
  if width == 0 or height == 0:
    raise ImageProblem(UNREADABLE, f'image has no pixels ({width}x{height})')
  try:
    image.load()
    # Phone photos store rotation in EXIF. In place, and no convert of an RGB image: each
    # copy of a 12 Mpx photo costs ~25 ms (docs/performance.md, "Photo latency").
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
      image = _to_8bit(image)
    if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and 'transparency' in image.info):
      return _flatten_alpha(image)
    return image if image.mode == 'RGB' else image.convert('RGB')
  except Exception as e:  # truncated data surfaces only when decoding  # pylint: disable=broad-except
    raise _unreadable(data, e, decoding=True) from e


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
  """`image` as JPEG bytes at `quality` (1-95, Pillow's scale), Pillow's default settings.

  Every JPEG the project writes goes through here (crops, the shared treatment,
  previews, demo images), so equal pixels and quality give equal bytes everywhere.

  Raises:
    OSError: a mode JPEG cannot hold (e.g. RGBA): convert to 'RGB' first.
  """
  buf = io.BytesIO()
  image.save(buf, format='JPEG', quality=quality)
  return buf.getvalue()
