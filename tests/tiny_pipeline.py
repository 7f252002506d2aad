"""The smallest pipeline that runs every component, for tests of pipeline wiring (not of model quality).

Imported by the tests that run the whole pipeline on generated 64 px demo data
(pytest puts tests/ on sys.path): one copy, so a change to the config or the
thresholds schema is made once. The thresholds they pass every model with are
`wiring_thresholds.LENIENT`.
"""

import dataclasses
import os
from typing import Optional

import yaml

from fakefaces.pipeline import config as config_lib


def write_thresholds(path: os.PathLike, **overrides) -> str:
  """Writes the default thresholds file with `overrides` applied to `path`; returns the path."""
  thresholds = config_lib.load_yaml(config_lib.DEFAULT_THRESHOLDS)
  thresholds.update(overrides)
  with open(path, 'w') as f:
    yaml.safe_dump(thresholds, f)
  return str(path)


def tiny_config(name: str, root: os.PathLike, manifest: str, thresholds_file: str, *,
                source_name: str = 'demo', epochs: int = 4,
                serving_dir: Optional[os.PathLike] = None) -> config_lib.PipelineConfig:
  """A pipeline over one manifest of already aligned 64 px crops, its outputs under `root`.

  Args:
    name: the pipeline's name.
    root: folder for `pipeline_root/`, `metadata.sqlite` and (unless `serving_dir`)
      `serving_model/`.
    manifest: CSV of the demo images (`demo_data.generate` writes one).
    thresholds_file: a YAML thresholds file (`write_thresholds`).
    source_name: the `source` feature written for the manifest's rows.
    epochs: training epochs; the 3-conv baseline learns the 64 px fingerprint in a few.
    serving_dir: where the Pusher writes; default `root/serving_model`.
  """
  config = config_lib.PipelineConfig(
      name=name,
      pipeline_root=os.path.join(root, 'pipeline_root'),
      metadata_path=os.path.join(root, 'metadata.sqlite'),
      serving_model_dir=str(serving_dir or os.path.join(root, 'serving_model')),
      thresholds_file=thresholds_file)
  config.ingest = config_lib.IngestConfig(
      sources=[config_lib.SourceConfig(kind='manifest', path=manifest, name=source_name)],
      face=config_lib.FacePreparation(align='none', output_size=64))
  config.validation.min_examples_per_class = 1
  # The 3-conv baseline learns the 64 px fingerprint in a few epochs; VGG10 runs in the demo.
  config.train = dataclasses.replace(config.train, architecture='baseline', image_size=64,
                                     epochs=epochs, batch_size=16)
  return config


def write_config(config: config_lib.PipelineConfig, path: os.PathLike) -> str:
  """Writes `config` as the YAML `fakefaces run --config` reads; returns the path."""
  with open(path, 'w') as f:
    yaml.safe_dump(dataclasses.asdict(config), f)
  return str(path)
