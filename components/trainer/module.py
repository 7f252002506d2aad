"""TFX Trainer entry point: `run_fn` trains the paper's CNN on the TFRecords.

Wire it as `tfx.components.Trainer(run_fn='fakefaces.components.trainer.module.run_fn',
custom_config=trainer_custom_config(train_config, decision_threshold), ...)`.
Hyperparameters come only from `custom_config` (a `TrainConfig` as a dict plus
the decision threshold that `serving_default`'s label uses): its `epochs` and
`steps_per_epoch` govern, the Trainer's `train_args`/`eval_args` step counts
are ignored. Outputs: the SavedModel in `fn_args.serving_model_dir`,
TensorBoard logs and `history.json` in `fn_args.model_run_dir`.
"""

import dataclasses
from typing import Any, Dict, Optional

from absl import logging

from fakefaces.components.trainer import data, export, mitigation, training
from fakefaces.components.config_base import from_dict
from fakefaces.components.face_example_gen.faces import FacePreparation
from fakefaces.components.trainer.config import TrainConfig

DECISION_THRESHOLD_KEY = 'decision_threshold'
FACE_PREPARATION_KEY = 'face_preparation'


def trainer_custom_config(config: TrainConfig, decision_threshold: float,
                          face_preparation: Optional[FacePreparation] = None) -> Dict[str, Any]:
  """The Trainer's custom_config: the TrainConfig, the gate's decision threshold, the face preparation.

  The served `label` must call "fake" exactly where the fairness gate judged,
  and the exported model must carry how its training crops were made
  (ingestion's FacePreparation) so clients prepare photos the same way.
  """
  extra = {DECISION_THRESHOLD_KEY: decision_threshold}
  if face_preparation is not None:
    extra[FACE_PREPARATION_KEY] = face_preparation.to_dict()
  return dict(dataclasses.asdict(config), **extra)


def run_fn(fn_args) -> None:
  custom_config = dict(fn_args.custom_config or {})
  decision_threshold = float(custom_config.pop(DECISION_THRESHOLD_KEY, 0.5))
  preparation = custom_config.pop(FACE_PREPARATION_KEY, None)
  face_preparation = FacePreparation.from_dict(preparation) if preparation is not None else None
  config = from_dict(TrainConfig, custom_config, 'custom_config')
  if getattr(fn_args, 'train_steps', None):
    logging.info('train_args.num_steps=%s ignored: TrainConfig.epochs/steps_per_epoch govern',
                 fn_args.train_steps)
  training.seed_everything(config)  # before the datasets: their shuffles read the global seed
  class_counts = data.count_labels(fn_args.train_files)
  logging.info('train split label counts: %s', class_counts)
  # Balanced sampling, processing-history augmentation, MinDiff: as `config` asks.
  config, train_ds, wrapper = mitigation.training_inputs(fn_args.train_files, config)
  eval_ds = data.tfrecord_dataset(fn_args.eval_files, config, training=False)
  model, _ = training.train(config, train_ds, eval_ds, class_counts, fn_args.model_run_dir,
                            model_wrapper=wrapper)
  export.export_saved_model(model, fn_args.serving_model_dir, config.image_size,
                            config.color_mode, decision_threshold, face_preparation)
