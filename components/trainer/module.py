"""TFX Trainer entry point: `run_fn` trains the paper's CNN on the TFRecords.

Or, by `train.architecture`: a head on the frozen CLIP backbone (backbone.py),
or the fused model, the CNN and that head stacked on the eval split (fused.py).

Wire it as `tfx.components.Trainer(run_fn='fakefaces.components.trainer.module.run_fn',
custom_config=trainer_custom_config(train_config, target_fpr=0.05), ...)`.
Hyperparameters come only from `custom_config` (a `TrainConfig` as a dict plus
how to choose the decision threshold that the `label` outputs use): its `epochs` and
`steps_per_epoch` govern, the Trainer's `train_args`/`eval_args` step counts
are ignored. Outputs: the SavedModel in `fn_args.serving_model_dir`,
TensorBoard logs and `history.json` in `fn_args.model_run_dir`.

After training, the threshold is chosen on the eval split's scores for the
target false-positive rate on real photos (`operating_point.choose`), unless
an explicit `decision_threshold` overrides it; the export carries it
(`label` outputs, assets/operating_point.json) and `operating_point.json` is
also written to `fn_args.model_run_dir`.
"""

import dataclasses
from typing import Any, Dict, Optional

from absl import logging

import json
import os

import tensorflow as tf

from fakefaces.components.shared import features
from fakefaces.components.image_encoder import precision
from fakefaces.components.trainer import (backbone, curves, data, export, fused, mitigation,
                                          operating_point, training)
from fakefaces.components.shared.config_base import from_dict
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.trainer.config import BACKBONE_NAMES, FUSED, TrainConfig

DECISION_THRESHOLD_KEY = 'decision_threshold'
TARGET_FPR_KEY = 'target_fpr'
FACE_PREPARATION_KEY = 'face_preparation'


def trainer_custom_config(config: TrainConfig, decision_threshold: Optional[float] = None,
                          face_preparation: Optional[FacePreparation] = None,
                          target_fpr: Optional[float] = None) -> Dict[str, Any]:
  """The Trainer's custom_config: the TrainConfig, how to choose the threshold, the face preparation.

  `target_fpr` (the thresholds file's): the threshold is chosen on the eval
  split for it; `decision_threshold`, when set, overrides the choice. One of the
  two must be set. The exported model must also carry how its training crops
  were made (ingestion's FacePreparation) so clients prepare photos the same way.
  """
  if decision_threshold is None and target_fpr is None:
    raise ValueError('trainer_custom_config needs target_fpr or decision_threshold')
  extra = {DECISION_THRESHOLD_KEY: decision_threshold, TARGET_FPR_KEY: target_fpr}
  if face_preparation is not None:
    extra[FACE_PREPARATION_KEY] = face_preparation.to_dict()
  return dict(dataclasses.asdict(config), **extra)


def choose_operating_point(model, eval_ds: tf.data.Dataset, target_fpr: Optional[float],
                           decision_threshold: Optional[float]) -> operating_point.OperatingPoint:
  """Scores the whole eval split with the trained model and picks the threshold there."""
  scores, labels = training.predict_probabilities(model, eval_ds)
  return operating_point.choose(labels, scores, target_fpr, decision_threshold,
                                split=features.EVAL)


def train_cnn(config: TrainConfig, fn_args) -> tf.keras.Model:
  """Trains `config.architecture`'s CNN on the train split; returns the float32 model that is served."""
  class_counts = data.count_labels(fn_args.train_files)
  logging.info('train split label counts: %s', class_counts)
  # Balanced sampling, processing-history augmentation, MinDiff: as `config` asks.
  config, train_ds, wrapper = mitigation.training_inputs(fn_args.train_files, config)
  eval_ds = data.tfrecord_dataset(fn_args.eval_files, config, training=False)
  model, _ = training.train(config, train_ds, eval_ds, class_counts, fn_args.model_run_dir,
                            model_wrapper=wrapper)
  # The model that is served: trained in mixed precision, it serves in float32
  # (image_encoder/precision.py), so the threshold is chosen on the scores clients will get. A
  # bfloat16 model's scores differ from them by up to ~3e-4, enough to move the
  # threshold past an eval real.
  return precision.float32_copy(model)


def run_fn(fn_args) -> None:
  custom_config = dict(fn_args.custom_config or {})
  explicit = custom_config.pop(DECISION_THRESHOLD_KEY, None)
  target_fpr = custom_config.pop(TARGET_FPR_KEY, None)
  if explicit is None and target_fpr is None:
    explicit = 0.5  # a custom_config from before the operating point: the old fixed threshold
  preparation = custom_config.pop(FACE_PREPARATION_KEY, None)
  face_preparation = FacePreparation.from_dict(preparation) if preparation is not None else None
  config = from_dict(TrainConfig, custom_config, 'custom_config')
  if getattr(fn_args, 'train_steps', None):
    logging.info('train_args.num_steps=%s ignored: TrainConfig.epochs/steps_per_epoch govern',
                 fn_args.train_steps)
  training.seed_everything(config)  # before the datasets: their shuffles read the global seed
  target_fpr = None if target_fpr is None else float(target_fpr)
  explicit = None if explicit is None else float(explicit)
  if config.architecture in BACKBONE_NAMES:
    # A frozen backbone: cached embeddings, a head trained on them (backbone.py); its
    # scores are the float32 served head's already.
    model, (scores, labels), _ = backbone.train_head(config, fn_args.train_files,
                                                     fn_args.eval_files, fn_args.model_run_dir)
    point = operating_point.choose(labels, scores, target_fpr, explicit, split=features.EVAL)
    # The Evaluator scores the head on the cached features (from_backbone_examples).
    backbone_head = export.BackboneHead(backbone.served_part(model, config),
                                        backbone.backbone_features(config))
  elif config.architecture == FUSED:
    # The CNN and the CLIP head trained on train, stacked on eval (fused.py); the scores
    # are the float32 stacking layer's on the eval logits.
    # One CNN: train.head_ensemble is the CLIP head's.
    cnn = train_cnn(dataclasses.replace(config, architecture=config.fused_cnn, head_ensemble=1),
                    fn_args)
    model, (scores, labels), _ = fused.train(config, cnn, fn_args.train_files,
                                             fn_args.eval_files, fn_args.model_run_dir)
    point = operating_point.choose(labels, scores, target_fpr, explicit, split=features.EVAL)
    backbone_head = export.BackboneHead(fused.on_backbone_features(model, config),
                                        backbone.backbone_features(config))
  else:
    backbone_head = None
    model = train_cnn(config, fn_args)
    # Unrepeated and unaugmented: every eval example scored once, as served.
    eval_scoring = data.tfrecord_dataset(fn_args.eval_files, config, training=False)
    point = choose_operating_point(model, eval_scoring, target_fpr, explicit)
  logging.info('operating point: %s', point)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, 'operating_point.json'), 'w') as f:
    json.dump(point.to_dict(), f, indent=2)
  export.export_saved_model(model, fn_args.serving_model_dir, config.image_size,
                            config.color_mode, point.decision_threshold, face_preparation,
                            operating_point=point.to_dict(), backbone_head=backbone_head)
  # The model card reads the learning curves from the Model artifact (it is given no
  # ModelRun): a copy beside the SavedModel, where TF Serving ignores it.
  curves_png = os.path.join(fn_args.model_run_dir, curves.LEARNING_CURVES_FILE)
  if tf.io.gfile.exists(curves_png):
    tf.io.gfile.copy(curves_png, os.path.join(fn_args.serving_model_dir,
                                              curves.LEARNING_CURVES_FILE), overwrite=True)
