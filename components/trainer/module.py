"""TFX Trainer entry point: `run_fn` trains the paper's CNN on the TFRecords.

Wire it as `tfx.components.Trainer(run_fn='components.trainer.module.run_fn',
custom_config=trainer_custom_config(train_config, decision_threshold), ...)`.
Hyperparameters come only from `custom_config` (a `TrainConfig` as a dict plus
the decision threshold that `serving_default`'s label uses): its `epochs` and
`steps_per_epoch` govern, the Trainer's `train_args`/`eval_args` step counts
are ignored. Outputs: the SavedModel in `fn_args.serving_model_dir`,
TensorBoard logs and `history.json` in `fn_args.model_run_dir`.
"""

import dataclasses
from typing import Any, Dict

from absl import logging

from components.trainer import data, export, mitigation, training
from components.config_base import from_dict
from components.trainer.config import TrainConfig

DECISION_THRESHOLD_KEY = 'decision_threshold'


def trainer_custom_config(config: TrainConfig, decision_threshold: float) -> Dict[str, Any]:
  """The Trainer's custom_config: the TrainConfig plus the gate's decision threshold.

  The served `label` must call "fake" exactly where the fairness gate judged.
  """
  return dict(dataclasses.asdict(config), **{DECISION_THRESHOLD_KEY: decision_threshold})


def run_fn(fn_args) -> None:
  custom_config = dict(fn_args.custom_config or {})
  decision_threshold = float(custom_config.pop(DECISION_THRESHOLD_KEY, 0.5))
  config = from_dict(TrainConfig, custom_config, 'custom_config')
  if getattr(fn_args, 'train_steps', None):
    logging.info('train_args.num_steps=%s ignored: TrainConfig.epochs/steps_per_epoch govern',
                 fn_args.train_steps)
  class_counts = data.count_labels(fn_args.train_files)
  logging.info('train split label counts: %s', class_counts)
  # Balanced sampling, processing-history augmentation, MinDiff: as `config` asks.
  config, train_ds, wrapper = mitigation.training_inputs(fn_args.train_files, config)
  eval_ds = data.tfrecord_dataset(fn_args.eval_files, config, training=False)
  model, _ = training.train(config, train_ds, eval_ds, class_counts, fn_args.model_run_dir,
                            model_wrapper=wrapper)
  export.export_saved_model(model, fn_args.serving_model_dir, config.image_size,
                            config.color_mode, decision_threshold)
