"""The DemographicAnnotator's configuration (`annotator:` in the pipeline config)."""

import dataclasses

from fakefaces.components.shared import features as shared_features
from fakefaces.components.shared.config_base import ConfigError, FieldError
from fakefaces.components.image_encoder import clip_weights

# annotator.features: what the classifiers read (face_features.py; README "Features").
DLIB_DESCRIPTORS = 'dlib_descriptors'  # dlib's 128-d face descriptor
CLIP_EMBEDDING = 'clip_embedding'  # the crop's 512-d CLIP ViT-B/16 embedding
FEATURES = (DLIB_DESCRIPTORS, CLIP_EMBEDDING)
OWNER = 'annotator'  # how errors name an AnnotatorConfig built outside a config file


@dataclasses.dataclass
class AnnotatorConfig:
  """How gender, race and age are predicted for faces that carry no human label.

  A prediction below its attribute's `min_confidence_*` stays 'unknown'. The
  defaults were chosen on FairFace val (the labelled test split, never trained
  on; numbers in components/demographic_annotator/README.md): race and age
  have 7 and 9 classes, so their top probabilities are lower than gender's.
  """
  enabled: bool = True  # False: pass the examples through, marking sources, predicting nothing
  # The least top-class probability at which a prediction is kept, per attribute; below
  # it the attribute stays 'unknown'.
  min_confidence_gender: float = 0.8
  min_confidence_race: float = 0.5  # as min_confidence_gender, for race (7 classes)
  min_confidence_age: float = 0.4  # as min_confidence_gender, for age (9 classes)
  # A class needs this many human-labelled train faces to be learned; rarer classes
  # are never predicted and the report names them.
  min_train_per_class: int = 10
  # What the classifiers read: 'dlib_descriptors' (128-d) or 'clip_embedding' (512-d,
  # the same vectors the Trainer's clip_vit_b16 head trains on;
  # components/demographic_annotator/README.md, "Features").
  features: str = DLIB_DESCRIPTORS
  # For clip_embedding, the Trainer's settings of the same names (train.*): the
  # embeddings are cached there, so the Trainer's run reuses them. '' as train's.
  embedding_cache_dir: str = ''
  backbone_weights: str = ''  # the backbone's ONNX file, as train.backbone_weights
  # Inverse regularisation strength of the multinomial logistic regression on the
  # standardised features.
  regularization_c: float = 1.0
  train_split: str = shared_features.TRAIN  # the classifiers learn from its human labels
  test_split: str = shared_features.TEST  # accuracy is measured on this split's human labels
  # When every labelled source is audit-only (all in the test split), set train_split to
  # the test split and this to k >= 2: each labelled test face is then scored by
  # classifiers fitted on the other k-1 folds (so the report and the gate's precision
  # still rest on faces a classifier never saw), and unlabelled faces by classifiers
  # fitted on all of them. The detector never sees these labels either way.
  cross_fit_folds: int = 0
  seed: int = 0  # fold assignment
  progress_interval_seconds: float = 60.0  # how often the descriptor pass logs its progress

  def __post_init__(self):
    """Checks `features`, and for clip_embedding the backbone's weights, at config load.

    As TrainConfig does: a missing package or a wrong file fails before
    ingestion, naming the package, its version and the expected sha256.
    """
    if self.features not in FEATURES:
      raise FieldError(OWNER, 'features', f'{self.features!r} is not one of {list(FEATURES)}')
    if self.features != CLIP_EMBEDDING:
      return
    try:
      clip_weights.checked(self.backbone_weights)
    except clip_weights.BackboneWeightsError as e:
      field = 'backbone_weights' if self.backbone_weights else 'features'
      raise FieldError(OWNER, field, f'{self.features}: {e}') from None

  def min_confidence(self, attribute: str) -> float:
    return getattr(self, f'min_confidence_{attribute}')


def validate(config: AnnotatorConfig, where: str = 'annotator') -> None:
  """Raises ConfigError naming the field."""
  for attribute in shared_features.DEMOGRAPHIC_FEATURES:
    value = config.min_confidence(attribute)
    if not 0.0 <= value <= 1.0:
      raise ConfigError(f'{where}.min_confidence_{attribute} must be in [0, 1], got {value}')
  if config.min_train_per_class < 1:
    raise ConfigError(f'{where}.min_train_per_class must be >= 1, got {config.min_train_per_class}')
  if config.regularization_c <= 0:
    raise ConfigError(f'{where}.regularization_c must be > 0, got {config.regularization_c}')
  for name in ('train_split', 'test_split'):
    if getattr(config, name) not in shared_features.SPLITS:
      raise ConfigError(f'{where}.{name} must be one of {list(shared_features.SPLITS)}, '
                        f'got {getattr(config, name)!r}')
  if config.cross_fit_folds < 0 or config.cross_fit_folds == 1:
    raise ConfigError(f'{where}.cross_fit_folds must be 0 (off) or >= 2, '
                      f'got {config.cross_fit_folds}')
  if config.train_split == config.test_split and not config.cross_fit_folds:
    raise ConfigError(f'{where}.test_split must differ from train_split ({config.train_split!r}) '
                      f'unless {where}.cross_fit_folds >= 2: accuracy is measured on faces the '
                      'classifiers never saw')
  if config.cross_fit_folds and config.train_split != config.test_split:
    raise ConfigError(f'{where}.cross_fit_folds applies only when train_split == test_split '
                      f'(got {config.train_split!r} and {config.test_split!r})')
