"""The one face-preparation path: bytes -> upright photo -> checks -> faces -> aligned crops.

Ingestion (`face_example_gen/executor.FaceProcessor`), `fakefaces predict`, the web page and
`bench/photo.py` all call `FacePreparer.prepare`, so a served model sees crops
made exactly like the ones it was trained on. The parameters (`FacePreparation`:
alignment, detector, crop size, JPEG quality) come from the ingestion config
at training time and travel inside the exported SavedModel (signature
`face_preparation`, see `components/shared/serving_contract.py`); clients read them
from the served model, never from a config of their own.

Why it matters, measured with the shared-data model on FairFace photos: sent
raw instead of aligned, real photos were called fake 2.8% of the time instead
of 0.04%, and a race gap opened (East Asian 7.3%, Black 0.6%) that the gate,
which judges aligned crops, never saw.

Steps, each with a reason when it refuses:
1. `images.decode_rgb`: empty, non-image, over `max_image_pixels` (from the
   header), truncated; EXIF orientation applied (phone photos store rotation there).
2. `check_for_dlib`: images dlib cannot safely look at are refused before dlib
   sees them. dlib's CNN detector indexes out of bounds on an 8x8 image
   (`alias_tensor` offset 18446744073709551417) and corrupts the heap: the
   exception is caught, but the process aborts later (`free(): invalid next
   size`), losing every other input of the run or every request of a server.
   Anything whose detection copy has a side below MIN_DETECT_SIDE, or an
   aspect ratio beyond MAX_ASPECT, is refused with the measured sizes (small
   photos above it are detected again upscaled: `align.SMALL_PHOTO_SIDE`).
3. detect + align (`align.FaceAligner`), or the centred square for
   `align: none` (crops that are already aligned), then JPEG at the training
   quality.
"""

import dataclasses
import json
import logging
from typing import Any, Dict, List, Optional, Tuple

from PIL import Image

from fakefaces.components.shared.config_base import FieldError
from fakefaces.components.face_preparation import align, images, treatment

ALIGN_MODES = ('dlib', 'none')
# Smallest side of the copy dlib sees. dlib's CNN crashes (heap corruption) on
# 8x8 and survives 10x10. 32 px avatars of FairFace photos (faces of ~20 px) are found
# upscaled (align.SMALL_PHOTO_SIDE); below that a face has too few pixels to judge.
MIN_DETECT_SIDE = 32
# Smallest side accepted for align 'none' (already aligned crops; no dlib involved).
MIN_CROP_SIDE = 8
MAX_ASPECT = 8.0  # wider or taller than 8:1 is a banner or a strip, not a photo of a face
NO_FACE = 'no_face'
# PreparedPhoto.detection of align 'none': nothing was detected, the photo's centred square
# is the model input (a model that takes images as they are, `predict --aligned`).
NO_DETECTION = 'no face detection (align none): the centred square of the photo is the input'
OWNER = treatment.OWNER  # how errors name a FacePreparation built outside a config


