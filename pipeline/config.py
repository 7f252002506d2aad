"""The pipeline's configuration, loaded from one YAML file.

Each component owns its config type (`components/<name>/config.py`); this
module only assembles them, adds what belongs to orchestration (paths, Beam
args, Kubeflow), and loads the YAML. Unknown keys and wrong types fail with the
dotted name of the offending field (`components/shared/config_base.py`).
"""

import dataclasses
import os
from typing import List, Optional

# Re-exported: the one place that names every config type of the project.
from fakefaces.components.shared.config_base import (  # noqa: F401
    DEFAULT_SCHEMA, PROJECT_ROOT, ConfigError, from_dict, from_json, load_yaml, to_json)
from fakefaces.components.data_gate.config import ValidationConfig
from fakefaces.components.demographic_annotator.config import (AnnotatorConfig, CLIP_EMBEDDING,
                                                               DLIB_DESCRIPTORS)
from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig  # noqa: F401
from fakefaces.components.face_preparation import treatment
from fakefaces.components.face_preparation.faces import FacePreparation  # noqa: F401
from fakefaces.components.shared.groupings import GroupingConfig  # noqa: F401
from fakefaces.components.model_card.config import ModelCardConfig
from fakefaces.components.serving_canary.config import CanaryConfig
from fakefaces.components.shared.thresholds import ThresholdsConfig, load_thresholds  # noqa: F401
from fakefaces.components.trainer.config import BACKBONE_NAMES, FUSED, TrainConfig

DEFAULT_THRESHOLDS = os.path.join(PROJECT_ROOT, 'pipeline', 'configs', 'thresholds.yaml')


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
  # Where the Dockerfile's wheel install puts the package (its schema and configs) in the image.
  image_project_root: str = '/usr/local/lib/python3.10/site-packages/fakefaces'


@dataclasses.dataclass
class PipelineConfig:
  name: str = 'fakefaces'  # the TFX pipeline's name, under which MLMD records its runs
  pipeline_root: str = 'runs/pipeline_root'  # where the components write their artifacts
  metadata_path: str = 'runs/metadata.sqlite'  # the ML Metadata store (SQLite) of local runs
  serving_model_dir: str = 'runs/serving_model'  # TF Serving model base path
  # Reuse a component's outputs when its inputs and properties are unchanged (TFX caching);
  # `fakefaces run --no-cache` turns it off for one run.
  enable_cache: bool = True
  # Beam args of the data steps (ingestion, statistics, evaluation; `--beam-arg` replaces
  # them). With another runner (`--runner=PortableRunner --job_endpoint=...`, Flink, Spark,
  # Dataflow) they run there as given, one face preparer per Beam worker
  # (docs/distributed_beam.md).
  beam_pipeline_args: List[str] = dataclasses.field(
      default_factory=lambda: ['--direct_running_mode=in_memory', '--direct_num_workers=1'])
  # FaceExampleGen's processes in local runs: 0 = auto (one per core when the
  # ingestion repays the start-up), 1, or N. The other Beam steps run on one
  # in-memory worker (measured faster). See pipeline/beam_workers.py; Kubeflow
  # pods keep beam_pipeline_args as they are.
  beam_workers: int = 0
  thresholds_file: str = DEFAULT_THRESHOLDS  # the accuracy and fairness bounds (ThresholdsConfig)
  # FaceExampleGen: the input sources, how faces are prepared, and the splits.
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  # DemographicAnnotator: predicts the demographics of faces without human labels.
  annotator: AnnotatorConfig = dataclasses.field(default_factory=AnnotatorConfig)
  # DataGate: schema, slice coverage, split skew and the source shortcut.
  validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
  # The Trainer's module: model, input pipeline and optimisation.
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  # ServingCanary: the candidate served and queried before the push.
  canary: CanaryConfig = dataclasses.field(default_factory=CanaryConfig)
  # ModelCard: what the card says beyond the run's measurements.
  model_card: ModelCardConfig = dataclasses.field(default_factory=ModelCardConfig)
  # Cluster runs only (`fakefaces compile-kubeflow`): the image, remote paths and pod resources.
  kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)


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


def check_consistency(config: PipelineConfig) -> None:
  """Checks that span components; raises ConfigError naming the field to change."""
  face = config.ingest.face
  annotator = config.annotator
  if (annotator.enabled and annotator.features == DLIB_DESCRIPTORS and face.align == 'dlib' and
      face.crop_fraction < 1.0 and not config.ingest.face_descriptors):
    # The annotator's descriptor box sits on the whole aligned square; after the crop
    # half of it lies outside the stored image (forehead, hair and chin cut off).
    raise ConfigError(f'ingest.face_descriptors must be true when ingest.face.crop_fraction '
                      f'({face.crop_fraction}) < 1 and the annotator is enabled: the '
                      'descriptor is then taken before the crop (or set annotator.enabled: false)')
  if (annotator.enabled and annotator.features == CLIP_EMBEDDING and
      config.train.architecture in BACKBONE_NAMES + (FUSED,)):
    # One cache and one backbone, so the Trainer reads the annotator's embeddings back.
    for field in ('embedding_cache_dir', 'backbone_weights'):
      if getattr(annotator, field) != getattr(config.train, field):
        raise ConfigError(f'annotator.{field} ({getattr(annotator, field)!r}) must equal '
                          f'train.{field} ({getattr(config.train, field)!r}) with '
                          f'annotator.features {CLIP_EMBEDDING} and train.architecture '
                          f'{config.train.architecture}: the Trainer then reuses the '
                          'annotator\'s embeddings instead of computing them again')
  if face.native_crop and config.train.image_size > treatment.native_side(face):
    # The point of a native crop is that the model sees no upsampled region.
    raise ConfigError(f'train.image_size {config.train.image_size} is above the native crop '
                      f'side {treatment.native_side(face)} (ingest.face.crop_fraction x '
                      'ingest.face.output_size): the Trainer would upsample it again')


def load_config(path: Optional[str] = None) -> PipelineConfig:
  """Loads a PipelineConfig from YAML (defaults when `path` is None)."""
  if path is None:
    config = PipelineConfig()
    resolve_paths(config, os.getcwd())
    return config
  config = from_dict(PipelineConfig, load_yaml(path))
  resolve_paths(config, os.getcwd())  # like any CLI: relative to where you run it
  check_consistency(config)
  return config
