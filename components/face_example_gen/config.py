"""FaceExampleGen's configuration: the input sources, how faces are prepared, and the splits."""

import dataclasses
from typing import ClassVar, Dict, List, Optional, Tuple

from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.shared.config_base import FieldError

OWNER = 'ingest'  # how errors name an IngestConfig built outside a config file
# Kinds whose inputs carry their own test split, which a per-source fraction cannot move:
# kaggle140k's train/valid/test folders; FairFace's val CSV (its train rows are hash-split
# into train and eval by ingest.eval_fraction).
OWN_SPLIT_KINDS = ('kaggle140k', 'fairface')
FRACTIONS = ('eval_fraction', 'test_fraction')  # per source (SourceConfig) and global (IngestConfig)


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
  # This source's share of the eval / test split where it is hash-split (folders; manifest
  # rows without a split of their own), instead of ingest.eval_fraction / test_fraction;
  # None follows those. For the only labelled fakes (SDFD), whose test share is the
  # gate's evidence per group. Nested: an image in test at one test_fraction is in test
  # at every larger one (sources.hash_split).
  eval_fraction: Optional[float] = None
  test_fraction: Optional[float] = None  # as eval_fraction, for the test split

  def __post_init__(self):
    for field in FRACTIONS:
      value = getattr(self, field)
      if value is None:
        continue
      if not 0 <= value < 1:
        raise FieldError('source', field, f'{value} is not in [0, 1)')
      if self.role == 'audit':
        raise FieldError('source', field, f'{value} is set for a source with role: audit, '
                         'whose every input is in the test split; remove it')
      if self.kind in OWN_SPLIT_KINDS:
        raise FieldError('source', field, f'{value} is set for kind {self.kind}, whose inputs '
                         'carry their own split (kaggle140k: its train/valid/test folders; '
                         'fairface: val is test, train is split by ingest.eval_fraction); '
                         'remove it')


@dataclasses.dataclass
class IngestConfig:
  sources: List[SourceConfig] = dataclasses.field(default_factory=list)  # the input datasets
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
  # Deterministic hash split for sources without their own split: the share of inputs in
  # eval (early stopping, the operating point).
  eval_fraction: float = 0.1
  test_fraction: float = 0.1  # the share in test (judged by the Evaluator and the gates)

  # The face-preparation keys used to sit directly under `ingest:`; an old config
  # fails naming where each went (config_base.from_dict).
  MOVED_KEYS: ClassVar[Dict[str, str]] = {
      f.name: f'face.{f.name}' for f in dataclasses.fields(FacePreparation)}

  def __post_init__(self):
    for index, source in enumerate(self.sources):
      if source.eval_fraction is None and source.test_fraction is None:
        continue  # the global fractions, checked by executor.validate_config
      eval_fraction, test_fraction = self.split_fractions(source)
      if eval_fraction + test_fraction >= 1:
        field = 'test_fraction' if source.test_fraction is not None else 'eval_fraction'
        raise FieldError(OWNER, f'sources[{index}].{field}',
                         f'{getattr(source, field)}: eval_fraction {eval_fraction} + '
                         f'test_fraction {test_fraction} of this source leave no room for train')

  def split_fractions(self, source: SourceConfig) -> Tuple[float, float]:
    """(eval_fraction, test_fraction) of `source` where hash-split: its own, else the global."""
    return tuple(getattr(self, f) if getattr(source, f) is None else getattr(source, f)
                 for f in FRACTIONS)
