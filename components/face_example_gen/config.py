"""FaceExampleGen's configuration: the input sources, how faces are prepared, and the splits."""

import dataclasses
from typing import ClassVar, Dict, List

from fakefaces.components.face_preparation.faces import FacePreparation


@dataclasses.dataclass
class SourceConfig:
  """One input dataset. `kind` selects the layout reader."""
  kind: str  # 'fairface' | 'kaggle140k' | 'folders' | 'manifest'
  path: str  # root folder (fairface/kaggle140k/folders) or CSV file (manifest)
  name: str = ''  # value of the `source` feature; defaults to `kind`
  # 'train': split as usual. 'audit': judged but never trained on; every input goes to
  # the test split. For sources that exist in one class only (FairFace: reals, no fakes),
  # which a model would otherwise learn as "looks like this source -> real".
  role: str = 'train'
  # '' follows ingest.face.align. 'none' for a source whose images are FFHQ-aligned already
  # (FFHQ, 140k, thispersondoesnotexist): dlib's re-alignment resamples every pixel and
  # removes the GAN evidence a detector needs (docs/detection_quality.md). Photos from
  # users, and audit sources like FairFace, keep 'dlib'.
  align: str = ''
  # What the source's gender/race/age are: 'human' (a person's labels, as FairFace's)
  # or 'prompted' (what a generator was asked for, as SDFD's): the examples then carry
  # demographics_source 'prompted', and the annotator neither replaces nor learns from them.
  demographics: str = 'human'


@dataclasses.dataclass
class IngestConfig:
  sources: List[SourceConfig] = dataclasses.field(default_factory=list)
  # How every photo becomes a crop (detector, alignment, size, treatment, JPEG): the
  # parameters the Trainer stores in the SavedModel, so clients prepare photos alike.
  # YAML: a `face:` section under `ingest:`.
  face: FacePreparation = dataclasses.field(default_factory=FacePreparation)
  # Store dlib's 128-d face descriptor of each aligned face, taken before the
  # treatment (face.crop_fraction, ...), for the DemographicAnnotator (~113 CPU-ms per
  # face, in the Beam workers). Needed when a crop cuts into the face: at crop_fraction
  # 0.5 the annotator's descriptor box would reach outside the stored image.
  face_descriptors: bool = False
  limit_per_source: int = 0  # >0: ingest only this many inputs per source (smoke runs)
  progress_interval_seconds: float = 60.0  # how often each worker logs its progress
  # Fraction of inputs that may end as no-face/unreadable/filtered before the run fails.
  max_failure_rate: float = 0.5
  # Deterministic hash split for sources without their own split.
  eval_fraction: float = 0.1
  test_fraction: float = 0.1

  # The face-preparation keys used to sit directly under `ingest:`; an old config
  # fails naming where each went (config_base.from_dict).
  MOVED_KEYS: ClassVar[Dict[str, str]] = {
      f.name: f'face.{f.name}' for f in dataclasses.fields(FacePreparation)}
