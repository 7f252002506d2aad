"""Runs the pipeline on this machine: LocalDagRunner, MLMD on SQLite."""

import os

from tfx import v1 as tfx

from fakefaces.pipeline.beam_workers import local_beam_args
from fakefaces.pipeline.config import PipelineConfig
from fakefaces.pipeline.pipeline import create_pipeline, input_fingerprint


def run_local(config: PipelineConfig) -> None:
  """Runs every component in-process; raises if any component fails."""
  os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
  beam_args = local_beam_args(config.beam_pipeline_args, config.beam_workers, config.ingest)
  tfx.orchestration.LocalDagRunner().run(create_pipeline(
      config,
      input_fingerprint=input_fingerprint(config),
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          config.metadata_path),
      beam_pipeline_args=beam_args.pipeline,
      ingestion_beam_pipeline_args=beam_args.ingestion))
