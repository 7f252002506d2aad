"""Typed configuration for the whole project, loaded from one YAML file.

Every knob of the pipeline lives in a dataclass here. `load_config` rejects
unknown keys and wrong types with the dotted name of the offending field, so a
typo in a config file fails loudly instead of silently using a default.
"""

import dataclasses
import json
import os
import typing
from typing import Any, Dict, List, Optional

import yaml

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA = os.path.join(PROJECT_ROOT, 'schema', 'schema.pbtxt')
DEFAULT_THRESHOLDS = os.path.join(PROJECT_ROOT, 'pipeline', 'configs', 'thresholds.yaml')


class ConfigError(ValueError):
  """A config file or value is invalid; the message names the field."""


@dataclasses.dataclass
class SourceConfig:
  """One input dataset. `kind` selects the layout reader."""
  kind: str  # 'fairface' | 'kaggle140k' | 'folders' | 'manifest'
  path: str  # root folder (fairface/kaggle140k/folders) or CSV file (manifest)
  name: str = ''  # value of the `source` feature; defaults to `kind`


@dataclasses.dataclass
class IngestConfig:
  sources: List[SourceConfig] = dataclasses.field(default_factory=list)
  # 'dlib' detects and FFHQ-aligns every face; 'none' only re-encodes images that
  # are already aligned crops (the generated demo data, the 140k set).
  align: str = 'dlib'
  # 'hog' (fast), 'cnn' (mmod, finds more faces, ~10x slower) or 'hog+cnn' (CNN only
  # where HOG finds none: HOG alone misses ~25% of FairFace, unevenly across groups).
  detector: str = 'hog+cnn'
  hog_upsample: int = 1  # HOG upsampling passes; 1 finds the small faces of 224px crops
  cnn_upsample: int = 0  # CNN upsampling passes; 0 already finds faces in 224px crops
  detect_max_side: int = 1024  # detect on a copy downscaled to this side (big photos)
  output_size: int = 256  # side of the aligned square crop written to the TFRecords
  jpeg_quality: int = 95
  max_image_pixels: int = 64_000_000  # decompression-bomb guard, checked before decoding
  limit_per_source: int = 0  # >0: ingest only this many inputs per source (smoke runs)
  progress_interval_seconds: float = 60.0  # how often each worker logs its progress
  # Fraction of inputs that may end as no-face/unreadable/filtered before the run fails.
  max_failure_rate: float = 0.5
  # Deterministic hash split for sources without their own split.
  eval_fraction: float = 0.1
  test_fraction: float = 0.1


@dataclasses.dataclass
class ValidationConfig:
  schema_file: str = DEFAULT_SCHEMA
  # Anomaly kinds (e.g. 'ENUM_TYPE_UNEXPECTED_STRING_VALUES') or 'feature:kind'
  # pairs a user accepts on purpose; anything else stops the run.
  allowed_anomalies: List[str] = dataclasses.field(default_factory=list)
  # Each judged demographic group needs this many real and this many fake
  # examples in the evaluation split.
  min_examples_per_class: int = 5
  on_short_group: str = 'insufficient'  # 'stop' or 'insufficient'
  coverage_split: str = 'test'  # the split the Evaluator judges; slice coverage is counted there
  # Split skew: L-infinity distance between each split's value distribution and the
  # baseline split's, per feature; above the bound (and beyond sampling noise) it stops the run.
  skew_features: List[str] = dataclasses.field(default_factory=lambda: ['gender', 'race', 'age'])
  skew_baseline_split: str = 'train'
  max_skew_linf: float = 0.1
  # Distances within this many standard errors are sampling noise (~60 values compared, and
  # the demo's real/fake pairs share demographics): 6 stops 0 of 200 demo seeds, 4 stops 3 of 40.
  skew_noise_z: float = 6.0


