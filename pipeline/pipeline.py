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
from tfx.types import standard_component_specs
from ml_metadata.proto import metadata_store_pb2

from fakefaces.components.shared import component_keys as keys, features
from fakefaces.components.data_gate.component import validation_components
from fakefaces.components.demographic_annotator.component import DemographicAnnotator
from fakefaces.components.face_example_gen.component import FaceExampleGen
from fakefaces.components.face_example_gen import sources as sources_lib
from fakefaces.components.fairness_gate.component import FairnessGate
from fakefaces.components.fairness_gate import evaluator_executor
from fakefaces.components.fairness_gate.eval_config import build_eval_config
from fakefaces.components.model_card.component import ModelCardGen
from fakefaces.components.model_card.config import ModelCardConfig
from fakefaces.components.serving_canary.component import ServingCanary
from fakefaces.components.serving_canary.config import CanaryConfig
from fakefaces.components.shared.thresholds import ThresholdsConfig
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
                                     output_key=keys.BLESSING_KEY)).with_id(RESOLVER_ID)
  evaluator = tfx.components.Evaluator(
      examples=examples,
      model=model,
      baseline_model=resolver.outputs[standard_component_specs.MODEL_KEY],
      # Built before any model exists: the executor sets every threshold to the models' own
      # (the operating point the Trainer chose), so this one is a stand-in.
      eval_config=build_eval_config(thresholds, STAND_IN_THRESHOLD, with_baseline=True),
      example_splits=[features.TEST])
  evaluator.executor_spec = executor_spec.BeamExecutorSpec(evaluator_executor.Executor)
  fairness_gate = FairnessGate(
      evaluation=evaluator.outputs[standard_component_specs.EVALUATION_KEY],
      evaluator_blessing=evaluator.outputs[standard_component_specs.BLESSING_KEY],
      model=model, thresholds=thresholds,
      baseline_model=resolver.outputs[standard_component_specs.MODEL_KEY],
      annotations=annotations)
  canary = ServingCanary(model=model, model_blessing=fairness_gate.outputs[keys.BLESSING_KEY],
                         examples=examples, config=canary_config).with_id(CANARY_ID)
  pusher = tfx.components.Pusher(
      model=model,
      model_blessing=canary.outputs[keys.BLESSING_KEY],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
  model_card = ModelCardGen(model=model, fairness_report=fairness_gate.outputs[keys.REPORT_KEY],
                            canary_report=canary.outputs[keys.REPORT_KEY],
                            pushed_model=pusher.outputs[standard_component_specs.PUSHED_MODEL_KEY],
                            config=card_config,
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
  annotator = DemographicAnnotator(examples=example_gen.outputs[keys.EXAMPLES_KEY],
                                   annotator_config=config.annotator)
  examples = annotator.outputs[keys.ANNOTATED_EXAMPLES_KEY]
  schema_gen = tfx.components.ImportSchemaGen(schema_file=config.validation.schema_file)
  statistics_gen, example_validator, data_gate = validation_components(
      examples, schema_gen.outputs[standard_component_specs.SCHEMA_KEY], config.validation,
      thresholds)

  trainer = tfx.components.Trainer(
      run_fn=TRAINER_RUN_FN,
      examples=examples,
      schema=schema_gen.outputs[standard_component_specs.SCHEMA_KEY],
      train_args=tfx.proto.TrainArgs(splits=[features.TRAIN]),
      eval_args=tfx.proto.EvalArgs(splits=[features.EVAL]),
      custom_config=trainer_custom_config(config.train, thresholds.decision_threshold,
                                          config.ingest.face,
                                          target_fpr=thresholds.target_fpr))
  trainer.add_upstream_node(data_gate)  # never train on data the gate refused

  release = release_components(examples, trainer.outputs[standard_component_specs.MODEL_KEY],
                               thresholds, config.serving_model_dir, config.canary,
                               config.model_card,
                               ingest_report=example_gen.outputs[keys.INGEST_REPORT_KEY],
                               annotations=annotator.outputs[keys.ANNOTATIONS_KEY])

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
  """A cheap signature of exactly the files ingestion reads (paths, sizes, mtimes).

  Passed to FaceExampleGen as an execution property so a cached ingestion is
  reused only while its inputs are unchanged. It covers each source's listing
  files (a manifest, FairFace's label CSVs: every label and split lives there)
  and every input they list, wherever it lies (a manifest's rows may point
  outside its folder), and nothing else: a manifest in a folder that also holds
  the run's outputs (`runs/`, `.git`) must not change it. Inputs refused before
  reading (bad label, extension) enter by path and reason only.

  Cost: one stat per listed file; see bench/ingest_fingerprint.py.
  """
  digest = hashlib.sha256()

  def add_file(path: str) -> None:
    try:
      if '://' in path:  # gs:// and the like
        stat = tf.io.gfile.stat(path)
        size, mtime = stat.length, stat.mtime_nsec
      else:  # os.stat: ~10x cheaper than gfile's for local files
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
      digest.update(f'{path}:{size}:{mtime}\n'.encode())
    except (tf.errors.OpError, OSError):  # ingestion reports it missing; a later copy changes this
      digest.update(f'{path}:missing\n'.encode())

  for source in config.ingest.sources:
    digest.update(f'source {source.kind}:{source.path}:{source.name}:{source.role}\n'.encode())
    if tf.io.gfile.exists(source.path):
      for path in sources_lib.listing_files(source):
        add_file(path)
  try:
    records = sources_lib.list_inputs(config.ingest)
  except ValueError as e:  # ingestion fails with the same error; the signature just records it
    digest.update(f'listing failed: {e}\n'.encode())
    return digest.hexdigest()
  for record in records:
    if record.problem:
      digest.update(f'{record.path}:refused:{record.problem}\n'.encode())
    else:
      add_file(record.path)
  return digest.hexdigest()
