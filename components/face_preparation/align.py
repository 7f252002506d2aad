"""Face detection (dlib), 68 landmarks and the FFHQ-style oriented crop.

The crop follows the recipe NVIDIA used to build FFHQ (`recreate_aligned_images`
in ffhq-dataset): a square oriented by the eye line and the eye-to-mouth line,
centred slightly below the eyes and sized from the larger of the eye distance
and the eye-to-mouth distance. Every face therefore lands with level eyes at
the same place in the output, whatever the source framing.

Models come from the `face_recognition_models` package (no downloads). Its
68-point shape predictor was trained on iBUG 300-W, whose terms restrict
commercial use.
"""

import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageFilter

# Which dlib detectors run, in order, for each `ingest.face.detector` value. The CNN of
# 'hog+cnn' runs over the whole photo where HOG finds no face, and besides checks weak
# HOG boxes and, in group photos, looks for the faces HOG missed (`find_faces`).
DETECTOR_CHAINS = {'hog': ('hog',), 'cnn': ('cnn',), 'hog+cnn': ('hog', 'cnn')}

# Smallest face box each detector finds in the image it is given, px (before its own
# upsampling, which halves it per pass). dlib's frontal HOG detector scans 80x80 windows;
# the CNN (mmod) found a FairFace face with an 80 px box and not at 64 px (upsample 0).
DETECTOR_WINDOW = 80
# Every face at least this big (source px) is looked for, in any photo up to the pixel
# limit: where the `detect_max_side` copy cannot see faces this small, HOG runs again
# on tiles of a finer copy.
GUARANTEED_FACE = 80
# HOG boxes scoring between this and 0 are not accepted as they are but checked by the
# CNN on a small crop around them: turned faces HOG scores just under its threshold
# (a FairFace face in a 4032x3024 photo: -0.16; 3 faces of a 25-face grid).
PROPOSAL_THRESHOLD = -0.5
MAX_CHECKED_PROPOSALS = 8  # CNN checks per photo, best-scored first (each ~0.2 CPU-s)
# A group photo (HOG found two faces or more) also gets the CNN over a copy where its
# median face is ~1.25 CNN windows, at most this many pixels (~3.5 CPU-s): HOG misses
# turned faces that are no weak proposal either (1 of a 25-face grid even at -1.3).
GROUP_CNN_MAX_PIXELS = 400_000
# dlib's CNN keeps the feature maps of its whole image pyramid: its memory grows with the
# pixels it is given, about 0.95 KB each (a flat image at upsample 0: 1024x1024 +992 MB,
# 632x632 +378 MB, 512x512 +247 MB, 256x256 +75 MB of peak RSS). No CNN pass sees more than
# this many pixels (after its own upsampling): a larger image is looked at on tiles of
# that size, and its faces too large for a tile's overlap on a half-size copy, the same
# way down (`_bounded_cnn`; bench/photo_memory.py, docs/photos.md "Memory per photo").
CNN_MAX_PIXELS = 400_000
# Photos larger than the detection copy (`detect_max_side`) are detected on copies made
# fast and HOG looks at them in grey; a photo that fits is detected as it is, so the
# crops of every photo up to `detect_max_side` (all of the shared data) are unchanged.
# Measured on a 12 Mpx photo (4032x3024; docs/performance.md, "Large photos fast, small
# photos unchanged"):
# - PIL's `reducing_gap` first box-reduces by an integer factor: the 2016x1512 copy in
#   16 ms instead of 103 (bilinear), the 1024x768 one in 37 instead of 57;
# - dlib's HOG computes its gradients on each colour channel: on the grey copy the tile
#   pass takes 0.79 CPU-s instead of 1.54 and finds the same face box;
# - HOG on one 2048 px tile instead of 1024 px tiles skips the overlaps (1.54 vs 1.76
#   CPU-s) for +80 MB; tiles bound dlib's memory on photos up to the pixel limit.
LARGE_REDUCING_GAP = 1.0
FINE_TILE = 2048

# A photo turned a quarter or half turn without EXIF (a screenshot, a scan, a messaging
# app) defeats the detectors: HOG and the landmark predictor expect upright faces; the CNN
# finds some sideways faces, whose landmarks then come out wrong and the crop sideways.
# Turned faces are looked for only where the upright pass leaves doubt, so an upright
# photo found by HOG costs nothing more (bench/photo.py, docs/photos.md):
# - a face found by the CNN alone is checked by HOG on its region at each quarter turn
#   (`_upright_turns`), with the face at FACE_CHECK_SIDE px: HOG scans 80 px windows;
# - a photo where no face is found gets HOG on its detection copy turned 90, 180, 270.
# `turns` counts quarter turns counter-clockwise (PIL's Transpose.ROTATE_90) that make a
# face upright; landmarks are found on the turned region and mapped back, and the FFHQ
# crop, oriented by those landmarks, comes out upright from the photo as it is.
FACE_CHECK_SIDE = 100
# Small photos (avatars: X serves 48x48 and 73x73) show faces under the CNN's window and at
# HOG's limit: where nothing is found in a photo whose shorter side is under SMALL_PHOTO_SIDE,
# detection runs again on a bicubic copy with that side UPSCALED_SIDE. On 12 FairFace photos
# shrunk to 64, 48, 40 and 32 px, all 24 faces are found that way (none at 64 px and below
# without), the smallest with a 22 px box: what no-face answers give as the smallest face
# there, rather than the window's arithmetic (40 px / the upscaling).
SMALL_PHOTO_SIDE = 160
UPSCALED_SIDE = 192
SMALLEST_UPSCALED_FACE = 22
_TURN = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
         3: Image.Transpose.ROTATE_270}

