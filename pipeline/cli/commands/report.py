"""`fakefaces report`: train on the shared face data, write the paper-style quality tables."""

import dataclasses
import sys

from fakefaces.components.trainer.config import ARCHITECTURE_NAMES
from fakefaces.pipeline import config as config_lib


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'report', help='train and evaluate on the shared face data; write Tables 4-8 (md + json)',
      description='Train on gan_faces train + FairFace train (reals), evaluate on gan_faces test + '
      'FairFace val, and write accuracy, F1, precision, recall and AUC overall, per source and '
      'per FairFace gender/race/age to OUT/report.md and OUT/report.json. No TFX run needed.')
  p.add_argument('--data', required=True, help='folder of the shared face data (with manifest.csv)')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--epochs', type=int, help='training epochs (default: the config\'s train.epochs)')
  p.add_argument('--max-images', type=int,
                 help='at most this many train and test images (a quarter for validation), '
                 'stratified by source and label; default: all')
  p.add_argument('--architectures', '--architecture', dest='architectures', nargs='+',
                 default=['vgg10'], choices=ARCHITECTURE_NAMES,
                 help='model(s) to train, one row each, learning curves in OUT/<model>/ '
                 '(default: vgg10; docs/architectures.md compares them)')
  p.add_argument('--image-size', type=int, help='side in pixels (default: the config\'s, 128)')
  p.add_argument('--color-mode', choices=['grayscale', 'rgb'], help='default: the config\'s')
  p.add_argument('--batch-size', type=int, help='default: the config\'s')
  p.add_argument('--config', help='pipeline YAML whose `train:` section is the starting point')
  p.add_argument('--decision-threshold', type=float,
                 help='P(fake) at or above which an image counts as fake (default: chosen per '
                 'model on the validation part for the thresholds file\'s target_fpr, as the '
                 'Trainer does, unless that file sets decision_threshold)')
  p.add_argument('--export', action='store_true', help='also write OUT/<model>/saved_model')
  p.add_argument('--skip-missing', action='store_true',
                 help='exit 0 with a message (instead of failing) when --data has no data set')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from fakefaces.pipeline.cli import quality_report  # TensorFlow loads only when the command runs
  overrides = {'epochs': args.epochs, 'image_size': args.image_size,
               'color_mode': args.color_mode, 'batch_size': args.batch_size}
  pipeline_config = config_lib.load_config(args.config)
  train_config = dataclasses.replace(pipeline_config.train,
                                     **{k: v for k, v in overrides.items() if v is not None})
  thresholds = config_lib.load_thresholds(pipeline_config.thresholds_file)
  threshold = args.decision_threshold
  if threshold is None:
    threshold = thresholds.decision_threshold
  try:
    report = quality_report.run_report(
        args.data, args.out, train_config, architectures=args.architectures,
        max_images=args.max_images, decision_threshold=threshold,
        export_models=args.export, target_fpr=thresholds.target_fpr)
  except quality_report.DataNotFoundError as e:
    print(f'fakefaces report {"skipped" if args.skip_missing else "failed"}: {e}', file=sys.stderr)
    return 0 if args.skip_missing else 2
  for model in report['models']:
    overall = model['tables'][0]['rows'][0]
    print(f"{model['architecture']}: accuracy {quality_report.format_value(overall['accuracy'])}, "
          f"AUC {quality_report.format_value(overall['auc'])} on {overall['n']} test images; "
          f"learning curves {args.out}/{model['learning_curves']}")
  print(f'wrote {args.out}/{quality_report.REPORT_MD} and {quality_report.REPORT_JSON}')
  return 0