@dataclasses.dataclass(frozen=True)
class FacePreparation:
  """How photos become model inputs; stored in the SavedModel it was trained with.

  Set under `ingest.face` in the pipeline config (`IngestConfig.face`), so the
  crops the model is trained on and the crops every client sends are made alike.
  Invalid values raise `config_base.FieldError`: `ingest.face.<field>` when
  loaded from a config, `face_preparation.<field>` when built directly.
  """
  # 'dlib' detects and FFHQ-aligns every face; 'none' only takes the centred square of
  # images that are already aligned crops (the generated demo data, the 140k set).
  align: str = 'dlib'
  # 'hog' (fast), 'cnn' (mmod, finds more faces, ~10x slower) or 'hog+cnn' (the CNN
  # where HOG finds none, and on weak HOG boxes: HOG alone misses ~25% of FairFace,
  # unevenly across groups). See docs/photos.md.
  detector: str = 'hog+cnn'
  hog_upsample: int = 1  # HOG upsampling passes; 1 finds the small faces of 224px crops
  cnn_upsample: int = 0  # CNN upsampling passes; 0 already finds faces in 224px crops
  detect_max_side: int = 1024  # detect on a copy downscaled to this side (big photos)
  # The CNN fallback first runs on a copy downscaled to this side, and at full size only
  # where that finds no face: same faces on FairFace, ~2.7x less CNN time. 0: full size only.
  cnn_max_side: int = 128
  output_size: int = 256  # side of the aligned square crop written to the TFRecords
  # The same treatment for every source (treatment.py), applied after alignment, and
  # part of what the model learned from, so clients apply it too: keep the central
  # fraction of the aligned square (1.0: all of it; 0.5 drops the padding loose crops
  # such as FairFace's need), reduce every crop to `resample_size` px and back (0: off),
  # one shared JPEG generation (0: off).
  crop_fraction: float = 1.0
  resample_size: int = 0  # px side every crop is reduced to and resized back from; 0: off
  shared_jpeg_quality: int = 0  # quality of the shared JPEG generation, 1..100; 0: off
  # Keep the crop's own pixels (side crop_fraction x output_size) instead of resizing it
  # back to output_size: the model then sees no upsampled region (treatment.py).
  native_crop: bool = False
  jpeg_quality: int = 95  # JPEG quality (1..100) of the crop as stored in the examples
  max_image_pixels: int = 64_000_000  # decompression-bomb guard, checked before decoding

  def __post_init__(self):
    if self.align not in ALIGN_MODES:
      raise FieldError(OWNER, 'align', f'{self.align!r} is not one of {list(ALIGN_MODES)}')
    if self.align == 'dlib' and self.detector not in align.DETECTOR_CHAINS:
      raise FieldError(OWNER, 'detector', f'{self.detector!r} is not one of '
                       f'{sorted(align.DETECTOR_CHAINS)}')
    if self.output_size < 8:
      raise FieldError(OWNER, 'output_size', f'{self.output_size} is too small (min 8)')
    if not 1 <= self.jpeg_quality <= 100:
      raise FieldError(OWNER, 'jpeg_quality', f'{self.jpeg_quality} is not in 1..100')
    treatment.check(self)
    if self.cnn_max_side < 0:
      raise FieldError(OWNER, 'cnn_max_side', f'{self.cnn_max_side} must be >= 0 (0: full size)')
    if self.detect_max_side < MIN_DETECT_SIDE * MAX_ASPECT:
      raise FieldError(OWNER, 'detect_max_side', f'{self.detect_max_side} is below '
                       f'{int(MIN_DETECT_SIDE * MAX_ASPECT)}')

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> 'FacePreparation':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f'face_preparation has unknown field(s) {unknown}; known: {sorted(known)}')
    return cls(**values)

  @classmethod
  def from_json(cls, text: str) -> 'FacePreparation':
    return cls.from_dict(json.loads(text))

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)


@dataclasses.dataclass
class PreparedFace:
  box: Tuple[int, int, int, int]  # (left, top, right, bottom) in the upright photo
  crop: Image.Image  # output_size x output_size RGB, what the JPEG encodes
  encoded: bytes  # JPEG at jpeg_quality: the model input
  face_size: int  # side of the detector box, source pixels (0 for align 'none')
  detector: str  # 'hog', 'cnn' or '' (align 'none')
  aligned: Optional[Image.Image] = None  # the aligned face before treatment.equalize
  # Degrees the face is turned counter-clockwise in the photo (0, 90, 180, 270); the crop
  # is upright whatever it is (align.FaceAligner.align_box).
  rotation: int = 0


# Why a face that was found was not prepared (PreparedPhoto.not_prepared keys).
OVER_CAP = 'over the cap'  # more faces than `max_faces`; the largest are kept
NOT_ALIGNED = 'refused'  # landmarks/alignment failed for that face (the error is logged)
LARGEST_ONLY = 'not used (largest face only)'  # all_faces=False: ingestion keeps one face


@dataclasses.dataclass
class PreparedPhoto:
  image: Image.Image  # the decoded photo, upright (EXIF applied), RGB
  faces: List[PreparedFace]  # largest first; empty when no face was found
  no_face_reason: str = ''  # why `faces` is empty
  found: int = 0  # faces detected; len(faces) + sum(not_prepared.values())
  not_prepared: Dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
  detection: str = ''  # where detection looked and the smallest face it can find
  # (width, height) of the decoded photo, the pixels of the boxes; kept where `image` is
  # replaced by a smaller copy (the web page keeps only its preview).
  size: Tuple[int, int] = (0, 0)

  def __post_init__(self):
    if self.size == (0, 0):
      self.size = self.image.size


def check_for_dlib(image: Image.Image, detect_max_side: int) -> None:
  """Raises ImageProblem(FILTERED) for images dlib must not see (see the module doc)."""
  width, height = image.size
  aspect = max(width, height) / max(1, min(width, height))
  if aspect > MAX_ASPECT:
    raise images.ImageProblem(
        images.FILTERED, f'image is {width}x{height}, aspect ratio {aspect:.1f}:1 over '
        f'{MAX_ASPECT:.0f}:1: not a photo of a face (refused before face detection)')
  scale = min(1.0, detect_max_side / max(width, height))
  small = min(width, height) * scale
  if small < MIN_DETECT_SIDE:
    copy = '' if scale == 1.0 else (f' (its {round(width * scale)}x{round(height * scale)} '
                                     'detection copy)')
    raise images.ImageProblem(
        images.FILTERED, f'image is {width}x{height}, too small for face detection: a side of '
        f'{round(small)} px{copy}, and the smallest side looked at is {MIN_DETECT_SIDE} px; '
        'refused before face detection')
  if image.mode != 'RGB':
    raise images.ImageProblem(images.FILTERED, f'image mode {image.mode} is not RGB')