@dataclasses.dataclass
class TrainConfig:
  architecture: str = 'vgg10'  # 'vgg10' (the paper's best) or 'baseline' (its 3-conv net)
  image_size: int = 128
  color_mode: str = 'grayscale'  # 'grayscale' or 'rgb'
  epochs: int = 10
  steps_per_epoch: Optional[int] = None  # None: one pass over the train split
  batch_size: int = 32
  learning_rate: float = 1e-3
  optimizer: str = 'adam'
  dropout: float = 0.0
  class_weighting: bool = True
  early_stopping_patience: int = 3  # epochs without improvement of the monitor; 0 disables
  # What early stopping watches and restores the best epoch of: 'val_loss' (the paper's),
  # 'val_auc' or 'val_accuracy'. With class weights and a differently mixed eval split,
  # val_loss can prefer an early epoch whose AUC is far worse (seen on ../shared/data).
  early_stopping_monitor: str = 'val_loss'
  seed: int = 42
  validation_steps: Optional[int] = None  # None: the whole eval split each epoch
  shuffle_buffer: int = 2048  # examples (encoded, ~10 KB each at 128 px)
  horizontal_flip: bool = True  # the paper's augmentation; training only
  mixed_precision: bool = True  # mixed float16 on GPU; never applied on CPU
  deterministic: bool = False  # also enable TF op determinism (slower on GPU)


@dataclasses.dataclass
class GroupingConfig:
  """A fairness comparison: `group` against `reference` on one feature.

  Values are feature values; `reference: rest` means every other value. A
  `feature` such as 'race x gender' crosses features, values joined by ' x '.
  """
  name: str
  feature: str
  group: str
  reference: str = 'rest'


@dataclasses.dataclass
class ThresholdsConfig:
  """What a model must achieve to be pushed (issue: fairness gate)."""
  decision_threshold: float = 0.5  # probability above which a face is called fake
  # A group with fewer examples of the class a rate needs is "insufficient
  # evidence", never a pass.
  min_group_size: int = 30
  min_binary_accuracy: float = 0.8
  min_auc: float = 0.8
  disparate_impact_range: List[float] = dataclasses.field(default_factory=lambda: [0.8, 1.25])
  max_abs_average_odds_difference: float = 0.05
  max_fpr_gap: float = 0.05
  max_fnr_gap: float = 0.05
  groupings: List[GroupingConfig] = dataclasses.field(default_factory=list)
  # Also judge every value of these features (or crosses like 'race x gender') against the rest.
  judge_each_value_of: List[str] = dataclasses.field(default_factory=list)
  # Fairness metrics declared unmeasurable on this data (e.g. fnr_gap when fakes carry no
  # demographics): reported as 'not_measurable', never as passed. Default: none (strict).
  not_measurable: List[str] = dataclasses.field(default_factory=list)
  judge_on: str = 'estimate'  # 'estimate', or 'interval': the whole interval must be in bounds
  confidence_level: float = 0.95  # of the fairness and per-slice rate intervals
  bootstrap_samples: int = 2000  # seeded parametric bootstrap draws over the confusion counts
  bootstrap_seed: int = 0
  # TFMA's own metric intervals: 'off', 'jackknife' or 'poisson_bootstrap' (~15x slower).
  tfma_confidence_intervals: str = 'off'


@dataclasses.dataclass
class KubeflowConfig:
  """How `fakefaces compile-kubeflow` targets a cluster (kubeflow/runner.py)."""
  image: str = ''  # pipeline image built from ./Dockerfile, e.g. gcr.io/<project>/fakefaces:0.1.0
  pipeline_root: str = ''  # remote pipeline_root for the cluster (gs://, s3://); '' keeps the top-level one
  serving_model_dir: str = ''  # remote Pusher destination for the cluster; '' keeps the top-level one
  # Beam args added to the data-heavy components only (FaceExampleGen, StatisticsGen, Evaluator),
  # e.g. ['--runner=DataflowRunner', '--project=p', '--region=r', '--temp_location=gs://b/tmp'].
  data_beam_pipeline_args: List[str] = dataclasses.field(default_factory=list)
  trainer_cpu: float = 0.0  # vCPUs requested and capped for the Trainer pod; 0: cluster default
  trainer_memory_gb: float = 0.0  # memory (GB) requested and capped for the Trainer pod; 0: default
  trainer_gpu_count: int = 0  # GPUs for the Trainer pod (the image must be built with GPU=1)
  trainer_gpu_type: str = 'nvidia.com/gpu'  # KFP: the k8s resource name; Vertex: e.g. NVIDIA_TESLA_T4
  image_project_root: str = '/fakefaces'  # where the Dockerfile installs this repository


