"""The same treatment for every source: crop, resampling and re-encoding.

Sources differ in how their images were made, and a detector learns those
differences as readily as GAN artefacts. After dlib alignment of the shared
data, FairFace's loose 224 px crops leave the FFHQ square with wide blurred
reflect padding that no FFHQ photo shows, and FairFace faces span fewer
pixels (softer) than the 128 px FFHQ thumbnails. A linear probe on 32x32
pixels plus an FFT profile tells the two apart with AUC 0.996.

`equalize` applies, after alignment and identically to every source:

* `crop_fraction` < 1: keep the central fraction of the aligned square, where
  the face is and where no source needed padding (the FFHQ square reaches far
  beyond the face; at 0.5 only eyebrows to chin remain);
* `resample_size` > 0: reduce to this side with an area filter, then resize to
  `output_size` (bicubic), so every source ends with the same bandwidth,
  below the native resolution of every source's faces;
* `shared_jpeg_quality` > 0: one JPEG generation at this quality before the
  final encode, so every source shares its last compression history;
* `native_crop`: the crop keeps its own pixels (side crop_fraction x
  output_size) instead of being resized back to output_size. Upsampling a
  region invents no evidence but smooths away the top octave where GAN
  upsampling traces are; align at >= 2x the model's input and crop half to
  feed the model native pixels (docs/detection_quality.md measures both).

Measured (`bench/ablation_shortcut.py --probe-grid`: the DataGate's
probe, FairFace vs FFHQ reals of the ablation's training split, 300 each):
as ingested 0.992; resample_size 64 alone 0.993; crop_fraction 0.6 0.838;
0.6 + 64 px + q75 0.836; 0.5 + 64 px + q75 0.739; 0.5 + 32 px + q75 0.736.
The crop does the work here; resampling and the shared JPEG generation do not
move this probe, and are kept because they cost nothing and equalise what a
CNN (which sees more than 32x32 pixels) could use. What remains (~0.74) is
partly content: FairFace is balanced over race, FFHQ is not.
"""

import io
from typing import Protocol

from PIL import Image

from fakefaces.components.shared.config_base import FieldError
from fakefaces.components.face_preparation import images

OWNER = 'face_preparation'  # the dataclass that holds these fields (faces.FacePreparation)


class Treatment(Protocol):
  """The fields read here, all of `faces.FacePreparation` (`ingest.face` in the config)."""
  output_size: int
  crop_fraction: float
  resample_size: int
  shared_jpeg_quality: int
  native_crop: bool


def check(config: Treatment) -> None:
  """Raises FieldError naming the field for values `equalize` cannot honour."""
  if not 0.2 <= config.crop_fraction <= 1.0:
    raise FieldError(OWNER, 'crop_fraction', f'{config.crop_fraction} is not in [0.2, 1]')
  if config.resample_size and not 8 <= config.resample_size <= config.output_size:
    raise FieldError(OWNER, 'resample_size', f'{config.resample_size} must be 0 (off) or in '
                     f'[8, output_size={config.output_size}]')
  if config.native_crop and config.resample_size > native_side(config):
    raise FieldError(OWNER, 'resample_size', f'{config.resample_size} is above the native crop '
                     f'side {native_side(config)} (crop_fraction x output_size)')
  if not 0 <= config.shared_jpeg_quality <= 100:
    raise FieldError(OWNER, 'shared_jpeg_quality', f'{config.shared_jpeg_quality} is not 0 '
                     '(off) or in 1..100')


def native_side(config: Treatment) -> int:
  """Side of the stored crop: crop_fraction x output_size with `native_crop`, else output_size."""
  if config.native_crop:
    return max(8, int(round(config.crop_fraction * config.output_size)))
  return config.output_size


def is_identity(config: Treatment) -> bool:
  return (config.crop_fraction >= 1.0 and not config.resample_size and
          not config.shared_jpeg_quality)


def equalize(image: Image.Image, config: Treatment) -> Image.Image:
  """The aligned face after the shared crop, resampling and JPEG generation.

  Same size as `image`, or `native_side` with `native_crop` (the central
  pixels, cut without resampling when the side is whole).
  """
  if is_identity(config):
    return image
  size = image.width
  if config.crop_fraction < 1.0:
    side = config.crop_fraction * size
    offset = (size - side) / 2.0
    if config.native_crop:
      keep = max(8, int(round(side)))
      left = (size - keep) // 2
      image = image.crop((left, left, left + keep, left + keep))
      size = keep
    else:
      image = image.resize((size, size), Image.BICUBIC, box=(offset, offset, offset + side,
                                                              offset + side))
  if config.resample_size:
    image = image.resize((config.resample_size, config.resample_size), Image.BOX).resize(
        (size, size), Image.BICUBIC)
  if config.shared_jpeg_quality:
    image = Image.open(io.BytesIO(images.encode_jpeg(image.convert('RGB'),
                                                     config.shared_jpeg_quality)))
    image.load()
  return image
