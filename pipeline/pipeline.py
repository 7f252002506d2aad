"""The fakefaces pipeline, assembled in one function for every orchestrator.

    FaceExampleGen -> DemographicAnnotator -> StatisticsGen -> ExampleValidator -> DataGate
    ImportSchemaGen(schema/) -----^-----------------^                   |
    Trainer (runs only after DataGate passed) -> Evaluator -> FairnessGate
      latest_blessed_model_resolver (production) --^--------------^    |
                                   ModelCardGen <- Pusher <- ServingCanary

The Evaluator and the FairnessGate compare the candidate with the model in
production (the latest model the ServingCanary blessed). The Pusher receives
only the ServingCanary's blessing, which is positive only when the
FairnessGate blessed (accuracy thresholds, change thresholds and every
fairness bound pass) AND the model answered every signature in the serving
stack. ModelCardGen documents every candidate and writes the card beside each
pushed version.
"""

import hashlib
import os
from typing import List, Optional

import tensorflow as tf
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from ml_metadata.proto import metadata_store_pb2

from fakefaces.components import features
from fakefaces.components.data_gate.component import validation_components
from fakefaces.components.demographic_annotator.component import DemographicAnnotator
from fakefaces.components.face_example_gen.component import FaceExampleGen
from fakefaces.components.face_example_gen.faces import FacePreparation
from fakefaces.components.fairness_gate.component import FairnessGate
from fakefaces.components.fairness_gate.config import ThresholdsConfig
from fakefaces.components.fairness_gate import evaluator_executor
from fakefaces.components.fairness_gate.eval_config import build_eval_config
from fakefaces.components.model_card.component import ModelCardGen
from fakefaces.components.model_card.config import ModelCardConfig
from fakefaces.components.serving_canary.component import ServingCanary
from fakefaces.components.serving_canary.config import CanaryConfig
from fakefaces.components.trainer.module import trainer_custom_config
from fakefaces.pipeline.config import PipelineConfig, check_consistency, load_thresholds

TRAINER_RUN_FN = 'fakefaces.components.trainer.module.run_fn'
RESOLVER_ID = 'latest_blessed_model_resolver'
CANARY_ID = 'ServingCanary'
STAND_IN_THRESHOLD = 0.5  # in the Evaluator's EvalConfig until the executor reads the model's


def release_components(examples, model, thresholds: ThresholdsConfig, serving_model_dir: str,
                       canary_config: CanaryConfig, card_config: ModelCardConfig,
                       ingest_report=None, annotations=None) -> list:
  """From a trained model to a pushed one: resolver, Evaluator, gate, canary, Pusher, card.

  "The model in production" is the latest model whose ServingCanary blessing is
  positive, i.e. blessed by the gate AND loaded and queried in the serving
  stack: exactly what the Pusher pushes. A model that passed the gate but failed
  the canary never becomes the baseline. The resolver's blessing channel names
  its producer so that the Evaluator's and the gate's own ModelBlessings (blessed
  for a model the canary may still refuse) are not mistaken for it.
  """
  resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                     producer_component_id=CANARY_ID,
                                     output_key='blessing')).with_id(RESOLVER_ID)
  evaluator = tfx.components.Evaluator(
      examples=examples,
      model=model,
      baseline_model=resolver.outputs['model'],
      # Built before any model exists: the executor sets every threshold to the models' own
      # (the operating point the Trainer chose), so this one is a stand-in.
      eval_config=build_eval_config(thresholds, STAND_IN_THRESHOLD, with_baseline=True),
      example_splits=[features.TEST])
  evaluator.executor_spec = executor_spec.BeamExecutorSpec(evaluator_executor.Executor)
  fairness_gate = FairnessGate(evaluation=evaluator.outputs['evaluation'],
                               evaluator_blessing=evaluator.outputs['blessing'],
                               model=model, thresholds=thresholds,
                               baseline_model=resolver.outputs['model'],
                               annotations=annotations)
  canary = ServingCanary(model=model, model_blessing=fairness_gate.outputs['blessing'],
                         examples=examples, config=canary_config).with_id(CANARY_ID)
  pusher = tfx.components.Pusher(
      model=model,
      model_blessing=canary.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
  model_card = ModelCardGen(model=model, fairness_report=fairness_gate.outputs['report'],
                            canary_report=canary.outputs['report'],
                            pushed_model=pusher.outputs['pushed_model'], config=card_config,
                            ingest_report=ingest_report, annotations=annotations)
  return [resolver, evaluator, fairness_gate, canary, pusher, model_card]


def create_pipeline(
    config: PipelineConfig,
    input_fingerprint: str = '',
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    ingestion_beam_pipeline_args: Optional[List[str]] = None,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline from `config`.

  `metadata_connection_config` is set by local runs (SQLite) and left None on
  Kubeflow, where the platform owns the metadata store.
  `ingestion_beam_pipeline_args`: FaceExampleGen's own Beam args, after the
  pipeline's (local runs give it every core: pipeline/beam_workers.py).
  """
  check_consistency(config)
  thresholds = load_thresholds(config.thresholds_file)

  example_gen = FaceExampleGen(ingest_config=config.ingest, input_fingerprint=input_fingerprint)
  if ingestion_beam_pipeline_args:
    example_gen.with_beam_pipeline_args(ingestion_beam_pipeline_args)
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
      custom_config=trainer_custom_config(config.train, thresholds.decision_threshold,
                                          FacePreparation.from_ingest_config(config.ingest),
                                          target_fpr=thresholds.target_fpr))
  trainer.add_upstream_node(data_gate)  # never train on data the gate refused

  release = release_components(examples, trainer.outputs['model'],
                               thresholds, config.serving_model_dir, config.canary,
                               config.model_card,
                               ingest_report=example_gen.outputs['ingest_report'],
                               annotations=annotator.outputs['annotations'])

  return tfx.dsl.Pipeline(
      pipeline_name=config.name,
      pipeline_root=config.pipeline_root,
      components=[example_gen, annotator, statistics_gen, schema_gen, example_validator,
                  data_gate, trainer] + release,
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
