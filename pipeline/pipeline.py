"""The fakefaces pipeline, assembled in one function for every orchestrator.

    FaceExampleGen -> DemographicAnnotator -> StatisticsGen -> ExampleValidator -> DataGate
    ImportSchemaGen(schema/) -----^-----------------^                   |
    Trainer (runs only after DataGate passed) -> Evaluator -> FairnessGate -> Pusher

The Pusher receives only the FairnessGate's blessing, which is positive only
when the Evaluator's accuracy thresholds and every fairness bound pass.
"""

import hashlib
import os
from typing import List, Optional

import tensorflow as tf
from tfx import v1 as tfx
from ml_metadata.proto import metadata_store_pb2

from components import features
from components.data_gate.component import validation_components
from components.demographic_annotator.component import DemographicAnnotator
from components.face_example_gen.component import FaceExampleGen
from components.fairness_gate.component import FairnessGate
from components.fairness_gate.eval_config import build_eval_config
from components.trainer.module import trainer_custom_config
from pipeline.config import PipelineConfig, load_thresholds

TRAINER_RUN_FN = 'components.trainer.module.run_fn'


def create_pipeline(
    config: PipelineConfig,
    input_fingerprint: str = '',
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline from `config`.

  `metadata_connection_config` is set by local runs (SQLite) and left None on
  Kubeflow, where the platform owns the metadata store.
  """
  thresholds = load_thresholds(config.thresholds_file)

  example_gen = FaceExampleGen(ingest_config=config.ingest, input_fingerprint=input_fingerprint)
  # Everything downstream reads the annotated examples (demographics filled where missing).
  annotator = DemographicAnnotator(examples=example_gen.outputs['examples'],
                                   annotator_config=config.annotator)
  examples = annotator.outputs['annotated_examples']
  schema_gen = tfx.components.ImportSchemaGen(schema_file=config.validation.schema_file)
  statistics_gen, example_validator, data_gate = validation_components(
      examples, schema_gen.outputs['schema'], config.validation, thresholds)

  trainer = tfx.components.Trainer(
      run_fn=TRAINER_RUN_FN,
      examples=examples,
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=[features.TRAIN]),
      eval_args=tfx.proto.EvalArgs(splits=[features.EVAL]),
      custom_config=trainer_custom_config(config.train, thresholds.decision_threshold))
  trainer.add_upstream_node(data_gate)  # never train on data the gate refused

  evaluator = tfx.components.Evaluator(
      examples=examples,
      model=trainer.outputs['model'],
      eval_config=build_eval_config(thresholds),
      example_splits=[features.TEST])
  fairness_gate = FairnessGate(evaluation=evaluator.outputs['evaluation'],
                               evaluator_blessing=evaluator.outputs['blessing'],
                               model=trainer.outputs['model'],
                               thresholds=thresholds,
                               annotations=annotator.outputs['annotations'])
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=fairness_gate.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir)))

  return tfx.dsl.Pipeline(
      pipeline_name=config.name,
      pipeline_root=config.pipeline_root,
      components=[example_gen, annotator, statistics_gen, schema_gen, example_validator, data_gate,
                  trainer, evaluator, fairness_gate, pusher],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=(config.beam_pipeline_args
                          if beam_pipeline_args is None else beam_pipeline_args))


def input_fingerprint(config: PipelineConfig) -> str:
  """A cheap signature of the input files (names, sizes, mtimes).

  Passed to FaceExampleGen as an execution property so a cached ingestion is
  reused only while the inputs are unchanged.
  """
  digest = hashlib.sha256()
  for source in config.ingest.sources:
    digest.update(f'{source.kind}:{source.path}\n'.encode())
    if not tf.io.gfile.exists(source.path):
      continue
    if not tf.io.gfile.isdir(source.path):
      stat = tf.io.gfile.stat(source.path)
      digest.update(f'{stat.length}:{stat.mtime_nsec}\n'.encode())
      source_dir = os.path.dirname(source.path)
    else:
      source_dir = source.path
    for dirpath, _, filenames in sorted(tf.io.gfile.walk(source_dir)):
      for name in sorted(filenames):
        stat = tf.io.gfile.stat(os.path.join(dirpath, name))
        digest.update(f'{dirpath}/{name}:{stat.length}:{stat.mtime_nsec}\n'.encode())
  return digest.hexdigest()