class FacePreparer:
  """Holds the dlib models (loaded on first use) and prepares photos with `params`."""

  def __init__(self, params: FacePreparation):
    self.params = params
    self._aligner: Optional[align.FaceAligner] = None

  @property
  def aligner(self) -> align.FaceAligner:
    if self._aligner is None:
      p = self.params
      self._aligner = align.FaceAligner(p.detector, p.output_size, p.hog_upsample,
                                        p.cnn_upsample, p.detect_max_side, p.cnn_max_side)
    return self._aligner

  def decode(self, data: bytes) -> Image.Image:
    """Upright RGB photo, checked for dlib when it will align. Raises ImageProblem."""
    image = images.decode_rgb(data, self.params.max_image_pixels)
    if self.params.align == 'dlib':
      check_for_dlib(image, self.params.detect_max_side)
    elif min(image.size) < MIN_CROP_SIDE:
      raise images.ImageProblem(images.FILTERED, f'image is {image.width}x{image.height}, '
                                f'under {MIN_CROP_SIDE} px: too small to be a face crop')
    return image

  def prepare_image(self, image: Image.Image, all_faces: bool = True,
                    max_faces: int = 0) -> PreparedPhoto:
    """Faces of an image returned by `decode` (largest only unless `all_faces`)."""
    p = self.params
    if p.align == 'none':
      square = align.center_square(image, p.output_size)
      crop = treatment.equalize(square, p)
      side = min(image.size)
      left, top = (image.width - side) // 2, (image.height - side) // 2
      return PreparedPhoto(image, [PreparedFace((left, top, left + side, top + side), crop,
                                                images.encode_jpeg(crop, p.jpeg_quality), 0, '',
                                                square)], found=1, detection=NO_DETECTION)
    found = self.aligner.find_faces(image, every_face=all_faces)
    if not found.boxes:
      return PreparedPhoto(image, [], f'no face found by {p.detector} in {image.width}x{image.height}: '
                           f'{found.describe()}', detection=found.describe())
    keep = 1 if not all_faces else (max_faces if max_faces > 0 else len(found.boxes))
    not_prepared: Dict[str, int] = {}
    if len(found.boxes) > keep:
      not_prepared[OVER_CAP if all_faces else LARGEST_ONLY] = len(found.boxes) - keep
    prepared = []
    for box, detector, turns in list(zip(found.boxes, found.detectors, found.turns))[:keep]:
      try:
        a = self.aligner.align_box(image, box, detector, len(found.boxes), turns)
      except Exception:  # one odd face must not lose the others  # pylint: disable=broad-except
        logging.exception('alignment failed for the face at %s', box)
        not_prepared[NOT_ALIGNED] = not_prepared.get(NOT_ALIGNED, 0) + 1
        continue
      crop = treatment.equalize(a.image, p)
      prepared.append(PreparedFace(_clip_box(a.box, image.size), crop,
                                   images.encode_jpeg(crop, p.jpeg_quality), a.face_size,
                                   a.detector, a.image, a.rotation))
    return PreparedPhoto(image, prepared, '' if prepared else 'no face could be aligned',
                         len(found.boxes), not_prepared, found.describe())

  def prepare(self, data: bytes, all_faces: bool = True, max_faces: int = 0) -> PreparedPhoto:
    """Encoded photo -> its prepared faces. Raises images.ImageProblem for bad input."""
    return self.prepare_image(self.decode(data), all_faces, max_faces)


def _clip_box(box: Tuple[int, int, int, int], size: Tuple[int, int]) -> Tuple[int, int, int, int]:
  """A detector box (which may reach past the edges) clipped to the photo."""
  left, top, right, bottom = box
  return (max(0, left), max(0, top), min(size[0], right), min(size[1], bottom))


def encode_preview(image: Image.Image, max_side: int = 1024, quality: int = 90) -> bytes:
  """A JPEG of `image` no larger than `max_side` (for pages and reports)."""
  scale = min(1.0, max_side / max(image.size))
  if scale < 1.0:
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR)
  return images.encode_jpeg(image, quality)