def load_thresholds(path: str) -> ThresholdsConfig:
  return from_dict(ThresholdsConfig, load_yaml(path), os.path.basename(path))


@dataclasses.dataclass
class PipelineConfig:
  name: str = 'fakefaces'
  pipeline_root: str = 'runs/pipeline_root'
  metadata_path: str = 'runs/metadata.sqlite'
  serving_model_dir: str = 'runs/serving_model'  # TF Serving model base path
  enable_cache: bool = True
  # Extra Beam args for the data-heavy components (ingestion, statistics, evaluation).
  beam_pipeline_args: List[str] = dataclasses.field(
      default_factory=lambda: ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  thresholds_file: str = DEFAULT_THRESHOLDS
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)  # cluster runs only


def _coerce(value: Any, annotation: Any, where: str) -> Any:
  """Checks `value` against a dataclass field annotation, building nested dataclasses."""
  origin = typing.get_origin(annotation)
  if origin is typing.Union:  # Optional[X]
    if value is None:
      return None
    (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _coerce(value, inner, where)
  if origin in (list, List):
    if not isinstance(value, list):
      raise ConfigError(f'{where}: expected a list, got {value!r}')
    (inner,) = typing.get_args(annotation)
    return [_coerce(v, inner, f'{where}[{i}]') for i, v in enumerate(value)]
  if dataclasses.is_dataclass(annotation):
    if not isinstance(value, dict):
      raise ConfigError(f'{where}: expected a mapping, got {value!r}')
    return from_dict(annotation, value, where)
  if annotation is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if annotation in (int, float, str, bool):
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
      raise ConfigError(f'{where}: expected {annotation.__name__}, got {value!r}')
  return value


def from_dict(cls, data: Dict[str, Any], where: str = ''):
  """Builds dataclass `cls` from a mapping, naming any unknown or mistyped key."""
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - names)
  if unknown:
    raise ConfigError(f'{where or cls.__name__}: unknown key(s) {unknown}; '
                      f'known keys are {sorted(names)}')
  kwargs = {
      key: _coerce(value, hints[key], f'{where}.{key}' if where else key)
      for key, value in data.items()
  }
  return cls(**kwargs)


def to_json(config) -> str:
  """A config dataclass as the JSON string components take as an execution property."""
  return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls, text: str, where: str):
  """The inverse of `to_json`, with the same field-naming checks as YAML loading."""
  return from_dict(cls, json.loads(text), where)


def load_yaml(path: str) -> Dict[str, Any]:
  try:
    with open(path, encoding='utf-8') as f:
      data = yaml.safe_load(f) or {}
  except OSError as e:
    raise ConfigError(f'cannot read config file {path}: {e}') from e
  except yaml.YAMLError as e:
    raise ConfigError(f'config file {path} is not valid YAML: {e}') from e
  if not isinstance(data, dict):
    raise ConfigError(f'config file {path}: top level must be a mapping')
  return data


def resolve_paths(config: PipelineConfig, base_dir: str) -> None:
  """Makes relative local paths absolute (against `base_dir`); URIs stay as they are.

  Absolute paths matter because components may run in other processes.
  """

  def resolve(path: str) -> str:
    if not path or '://' in path or os.path.isabs(path):
      return path
    return os.path.normpath(os.path.join(base_dir, path))

  config.pipeline_root = resolve(config.pipeline_root)
  config.metadata_path = resolve(config.metadata_path)
  config.serving_model_dir = resolve(config.serving_model_dir)
  config.thresholds_file = resolve(config.thresholds_file)
  config.validation.schema_file = resolve(config.validation.schema_file)
  for source in config.ingest.sources:
    source.path = resolve(source.path)


def load_config(path: Optional[str] = None) -> PipelineConfig:
  """Loads a PipelineConfig from YAML (defaults when `path` is None)."""
  if path is None:
    config = PipelineConfig()
    resolve_paths(config, os.getcwd())
    return config
  config = from_dict(PipelineConfig, load_yaml(path))
  resolve_paths(config, os.getcwd())  # like any CLI: relative to where you run it
  return config