# Indices into dlib's 68-point layout (iBUG 300-W).
LEFT_EYE = slice(36, 42)  # on the image's left
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
# Median HOG box (left, top, right, bottom) of a face in an aligned crop, as a
# fraction of the crop side (measured on 80 aligned FairFace/FFHQ faces).
ALIGNED_FACE_BOX = (0.18, 0.32, 0.785, 0.92)


@dataclasses.dataclass
class AlignedFace:
  image: Image.Image  # output_size x output_size RGB
  face_size: int  # side of the detected face box, in source pixels
  detector: str  # the detector that found the face ('hog' or 'cnn')
  num_faces: int  # faces that detector found; the largest was used
  landmarks: np.ndarray  # (68, 2) source-pixel landmarks of the used face
  box: Tuple[int, int, int, int] = (0, 0, 0, 0)  # detector box (left, top, right, bottom), source px
  turns: int = 0  # quarter turns counter-clockwise that made the face upright (0: it was)

  @property
  def rotation(self) -> int:
    """Degrees the face is turned counter-clockwise in the photo (0, 90, 180 or 270)."""
    return (4 - self.turns) % 4 * 90


def turn_points(points: np.ndarray, size: Tuple[int, int], turns: int) -> np.ndarray:
  """(x, y) pixel positions in an image of `size` -> the same pixels after `turns` quarter turns.

  Counter-clockwise, as `image.transpose(_TURN[turns])`: one turn maps pixel
  (x, y) of a W x H image to (y, W - 1 - x) of the H x W result.
  """
  points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
  width, height = size
  for _ in range(turns % 4):
    points = np.stack([points[:, 1], (width - 1) - points[:, 0]], axis=1)
    width, height = height, width
  return points


def turned_size(size: Tuple[int, int], turns: int) -> Tuple[int, int]:
  return (size[1], size[0]) if turns % 2 else tuple(size)


def turn_box(box: Tuple[int, int, int, int], size: Tuple[int, int], turns: int) -> Tuple[int, int, int, int]:
  """A (left, top, right, bottom) box of an image of `size` in the image turned `turns` times."""
  corners = turn_points([box[:2], box[2:]], size, turns)
  low, high = corners.min(axis=0), corners.max(axis=0)
  return (int(round(low[0])), int(round(low[1])), int(round(high[0])), int(round(high[1])))


def turn(image: Image.Image, turns: int) -> Image.Image:
  return image.transpose(_TURN[turns % 4]) if turns % 4 else image


