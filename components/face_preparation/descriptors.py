"""dlib's 128-d face descriptor of an aligned crop, without detecting the face again.

Used by FaceExampleGen (`ingest.face_descriptors`: on the aligned face before
the shared treatment, so a crop or resampling for the source-shortcut
mitigation never reaches the descriptor) and by the DemographicAnnotator (on
the stored image, for examples ingested without descriptors).

An aligned crop has the face at a known place:
`align.ALIGNED_FACE_BOX` (the median HOG box on aligned crops). The 5-point
shape predictor runs on that fixed box and `compute_face_descriptor` on the
resulting landmarks. Measured on 60 aligned 128 px faces (2 shared cores):
the fixed box gave descriptors 0.04 (median, max 0.11) from those after a HOG
re-detection, far below the 0.6 dlib uses to tell people apart, at the same
cost (~113 CPU-ms per face either way, almost all of it the ResNet); the fixed
box also never fails, where a re-detection can. The 5-point model (dlib's own
data, no iBUG 300-W licence restriction) moved descriptors 0.12 from the
68-point model's, and is what dlib pairs with the ResNet model.

Models come from the `face_recognition_models` package: nothing is downloaded.
"""

import io
from typing import Optional

import numpy as np
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_preparation import align

DESCRIPTOR_SIZE = 128


class FaceDescriber:
  """Loads the models once; `describe(jpeg_or_png_bytes)` returns a (128,) float32 vector."""

  def __init__(self):
    import dlib  # pylint: disable=g-import-not-at-top
    import face_recognition_models  # pylint: disable=g-import-not-at-top
    self._rectangle = dlib.rectangle
    self._shape = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location())
    self._resnet = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location())

  def describe_pixels(self, rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    left, top, right, bottom = align.ALIGNED_FACE_BOX
    box = self._rectangle(round(left * width), round(top * height), round(right * width),
                          round(bottom * height))
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return np.asarray(self._resnet.compute_face_descriptor(rgb, self._shape(rgb, box)),
                      dtype=np.float32)

  def describe(self, encoded: bytes) -> np.ndarray:
    """Raises ValueError for bytes that are not an image."""
    try:
      image = Image.open(io.BytesIO(encoded)).convert('RGB')
    except Exception as e:  # pylint: disable=broad-except  (PIL raises many types)
      raise ValueError(f'not a decodable image: {type(e).__name__}: {e}') from e
    return self.describe_pixels(np.asarray(image))


def from_example(example) -> Optional[np.ndarray]:
  """The descriptor FaceExampleGen stored in a tf.train.Example, None when it has none."""
  values = example.features.feature[features.FACE_DESCRIPTOR].float_list.value
  return np.asarray(values, dtype=np.float32) if len(values) == DESCRIPTOR_SIZE else None
