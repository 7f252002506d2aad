"""The faster FFHQ warp gives byte-identical crops: against the previous code, kept here as reference.

`align.warp_quad` now fades only the padded pixels the quad transform reads and
shrinks only the window of a large photo that the crop keeps. Both promise the
same bytes as computing over the whole image; these tests compare with the
whole-image implementation (copied below from the code before the change) on
shared-data photos at 224 px and made 12 Mpx, and with hashes recorded from the
previous code's `FacePreparer.prepare`.
"""

import hashlib
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fakefaces.components.face_preparation import align, faces

# --- The previous implementation (whole image), the reference -------------------------


def _reference_pad_softly(pixels, pad, qsize):
  left, top, right, bottom = pad
  padded = np.pad(pixels.astype(np.float32), ((top, bottom), (left, right), (0, 0)), 'reflect')
  height, width = padded.shape[:2]
  ys, xs = np.ogrid[:height, :width]

  def ramp(distance_from_outer_edge, width_of_pad):
    if width_of_pad == 0:
      return np.full(distance_from_outer_edge.shape, -np.inf, dtype=np.float32)
    return np.float32(1.0 - distance_from_outer_edge / width_of_pad)

  mask = np.maximum(np.maximum(ramp(xs, left), ramp(width - 1 - xs, right)),
                    np.maximum(ramp(ys, top), ramp(height - 1 - ys, bottom)))[..., None]
  radius = max(qsize * 0.02, 1.0)
  blurred = np.asarray(Image.fromarray(np.uint8(np.clip(padded + 0.5, 0, 255))).filter(
      ImageFilter.GaussianBlur(radius)), dtype=np.float32)
  padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
  padded += (np.median(pixels, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
  return np.uint8(np.clip(np.rint(padded), 0, 255))


def _reference_warp_quad(image, quad, output_size):
  quad = np.asarray(quad, dtype=np.float64).copy()
  qsize = float(np.hypot(*(quad[3] - quad[0])))
  shrink = int(math.floor(qsize / output_size * 0.5))
  if shrink > 1:
    image = image.resize((max(1, round(image.width / shrink)), max(1, round(image.height / shrink))),
                         Image.BOX)
    quad /= shrink
    qsize /= shrink
  border = max(int(round(qsize * 0.1)), 3)
  low = np.floor(quad.min(axis=0)).astype(int) - border
  high = np.ceil(quad.max(axis=0)).astype(int) + border
  box = (max(low[0], 0), max(low[1], 0), min(high[0], image.width), min(high[1], image.height))
  if box != (0, 0, image.width, image.height):
    image = image.crop(box)
    quad -= box[:2]
    low -= box[:2]
    high -= box[:2]
  pad = (max(-low[0], 0), max(-low[1], 0), max(high[0] - image.width, 0),
         max(high[1] - image.height, 0))
  if max(pad) > 0:
    image = Image.fromarray(_reference_pad_softly(np.asarray(image), pad, qsize))
    quad += pad[:2]
  supersample = int(min(4, max(1, math.ceil(qsize / output_size))))
  work_size = output_size * supersample
  warped = image.transform((work_size, work_size), Image.QUAD, tuple((quad + 0.5).flatten()),
                           Image.BILINEAR)
  if supersample > 1:
    warped = warped.resize((output_size, output_size), Image.LANCZOS)
  return warped


# --- Tests ---------------------------------------------------------------------------

# The shared-data ingestion's preparation (pipeline/configs/shared_data.yaml).
SHARED_PREPARATION = faces.FacePreparation(detector='hog+cnn', output_size=128, crop_fraction=0.5,
                                           resample_size=64, shared_jpeg_quality=75)
# sha256 (first 16 hex digits) of `prepare(data, all_faces=False)`'s aligned crop
# (`aligned.tobytes()`) and JPEG (`encoded`) for the first four FairFace val photos,
# computed with the code before the change (commit 63ff418) by running this file's
# `_prepared_hashes` with that checkout first on PYTHONPATH.
RECORDED = {
    '1000.jpg': [('ada6afbdf0801592', 'bcf064bbebf9af36')],
    '1002.jpg': [('3bb9f8c91d68982f', '3235943feffae329')],
    '1009.jpg': [('c6622e06ab35ff03', '7b84091041ef63fa')],
    '1011.jpg': [('0d8da58d4bcc0165', 'eb7c785db82e62fe')],
}


def _prepared_hashes(data_dir, name):
  with open(os.path.join(data_dir, 'fairface', 'val', name), 'rb') as f:
    photo = faces.FacePreparer(SHARED_PREPARATION).prepare(f.read(), all_faces=False)
  return [(hashlib.sha256(face.aligned.tobytes()).hexdigest()[:16],
           hashlib.sha256(face.encoded).hexdigest()[:16]) for face in photo.faces]


def test_prepared_crops_are_those_of_the_previous_code(faces_data):
  for name, expected in RECORDED.items():
    assert _prepared_hashes(faces_data, name) == expected, name


# The same hashes with `all_faces=True` (as predict and the web page prepare) for photos
# that take the other paths: the CNN on the 128 px copy (105) and at full size (1205)
# where HOG finds nothing, two faces (1011), and a 256 px photo of each other source.
# Computed with the code before large photos were detected on fast grey copies (commit
# 72173ef), which must not change any photo up to `detect_max_side` px.
RECORDED_EVERY_FACE = {
    'fairface/val/105.jpg': [('219a426d05694257', '81bd994ad768258b')],
    'fairface/val/1205.jpg': [('a583bc3626e3d02f', '6134a23212a106d9')],
    'fairface/val/1011.jpg': [('0d8da58d4bcc0165', 'eb7c785db82e62fe'),
                              ('d1ceeea6e86072a2', '343b517ace5b5bfa')],
    'k140/real_vs_fake/real-vs-fake/test/fake/00GN2JWV43.jpg': [('2338e40b9dd74b79',
                                                                 'a59a365c337317ce')],
    'gan_faces/test/fake/tpdne_headshot_cv_f1.jpg': [('f9a3dc549859b588', '0a5a91e81369a5a1')],
}


def test_every_face_crops_of_cnn_and_multi_face_photos_are_those_of_the_previous_code(faces_data):
  preparer = faces.FacePreparer(SHARED_PREPARATION)
  for name, expected in RECORDED_EVERY_FACE.items():
    path = os.path.join(faces_data, name)
    if not os.path.isfile(path):
      pytest.skip(f'{path} not in this copy of the shared data')
    with open(path, 'rb') as f:
      photo = preparer.prepare(f.read(), all_faces=True)
    assert [(hashlib.sha256(face.aligned.tobytes()).hexdigest()[:16],
             hashlib.sha256(face.encoded).hexdigest()[:16]) for face in photo.faces] == expected, name


def _photos_and_quads(faces_data, count):
  """(photo, FFHQ quad) of the first `count` FairFace val photos where HOG finds a face."""
  aligner = align.FaceAligner('hog')
  folder = os.path.join(faces_data, 'fairface', 'val')
  found = []
  for name in sorted(os.listdir(folder)):
    with Image.open(os.path.join(folder, name)) as opened:
      image = opened.convert('RGB')
    boxes, _ = aligner.detect(image)
    if boxes:
      found.append((image, align.ffhq_quad(aligner.landmarks(image, boxes[0]))))
    if len(found) == count:
      return found
  pytest.skip(f'HOG found fewer than {count} faces in {folder}')


@pytest.mark.parametrize('output_size', [128, 256])
def test_warp_is_byte_identical_on_fairface_photos(faces_data, output_size):
  padded = 0
  for image, quad in _photos_and_quads(faces_data, 12):
    fast = align.warp_quad(image, quad, output_size)
    assert fast.tobytes() == _reference_warp_quad(image, quad, output_size).tobytes()
    low, high = quad.min(axis=0), quad.max(axis=0)
    padded += low.min() < 0 or high[0] > image.width or high[1] > image.height
  assert padded >= 6  # FairFace's loose crops leave the photo: the padding path ran


@pytest.mark.parametrize('size', [(4032, 3024), (4000, 3000), (3001, 2999)])
def test_warp_is_byte_identical_on_large_photos(faces_data, size):
  """12 Mpx photos made from FairFace ones (the shrink mostly does not divide these sizes)."""
  for image, quad in _photos_and_quads(faces_data, 3):
    scale = size[0] / image.width
    top = (round(image.height * scale) - size[1]) // 2
    large = image.resize((size[0], round(image.height * scale)), Image.BICUBIC).crop(
        (0, top, size[0], top + size[1]))
    large_quad = quad * scale - [0, top]
    fast = align.warp_quad(large, large_quad, 128)
    assert fast.tobytes() == _reference_warp_quad(large, large_quad, 128).tobytes(), size


@pytest.mark.parametrize('shrink', [2, 5, 8])
def test_warp_shrinking_only_the_window_is_byte_identical(faces_data, shrink):
  """Photos sized so the warp's shrink factor divides them: the window-only path."""
  for image, quad in _photos_and_quads(faces_data, 3):
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    # A quad of (shrink + 0.5) * 2 * 128 px gets shrink `shrink`; the side a multiple of it.
    side = shrink * round(image.width * (shrink + 0.5) * 256 / qsize / shrink)
    large = image.resize((side, side), Image.BICUBIC)
    large_quad = quad * side / image.width
    large_qsize = float(np.hypot(*(large_quad[3] - large_quad[0])))
    assert math.floor(large_qsize / 128 * 0.5) == shrink and side % shrink == 0
    fast = align.warp_quad(large, large_quad, 128)
    assert fast.tobytes() == _reference_warp_quad(large, large_quad, 128).tobytes(), shrink


def test_pad_softly_over_a_part_equals_the_whole():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
  for pad, qsize in (((20, 5, 0, 30), 300.0), ((0, 0, 7, 0), 60.0), ((40, 40, 40, 40), 900.0)):
    whole = _reference_pad_softly(pixels, pad, qsize)
    height, width = whole.shape[:2]
    for needed in ((0, 0, width, height), (3, 4, width - 5, height - 2), (10, 12, 30, 33)):
      part = align._pad_softly(pixels, pad, qsize, needed)  # pylint: disable=protected-access
      x0, y0, x1, y1 = needed
      np.testing.assert_array_equal(part[y0:y1, x0:x1], whole[y0:y1, x0:x1])
