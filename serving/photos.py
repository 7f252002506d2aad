"""Photo in, verdict per face out: what `fakefaces predict` and the web page share.

    preparer = photos.preparer_for(client)            # the served model's own face preparation
    result = photos.check_photo(client, preparer, data, explain=True)
    for face in result.faces: face.box, face.fake_probability, face.label, face.heatmap

Every face goes through `fakefaces.components.face_preparation.faces` (decode with EXIF
orientation, refuse what dlib must not see, detect, align, crop, JPEG), the
code ingestion used to make the training data, with the parameters the served
model returns from its `face_preparation` signature. Only the crops travel to
TF Serving (`serving_default`, or `explain` for heatmaps).
"""

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.face_preparation import faces as faces_lib
from fakefaces.components.face_preparation import images as images_lib

# Faces scored per photo by default (largest first): `fakefaces predict --max-faces`,
# `fakefaces web --max-faces`; 0 scores every face found. The answer says how many
# faces were found and why any were not scored.
MAX_FACES = 20

ImageProblem = images_lib.ImageProblem


@dataclasses.dataclass
class FaceVerdict:
  box: Tuple[int, int, int, int]  # (left, top, right, bottom) in the upright photo
  fake_probability: float
  label: str  # 'real' or 'fake' (the served model's decision threshold)
  crop: object = None  # PIL image the model scored
  heatmap: Optional[np.ndarray] = None  # [size, size] in [0, 1] when explained
  # Degrees the face is turned counter-clockwise in the photo (0, 90, 180, 270); it was
  # scored upright whatever this is (faces_lib.PreparedFace.rotation).
  rotation: int = 0

  def to_json(self):
    return {'box': list(self.box), contract.PROBABILITY_KEY: round(self.fake_probability, 6),
            contract.LABEL_KEY: self.label, 'rotation': self.rotation}

  def turned_note(self) -> str:
    """'' for an upright face, else 'turned 90 degrees in the photo, scored upright'."""
    return f'turned {self.rotation} degrees in the photo, scored upright' if self.rotation else ''


def evidence_map(heatmap: np.ndarray, fake_probability: float) -> np.ndarray:
  """The Grad-CAM map on one scale across faces: [size, size] in [0, P(fake)].

  The `explain` signature scales each map to its own peak (1.0), which says
  where the model looked but not how much it found: a real photo scored
  P(fake) = 0.000 would show as bright a hotspot as a certain fake. Multiplying
  by P(fake) makes a pixel's value the share of the face's P(fake) that
  Grad-CAM puts there at most: 0 everywhere on a face scored real with
  certainty, 0.93 at the strongest evidence of a face scored 0.93.
  """
  return np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * float(
      np.clip(fake_probability, 0.0, 1.0))


@dataclasses.dataclass
class PhotoResult:
  image: object  # the upright PIL photo, or a smaller copy of it (`size` is the photo's)
  faces: List[FaceVerdict]
  no_face_reason: str = ''  # set when faces is empty
  found: int = 0  # faces detected; len(faces) of them were scored
  not_scored: Dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
  max_faces: int = 0  # the cap the photo was checked with (0: none)
  detection: str = ''  # where detection looked, the smallest face it can find
  size: Tuple[int, int] = (0, 0)  # (width, height) of the photo: the pixels of the face boxes

  @classmethod
  def of(cls, photo: faces_lib.PreparedPhoto, max_faces: int) -> 'PhotoResult':
    """The result of a prepared photo, before scoring (`faces` empty)."""
    return cls(photo.image, [], photo.no_face_reason, photo.found, dict(photo.not_prepared),
               max_faces, photo.detection, photo.size)

  def summary(self) -> str:
    """'27 faces found, 20 scored; 7 not scored: over the cap of 20 (--max-faces)'.

    A model that takes images as they are (align 'none') finds no face: its answer
    says what was scored instead of '1 face found' on a landscape.
    """
    if self.detection == faces_lib.NO_DETECTION:
      return 'no face detection: the centred square of the photo was scored as one face crop'
    text = f'{self.found} face{"" if self.found == 1 else "s"} found, {len(self.faces)} scored'
    if self.not_scored:
      why = ', '.join(f'{n} {reason}' + (f' of {self.max_faces} (--max-faces)'
                                         if reason == faces_lib.OVER_CAP else '')
                      for reason, n in sorted(self.not_scored.items()))
      text += f'; not scored: {why}'
    return text

  def counts_json(self) -> Dict[str, object]:
    """The JSON fields every answer carries about the faces of the photo."""
    return {'faces_found': self.found, 'faces_scored': len(self.faces),
            'not_scored': dict(sorted(self.not_scored.items())), 'max_faces': self.max_faces,
            'detection': self.detection}


def preparer_for(client, aligned: bool = False,
                 reuse: Optional[faces_lib.FacePreparer] = None) -> faces_lib.FacePreparer:
  """A FacePreparer with the served model's parameters (`aligned`: centred square, no dlib).

  The parameters are asked of the server every time (a new version may prepare
  differently); `reuse` is returned where its parameters are those, keeping its
  loaded dlib models (a long-running client such as the web page).
  """
  params = client.face_preparation()
  if aligned:
    params = dataclasses.replace(params, align='none')
  if reuse is not None and reuse.params == params:
    return reuse
  return faces_lib.FacePreparer(params)


def check_photo(client, preparer: faces_lib.FacePreparer, data: bytes, explain: bool = False,
                max_faces: int = MAX_FACES,
                run: Optional[Callable] = None) -> PhotoResult:
  """Prepares every face of `data` and scores it. Raises ImageProblem for bad input,
  fakefaces.serving.status.ServingError when the server fails.

  `run(function, *args)`: where the preparation runs (the web page's one preparation
  thread: dlib's detectors are not thread-safe, and one thread bounds the decoded
  photos in memory); scoring runs in the caller's thread. None: here.
  """
  photo = (run or (lambda function, *args: function(*args)))(
      preparer.prepare, data, True, max_faces)
  result = PhotoResult.of(photo, max_faces)
  if not photo.faces:
    return result
  crops = [face.encoded for face in photo.faces]
  scored = client.explain(crops) if explain else [(p, None) for p in client.predict(crops)]
  result.faces = [FaceVerdict(face.box, p.fake_probability, p.label, face.crop, heatmap,
                              face.rotation)
                  for face, (p, heatmap) in zip(photo.faces, scored)]
  return result