def eye_and_mouth_centres(landmarks: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(left eye centre, right eye centre, mouth centre) from 68 landmarks."""
  landmarks = np.asarray(landmarks, dtype=np.float64)
  mouth = (landmarks[MOUTH_LEFT] + landmarks[MOUTH_RIGHT]) * 0.5
  return landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0), mouth


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
  """The oriented crop square as 4 corners (upper-left, lower-left, lower-right, upper-right)."""
  eye_left, eye_right, mouth = eye_and_mouth_centres(landmarks)
  eye_avg = (eye_left + eye_right) * 0.5
  eye_to_eye = eye_right - eye_left
  eye_to_mouth = mouth - eye_avg
  # Horizontal axis: a compromise between the eye line and the normal of the
  # eye-mouth line, so a tilted or turned head still gets a sensible roll.
  half_x = eye_to_eye - np.flipud(eye_to_mouth) * [-1.0, 1.0]
  half_x /= np.hypot(*half_x)
  half_x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
  half_y = np.flipud(half_x) * [-1.0, 1.0]  # half_x turned 90 degrees, pointing down
  centre = eye_avg + eye_to_mouth * 0.1
  return np.stack([centre - half_x - half_y, centre - half_x + half_y,
                   centre + half_x + half_y, centre + half_x - half_y])


def _pad_softly(pixels: np.ndarray, pad: Tuple[int, int, int, int], qsize: float,
                needed: Optional[Tuple[int, int, int, int]] = None) -> np.ndarray:
  """Reflect-pads (left, top, right, bottom) and fades the padding to blur and the median colour.

  A quad that leaves the photo (common for loose crops such as FairFace) would
  otherwise get black corners, a trace a classifier could learn.

  Only pixels within 4/3 of a side's padding from its outer edge change (`_band`);
  the rest are the photo's. `needed` (left, top, right, bottom in padded pixels; None: all) is
  the part the caller reads: the fade is computed only there, with the same
  per-pixel arithmetic as over the whole image, and the blur only over that part
  plus its reach, so the pixels inside `needed` are byte-identical either way
  (tests/test_align_fast.py compares against the whole-image computation;
  docs/performance.md, "Photo latency", has the timings).
  """
  left, top, right, bottom = pad
  padded = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), 'reflect')
  height, width = padded.shape[:2]
  if needed is None:
    needed = (0, 0, width, height)
  radius = max(qsize * 0.02, 1.0)
  median = np.median(pixels, axis=(0, 1))
  # The blur weight clip(mask * 3 + 1) is 0 where the mask is <= -1/3, i.e. further
  # than 4/3 of a side's padding from that side's outer edge: those pixels stay as
  # they are. What remains is a frame; its four sides are computed as rectangles.
  reach_x = (_band(left, width), width - _band(right, width))  # columns [reach_x[0], reach_x[1]) stay
  reach_y = (_band(top, height), height - _band(bottom, height))
  x0, y0, x1, y1 = needed
  strips = [(x0, y0, x1, min(y1, reach_y[0])),  # top
            (x0, max(y0, reach_y[1]), x1, y1),  # bottom
            (x0, max(y0, reach_y[0]), min(x1, reach_x[0]), min(y1, reach_y[1])),  # left
            (max(x0, reach_x[1]), max(y0, reach_y[0]), x1, min(y1, reach_y[1]))]  # right
  strips = [(sx0, sy0, sx1, sy1) for sx0, sy0, sx1, sy1 in strips if sx1 > sx0 and sy1 > sy0]
  faded = padded.copy()
  if not strips:
    return faded
  # PIL's Gaussian blur is three box blurs of integer sums: a pixel depends only on
  # pixels within 3 * (ceil(radius) + 1) of it, so one blur of the strips' bounding
  # box plus that reach equals the whole image's blur there.
  reach = 3 * (int(math.ceil(radius)) + 2)
  outer = (max(min(b[0] for b in strips) - reach, 0), max(min(b[1] for b in strips) - reach, 0),
           min(max(b[2] for b in strips) + reach, width),
           min(max(b[3] for b in strips) + reach, height))
  blurred = np.asarray(Image.fromarray(padded).crop(outer).filter(ImageFilter.GaussianBlur(radius)))
  for box in strips:
    faded[box[1]:box[3], box[0]:box[2]] = _fade(padded, blurred, outer, box, pad, median)
  return faded


def _band(pad: int, size: int) -> int:
  """Pixels from an outer edge with padding `pad` where the blur weight can be > 0 (ceil 4/3 pad + 1)."""
  return min(size, 4 * pad // 3 + 2) if pad else 0


def _fade(padded: np.ndarray, blurred: np.ndarray, blurred_box: Tuple[int, int, int, int],
          box: Tuple[int, int, int, int], pad: Tuple[int, int, int, int],
          median: np.ndarray) -> np.ndarray:
  """The faded pixels of `box` of the padded image: the padding's blend, per pixel as on the whole.

  `blurred` is the padded image's blur over `blurred_box` (which contains `box`).
  """
  left, top, right, bottom = pad
  height, width = padded.shape[:2]
  x0, y0, x1, y1 = box
  ys, xs = np.ogrid[y0:y1, x0:x1]

  def ramp(distance_from_outer_edge, width_of_pad):
    # 1 at the outer edge of the padding, 0 at the photo's edge, negative inside it.
    if width_of_pad == 0:
      return np.full(distance_from_outer_edge.shape, -np.inf, dtype=np.float32)
    return np.float32(1.0 - distance_from_outer_edge / width_of_pad)

  mask = np.maximum(np.maximum(ramp(xs, left), ramp(width - 1 - xs, right)),
                    np.maximum(ramp(ys, top), ramp(height - 1 - ys, bottom)))[..., None]
  blurred = blurred[y0 - blurred_box[1]:y1 - blurred_box[1],
                    x0 - blurred_box[0]:x1 - blurred_box[0]].astype(np.float32)
  values = padded[y0:y1, x0:x1].astype(np.float32)
  values += (blurred - values) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
  values += (median - values) * np.clip(mask, 0.0, 1.0)
  return np.uint8(np.clip(np.rint(values), 0, 255))


def _shrunk_window(image: Image.Image, shrink: int,
                   window: Tuple[int, int, int, int]) -> Tuple[Image.Image, Tuple[int, int]]:
  """`window` (left, top, right, bottom) of `image` BOX-shrunk to round(size / shrink).

  Byte-identical to shrinking the whole photo and cropping, at the cost of the
  window: PIL computes each output pixel's filter weights from its centre,
  box[0] + (i + 0.5) * scale, which equals the whole image's (a + i + 0.5) * scale
  exactly when the scale (size / shrunk size) is an integer: then every term is
  exact in floating point. Otherwise the whole photo is shrunk, as before.
  Returns the image and the shrunk size of the whole photo.
  """
  size = (max(1, round(image.width / shrink)), max(1, round(image.height / shrink)))
  left, top, right, bottom = (max(window[0], 0), max(window[1], 0), min(window[2], size[0]),
                              min(window[3], size[1]))
  if image.width % size[0] or image.height % size[1] or right <= left or bottom <= top:
    return image.resize(size, Image.BOX).crop((left, top, right, bottom)), size
  scale_x, scale_y = image.width // size[0], image.height // size[1]
  return image.resize((right - left, bottom - top), Image.BOX,
                      box=(left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)), size


def warp_quad(image: Image.Image, quad: np.ndarray, output_size: int) -> Image.Image:
  """Resamples the square `quad` of `image` to an upright output_size square."""
  quad = np.asarray(quad, dtype=np.float64).copy()
  qsize = float(np.hypot(*(quad[3] - quad[0])))
  # Shrink first when the face is far larger than the output, so resampling
  # does not alias.
  shrink = int(math.floor(qsize / output_size * 0.5))
  if shrink > 1:
    quad /= shrink
    qsize /= shrink
  # Crop to the quad plus a border; pad softly where the quad leaves the image.
  border = max(int(round(qsize * 0.1)), 3)
  low = np.floor(quad.min(axis=0)).astype(int) - border
  high = np.ceil(quad.max(axis=0)).astype(int) + border
  if shrink > 1:
    # Only the part of the shrunk photo that the crop below keeps.
    image, size = _shrunk_window(image, shrink, (*low, *high))
    offset = (max(low[0], 0), max(low[1], 0))
    box = (*offset, min(high[0], size[0]), min(high[1], size[1]))
  else:
    box = (max(low[0], 0), max(low[1], 0), min(high[0], image.width), min(high[1], image.height))
    if box != (0, 0, image.width, image.height):
      image = image.crop(box)
  if box[:2] != (0, 0):
    quad -= box[:2]
    low -= box[:2]
    high -= box[:2]
  pad = (max(-low[0], 0), max(-low[1], 0), max(high[0] - image.width, 0),
         max(high[1] - image.height, 0))
  if max(pad) > 0:
    quad += pad[:2]
    # The bilinear quad transform reads the pixels around each sample point, all
    # within the quad's bounding box plus one pixel: fade only those (2 for safety).
    needed = (int(np.floor(quad[:, 0].min())) - 2, int(np.floor(quad[:, 1].min())) - 2,
              int(np.ceil(quad[:, 0].max())) + 3, int(np.ceil(quad[:, 1].max())) + 3)
    padded_size = (image.width + pad[0] + pad[2], image.height + pad[1] + pad[3])
    needed = (max(needed[0], 0), max(needed[1], 0), min(needed[2], padded_size[0]),
              min(needed[3], padded_size[1]))
    image = Image.fromarray(_pad_softly(np.asarray(image), pad, qsize, needed))
  # Supersample the quad transform (bilinear), then reduce with a proper filter.
  supersample = int(min(4, max(1, math.ceil(qsize / output_size))))
  work_size = output_size * supersample
  warped = image.transform((work_size, work_size), Image.QUAD, tuple((quad + 0.5).flatten()),
                           Image.BILINEAR)
  if supersample > 1:
    warped = warped.resize((output_size, output_size), Image.LANCZOS)
  return warped


def output_to_source(points: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
  """Maps (x, y) points of a `warp_quad` output back to source pixels."""
  # Pixel centres: warp_quad samples output pixel u at source (u + 0.5) / size of the quad + 0.5.
  points = (np.asarray(points, dtype=np.float64) + 0.5) / output_size
  quad = np.asarray(quad, dtype=np.float64)
  return quad[0] + points[:, :1] * (quad[3] - quad[0]) + points[:, 1:] * (quad[1] - quad[0])


def center_square(image: Image.Image, output_size: int) -> Image.Image:
  """align: 'none': the central square, resized (for already-aligned crops)."""
  side = min(image.size)
  left, top = (image.width - side) // 2, (image.height - side) // 2
  return image.crop((left, top, left + side, top + side)).resize((output_size, output_size),
                                                                 Image.BILINEAR)


def _source_box(rect, scale: float, offset: Tuple[int, int]) -> Tuple[int, int, int, int]:
  """A dlib rectangle found in a copy at `scale` whose origin is `offset` -> source pixels."""
  return (round((rect.left() + offset[0]) / scale), round((rect.top() + offset[1]) / scale),
          round((rect.right() + offset[0]) / scale), round((rect.bottom() + offset[1]) / scale))


def _downscaled(image: Image.Image, max_side: int,
                reducing_gap: Optional[float] = None) -> Tuple[Image.Image, float]:
  """`image` shrunk (bilinear) so its longer side is at most `max_side`, and the scale used.

  `reducing_gap` (PIL's): box-reduce by an integer factor first where the scale is at
  most 1 / reducing_gap (faster; the pixels differ slightly).
  """
  scale = min(1.0, max_side / max(image.size))
  if scale == 1.0:
    return image, 1.0
  return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                      Image.BILINEAR, reducing_gap=reducing_gap), scale


def _for_hog(copy: Image.Image, scale: float) -> Image.Image:
  """What HOG looks at in a detection copy: grey where the photo was shrunk (LARGE_REDUCING_GAP)."""
  return copy if scale == 1.0 else copy.convert('L')


Box = Tuple[int, int, int, int]


def _scaled(box: Box, scale: float) -> Box:
  return tuple(round(v * scale) for v in box)


@dataclasses.dataclass
class Detection:
  """Faces found in a photo, and where detection looked (for 'no face' messages)."""
  boxes: List[Box]  # (left, top, right, bottom) in source pixels, largest first
  detectors: List[str]  # the detector that found each box ('hog' or 'cnn')
  passes: List[str]  # each pass: 'hog at 1024x768 (scale 0.25)', ...
  smallest_face: int  # smallest face box (source px) some pass could find
  # Per box: quarter turns that make it upright, None where it was found on the photo as it
  # is (`FaceAligner.align_box` then checks CNN faces for a turn).
  turns: List[Optional[int]] = dataclasses.field(default_factory=list)

  def describe(self) -> str:
    return (f'detection ran {"; ".join(self.passes)}; the smallest face it can find is about '
            f'{self.smallest_face} px')


def _same_face(a: Box, b: Box) -> bool:
  """Boxes of one face: overlapping by a third, or one's centre inside the other of about
  its size (a small face in front of or behind a big one stays a face of its own)."""
  inter_w = min(a[2], b[2]) - max(a[0], b[0])
  inter_h = min(a[3], b[3]) - max(a[1], b[1])
  if inter_w > 0 and inter_h > 0:
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if inter / max(union, 1) > 1 / 3:
      return True
  side_a, side_b = max(1, a[2] - a[0]), max(1, b[2] - b[0])
  if max(side_a, side_b) / min(side_a, side_b) > 1.5:
    return False
  for p, q in ((a, b), (b, a)):
    cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
    if q[0] <= cx <= q[2] and q[1] <= cy <= q[3]:
      return True
  return False


def _tiles(width: int, height: int, tile: int, overlap: int):
  """(left, top, right, bottom) tiles of at most `tile` px covering the image, overlapping."""
  step = max(1, tile - overlap)
  xs = list(range(0, max(1, width - overlap), step))
  ys = list(range(0, max(1, height - overlap), step))
  for top in ys:
    for left in xs:
      yield left, top, min(width, left + tile), min(height, top + tile)


def _bounded_cnn(cnn, rectangle, pixels: np.ndarray, upsample: int) -> list:
  """dlib rectangles of the faces `cnn(pixels)` finds, no pass given over CNN_MAX_PIXELS.

  An image within the budget is given to `cnn` as it is (its boxes are unchanged).
  A larger one is looked at on tiles of at most the budget, overlapping by 2.5 CNN
  windows, and on a half-size copy (recursively bounded): a face box of up to 2.5
  windows lies whole inside some tile, and a larger one is at least 1.25 windows on
  the copy, where the CNN finds it. Boxes of one face seen twice are kept once.

  Args:
    cnn: pixels [H, W, 3] uint8 -> dlib rectangles in those pixels, at `upsample`.
    rectangle: dlib.rectangle (boxes moved back to `pixels`' coordinates).
    pixels: [H, W, 3] uint8.
    upsample: the CNN's upsampling passes (each doubles both sides, quadruples memory).
  """
  height, width = pixels.shape[:2]
  growth = 4 ** upsample
  if width * height * growth <= CNN_MAX_PIXELS:
    return cnn(pixels)
  overlap = math.ceil(DETECTOR_WINDOW / 2 ** upsample * 2.5)
  tile = max(int(math.sqrt(CNN_MAX_PIXELS / growth)), 2 * overlap + 1)
  half, at = _downscaled(Image.fromarray(pixels), math.ceil(max(width, height) / 2))
  found = [_source_box(r, at, (0, 0)) for r in _bounded_cnn(cnn, rectangle, np.asarray(half),
                                                            upsample)]
  for left, top, right, bottom in _tiles(width, height, tile, overlap):
    for rect in cnn(np.ascontiguousarray(pixels[top:bottom, left:right])):
      box = _source_box(rect, 1.0, (left, top))
      if not any(_same_face(box, seen) for seen in found):
        found.append(box)
  return [rectangle(*box) for box in found]


class FaceAligner:
  """Loads the dlib models once; `align` turns a photo into an FFHQ-style crop."""

  def __init__(self, detector: str = 'hog+cnn', output_size: int = 256, hog_upsample: int = 1,
               cnn_upsample: int = 0, detect_max_side: int = 1024, cnn_max_side: int = 0):
    if detector not in DETECTOR_CHAINS:
      raise ValueError(f'ingest.face.detector {detector!r} is not one of {sorted(DETECTOR_CHAINS)}')
    import dlib  # pylint: disable=g-import-not-at-top
    import face_recognition_models  # pylint: disable=g-import-not-at-top
    self._chain = DETECTOR_CHAINS[detector]
    self._output_size = output_size
    self._upsample = {'hog': hog_upsample, 'cnn': cnn_upsample}
    self._detect_max_side = detect_max_side
    self._cnn_max_side = cnn_max_side
    self._rectangle = dlib.rectangle
    self._detectors = {}
    if 'hog' in self._chain:
      self._detectors['hog'] = dlib.get_frontal_face_detector()
    if 'cnn' in self._chain:
      cnn = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
      self._detectors['cnn'] = lambda pixels, up: _bounded_cnn(
          lambda part: [d.rect for d in cnn(part, up)], dlib.rectangle, pixels, up)
    self._predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    self._hog_on_crop = self._detectors.get('hog') or dlib.get_frontal_face_detector()

  def detect(self, image: Image.Image) -> Tuple[List[Tuple[int, int, int, int]], str]:
    """Face boxes (left, top, right, bottom) in source pixels and the detector of the first."""
    found = self.find_faces(image)
    return found.boxes, (found.detectors[0] if found.boxes else '')

  def find_faces(self, image: Image.Image, every_face: bool = False) -> Detection:
    """The faces of `image`, largest first, and where detection looked.

    1. The `detect_max_side` copy: HOG, then the CNN where HOG finds nothing
       (the configured chain). HOG boxes scoring just under its threshold are
       checked by the CNN on a crop around them (`_check_proposals`).
    2. Where that copy is too small to show a GUARANTEED_FACE-sized face and
       nothing was found (or `every_face`: predict and the web page account for
       every face), HOG with the same checks runs on overlapping tiles of a
       copy fine enough for it, and its faces are added.
    3. Where nothing was found in a small photo (shorter side under SMALL_PHOTO_SIDE),
       HOG with the checks and the CNN on an upscaled copy (avatars).
    4. Where nothing was found still, HOG on the detection copy turned 90, 180 and
       270 degrees (`Detection.turns`).
    With `every_face`, where that fine copy fits in one tile, HOG looks only at it
    (in step 1, instead of the coarse copy): it finds every face the coarse copy
    shows and the smaller ones, and HOG on the coarse copy would add ~0.2 CPU-s
    to a 12 Mpx photo.
    """
    small, scale = _downscaled(image, self._detect_max_side, LARGE_REDUCING_GAP)
    hog_upsample = self._upsample.get('hog', 0)
    fine_scale = min(1.0, DETECTOR_WINDOW / (2 ** hog_upsample) / GUARANTEED_FACE)
    fine_first = (every_face and DETECTOR_WINDOW / (2 ** hog_upsample) / scale > GUARANTEED_FACE
                  and max(image.size) * fine_scale <= FINE_TILE)
    boxes: List[Box] = []
    detectors: List[str] = []
    turns: List[Optional[int]] = []
    passes: List[str] = []
    smallest = []

    def add(found: List[Box], detector: str, turned: Optional[int] = None) -> None:
      for box in found:
        if not any(_same_face(box, seen) for seen in boxes):
          boxes.append(box)
          detectors.append(detector)
          turns.append(turned)

    def where(name: str, size, at: float, upsample: int, floor: int = 0) -> None:
      passes.append(f'{name} at {size[0]}x{size[1]} (scale {at:.2g})')
      smallest.append(max(floor, math.ceil(DETECTOR_WINDOW / (2 ** upsample) / at)))

    proposals = []
    for name in self._chain:
      if name == 'hog' and fine_first:
        accepted, weak, (label, size, at) = self._hog_fine(image, fine_scale, 0)
        add(accepted, 'hog')
        proposals += weak
        where(label, size, at, hog_upsample)
      elif name == 'hog':
        accepted, weak = self._hog(_for_hog(small, scale), scale, (0, 0))
        add(accepted, 'hog')
        proposals += weak
        where('hog', small.size, scale, hog_upsample)
      else:
        add(self._check_proposals(image, proposals, boxes), 'cnn')
        proposals = []
        if not boxes:  # the CNN over the whole copy only where nothing was found
          rects, rect_scale = self._detect_cnn(small, np.asarray(small), scale)
          add([_source_box(r, rect_scale, (0, 0)) for r in rects], 'cnn')
          where('cnn', small.size, scale, self._upsample['cnn'])
    if every_face and 'cnn' in self._detectors and len(boxes) >= 2:
      sides = sorted(box[2] - box[0] for box in boxes)
      at = min(1.0, DETECTOR_WINDOW * 1.25 / max(1, sides[len(sides) // 2]),
               math.sqrt(GROUP_CNN_MAX_PIXELS / (image.width * image.height)))
      copy, at = _downscaled(image, round(max(image.size) * at))
      add([_source_box(r, at, (0, 0)) for r in self._detectors['cnn'](np.asarray(copy), 0)], 'cnn')
      where('cnn', copy.size, at, 0)
    if 'hog' in self._detectors and smallest and min(smallest) > GUARANTEED_FACE and (
        every_face or not boxes):
      # A face the coarse copy cannot see fits inside one tile's overlap.
      accepted, weak, (label, size, at) = self._hog_fine(
          image, fine_scale, math.ceil(min(smallest) * fine_scale * 1.25))
      add(accepted, 'hog')
      if 'cnn' in self._detectors:
        add(self._check_proposals(image, weak, boxes), 'cnn')
      where(label, size, at, hog_upsample)
    if not boxes and min(image.size) < SMALL_PHOTO_SIDE:
      at = UPSCALED_SIDE / min(image.size)
      big = image.resize((round(image.width * at), round(image.height * at)), Image.BICUBIC)
      found, weak = [], []
      if 'hog' in self._detectors:  # boxes in the copy's pixels, then in the photo's
        found, weak = self._hog(big, 1.0, (0, 0))
        add([_scaled(box, 1 / at) for box in found], 'hog')
        where('hog', big.size, at, hog_upsample, SMALLEST_UPSCALED_FACE)
      if 'cnn' in self._detectors:
        add([_scaled(box, 1 / at) for box in self._check_proposals(big, weak, found)], 'cnn')
        if not boxes:
          add([_source_box(r, at, (0, 0)) for r in self._detectors['cnn'](np.asarray(big), 0)], 'cnn')
          where('cnn', big.size, at, 0, SMALLEST_UPSCALED_FACE)
    if not boxes:
      # No upright face: HOG on the detection copy turned (a photo turned without EXIF).
      view = _for_hog(small, scale)
      for turned in (1, 2, 3):
        accepted, _ = self._hog(turn(view, turned), scale, (0, 0))
        back = turned_size(image.size, turned)
        add([turn_box(box, back, 4 - turned) for box in accepted], 'hog', turned)
      passes.append('hog on that copy turned 90, 180 and 270 degrees')
    order = sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) *
                   (boxes[i][3] - boxes[i][1]))
    return Detection([boxes[i] for i in order], [detectors[i] for i in order], passes,
                     min(smallest) if smallest else 0, [turns[i] for i in order])

  def _hog_fine(self, image: Image.Image, fine_scale: float, overlap: int):
    """HOG on tiles overlapping by `overlap` of a grey copy at `fine_scale`.

    Returns (accepted boxes, weak proposals, (pass name, copy size, scale)) like `_hog`.
    """
    fine, fine_scale = _downscaled(image.convert('L'), round(max(image.size) * fine_scale),
                                   LARGE_REDUCING_GAP)
    tile = max(FINE_TILE, 2 * overlap)
    accepted, weak = [], []
    for left, top, right, bottom in _tiles(fine.width, fine.height, tile, overlap):
      found, proposals = self._hog(fine.crop((left, top, right, bottom)), fine_scale, (left, top))
      accepted += found
      weak += proposals
    return accepted, weak, (f'hog on {tile} px tiles', fine.size, fine_scale)

  def _hog(self, pixels_image: Image.Image, scale: float, offset: Tuple[int, int]):
    """(accepted boxes, [(score, box)] proposals just under the threshold), source px."""
    rects, scores, _ = self._hog_on_crop.run(np.asarray(pixels_image), self._upsample['hog'],
                                             PROPOSAL_THRESHOLD)
    accepted, weak = [], []
    for rect, score in zip(rects, scores):
      box = _source_box(rect, scale, offset)
      if score >= 0:
        accepted.append(box)
      else:
        weak.append((score, box))
    return accepted, weak

  def _check_proposals(self, image: Image.Image, proposals, known: List[Box]) -> List[Box]:
    """CNN boxes confirming weak HOG boxes, each looked at in a crop twice its size."""
    confirmed: List[Box] = []
    cnn = self._detectors['cnn']
    for _, box in sorted(proposals, key=lambda p: -p[0])[:MAX_CHECKED_PROPOSALS]:
      if any(_same_face(box, seen) for seen in known + confirmed):
        continue
      side = max(box[2] - box[0], box[3] - box[1])
      cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
      region = (max(0, cx - side), max(0, cy - side), min(image.width, cx + side),
                min(image.height, cy + side))
      # The face at ~1.25 windows: big enough for the CNN at upsample 0, no bigger.
      at = min(1.0, DETECTOR_WINDOW * 1.25 / max(1, side))
      crop, at = _downscaled(image.crop(region), round(max(region[2] - region[0],
                                                          region[3] - region[1]) * at))
      for rect in cnn(np.asarray(crop), 0):
        found = _source_box(rect, at, (region[0] * at, region[1] * at))
        if _same_face(found, box):
          confirmed.append(found)
          break
    return confirmed

  def _detect_cnn(self, small: Image.Image, pixels: np.ndarray, scale: float):
    """CNN boxes and their scale: on a `cnn_max_side` copy first, at full size if it finds none.

    The CNN's cost grows with the pixel count while faces in loose crops are
    large. On the 54 of 200 FairFace photos (224 px) HOG missed, the CNN at
    128 px found 51 faces, every one the face it finds at 224 px (box IoU >
    0.5), at 0.14 instead of 0.45 CPU-s per image; re-running the 3 misses at
    full size keeps the faces found unchanged for about 0.17 CPU-s per image.
    """
    cnn, upsample = self._detectors['cnn'], self._upsample['cnn']
    if self._cnn_max_side and max(small.size) > self._cnn_max_side:
      tiny, tiny_scale = _downscaled(small, self._cnn_max_side)
      rects = cnn(np.asarray(tiny), upsample)
      if len(rects):
        return rects, scale * tiny_scale
    return cnn(pixels, upsample), scale

  def landmarks(self, image: Image.Image, box: Tuple[int, int, int, int]) -> np.ndarray:
    """The 68 landmarks (x, y) of the face in `box`.

    Where that is less than half of a photo larger than the detection copy, the
    predictor sees only the box plus its side on every side (it reads pixels around
    its current landmarks, inside the box): the image it is given is copied, 40-70
    ms CPU for a 12 Mpx photo. Not byte-identical (dlib's float32 feature mapping
    rounds with the absolute coordinates; docs/performance.md), so photos that fit
    the detection copy keep the whole image.
    """
    offset = (0, 0)
    if max(image.size) > self._detect_max_side:
      side = max(box[2] - box[0], box[3] - box[1])
      region = (max(0, box[0] - side), max(0, box[1] - side), min(image.width, box[2] + side),
                min(image.height, box[3] + side))
      area = max(0, region[2] - region[0]) * max(0, region[3] - region[1])
      if 0 < area < image.width * image.height / 2:
        image, offset = image.crop(region), region[:2]
        box = (box[0] - offset[0], box[1] - offset[1], box[2] - offset[0], box[3] - offset[1])
    shape = self._predictor(np.asarray(image), self._rectangle(*box))
    return np.array([(p.x + offset[0], p.y + offset[1]) for p in shape.parts()], dtype=np.float64)

  def _turned_landmarks(self, image: Image.Image, box: Box, turns: int) -> np.ndarray:
    """Source-pixel landmarks of the face in `box`, found on its region turned upright."""
    side = max(box[2] - box[0], box[3] - box[1])
    region = (max(0, box[0] - side), max(0, box[1] - side), min(image.width, box[2] + side),
              min(image.height, box[3] + side))
    crop = image.crop(region)
    local = (box[0] - region[0], box[1] - region[1], box[2] - region[0], box[3] - region[1])
    shape = self._predictor(np.asarray(turn(crop, turns)),
                            self._rectangle(*turn_box(local, crop.size, turns)))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return turn_points(points, turned_size(crop.size, turns), 4 - turns) + region[:2]

  def _upright_turns(self, image: Image.Image, box: Box) -> Tuple[int, Box]:
    """Quarter turns that make the face in `box` upright for HOG, and HOG's box of it there.

    HOG looks at the box's region (the face at FACE_CHECK_SIDE px) as it is first, and
    only where it finds no face there at each other quarter turn. A turn is taken when
    HOG accepts a face (score >= 0) on it at the box's place; its box (source px, in the
    photo as it is) then places the landmarks, as for every face HOG finds upright.
    Returns (0, box) where no turn does better.
    """
    side = max(1, box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    region = (max(0, cx - side), max(0, cy - side), min(image.width, cx + side),
              min(image.height, cy + side))
    at = FACE_CHECK_SIDE / side
    crop = image.crop(region)
    crop = crop.resize((max(1, round(crop.width * at)), max(1, round(crop.height * at))),
                       Image.BILINEAR)
    local = tuple(round(v * at) for v in (box[0] - region[0], box[1] - region[1],
                                            box[2] - region[0], box[3] - region[1]))
    best, best_score = (0, box), 0.0
    for turns in range(4):
      rects, scores, _ = self._hog_on_crop.run(np.asarray(turn(crop, turns)), 0, 0.0)
      back = turned_size(crop.size, turns)
      for rect, score in zip(rects, scores):
        found = turn_box((rect.left(), rect.top(), rect.right(), rect.bottom()), back, 4 - turns)
        if not _same_face(found, local):
          continue
        if turns == 0:
          return 0, box
        if score > best_score:
          best_score = score
          best = (turns, _source_box(self._rectangle(*found), at, (region[0] * at, region[1] * at)))
    return best

  def _refine(self, aligned: Image.Image, quad: np.ndarray) -> Optional[np.ndarray]:
    """Source-pixel landmarks re-detected on a first aligned crop, or None."""
    rects = self._hog_on_crop(np.asarray(aligned), 0)
    if rects:
      rect = max(rects, key=lambda r: r.width() * r.height())
      box = (rect.left(), rect.top(), rect.right(), rect.bottom())
    else:  # where HOG boxes of aligned faces land: the predictor's familiar framing
      box = tuple(round(v * self._output_size) for v in ALIGNED_FACE_BOX)
    return output_to_source(self.landmarks(aligned, box), quad, self._output_size)

  def align(self, image: Image.Image) -> Optional[AlignedFace]:
    """The largest face, FFHQ-aligned; None when no face is found."""
    found = self.find_faces(image)
    if not found.boxes:
      return None
    return self.align_box(image, found.boxes[0], found.detectors[0], len(found.boxes),
                          found.turns[0])

  def align_box(self, image: Image.Image, box: Tuple[int, int, int, int], detector: str,
                num_faces: int = 1, turns: Optional[int] = None) -> AlignedFace:
    """The face in `box` (found by `detector`), FFHQ-aligned and upright.

    `turns`: quarter turns that make the face upright (`Detection.turns`); None: 0
    for HOG faces (HOG finds upright faces only), checked (`_upright_turns`) for others.
    """
    placed = box
    if turns is None:
      turns, placed = (0, box) if detector == 'hog' else self._upright_turns(image, box)
    landmarks = (self._turned_landmarks(image, placed, turns) if turns
                 else self.landmarks(image, box))
    quad = ffhq_quad(landmarks)
    aligned = warp_quad(image, quad, self._output_size)
    if detector != 'hog' and not turns:  # turned faces are placed by HOG's box already
      # The CNN finds the hard faces (turned, occluded, small) where landmarks
      # from its box are rougher; on the upright crop HOG usually finds the
      # face, and landmarks from there give a steadier second alignment.
      refined = self._refine(aligned, quad)
      if refined is not None:
        landmarks = refined
        aligned = warp_quad(image, ffhq_quad(landmarks), self._output_size)
    face_size = round(math.sqrt(max(0, box[2] - box[0]) * max(0, box[3] - box[1])))
    return AlignedFace(aligned, face_size, detector, num_faces, landmarks, tuple(box), turns)
