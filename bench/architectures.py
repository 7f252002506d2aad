"""The paper's five architectures on one protocol: size, cost, speed, quality per source.

Every architecture of `train.architecture` (baseline, vgg10, vgg16, resnet50,
densenet121) is trained on the quality bench's chosen row,
`128 prealigned both:highpass+augment+balanced` (bench/quality.py): the
shipped shared-data training setup (128 px RGB, high-pass input, batches
balanced over source x label, processing augmentation) on the same records
and seed, gan_faces and k140 taken in their own FFHQ alignment, FairFace as
the audit set. The only thing that changes between rows is the architecture.

Columns: parameters; GFLOP per image (forward, and a training step;
components/trainer/flops.py); training images/s of the whole Trainer here
(augmentation included, load average beside it); per source AUC and TPR at FPR
0.05 with the radial-spectrum floor beside them; FairFace audit FPR at the
operating point (FPR 0.05 on the eval reals) and its worst race x gender
group; the learning curves (train and validation loss/AUC per epoch, best
epoch) from which over- and under-fitting are read. Each architecture's
curves are copied to `--figures`/<architecture>.png.

  .venv/bin/python bench/quality.py prepare --per-class 1000   # once: the cached crops
  nice -n 10 .venv/bin/python bench/architectures.py [--architectures vgg10,resnet50] \\
      [--epochs 4] [--figures docs/architectures]

Writes bench/results/architectures.json after every architecture (a run cut
short keeps what finished; a rerun skips what is there) and prints the table.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import quality  # noqa: E402  (the bench this one runs a row of)
from fakefaces.components.trainer.config import ARCHITECTURE_NAMES  # noqa: E402

ROW = '128 prealigned both:highpass+augment+balanced'
OUT = os.path.join(ROOT, 'bench', 'results', 'architectures.json')


def print_table(rows) -> None:
  print('\n| architecture | parameters | GFLOP fwd | train img/s (load) | gan_faces AUC (floor) | '
        'gan_faces TPR@.05 | k140 AUC (floor) | k140 TPR@.05 | FairFace FPR (worst) | '
        'best epoch | last train / val AUC |')
  print('|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    g, k = r['sources'].get(quality.GAN, {}), r['sources'].get(quality.K140, {})
    last = r['curves']['last_epoch']
    print(f"| {r['architecture']} | {r['parameters']:,} | {r['forward_gflop_per_image']:.2f} | "
          f"{r['train_images_per_sec']} ({r['load_avg']}) | {g.get('auc')} ({g.get('floor_auc')}) | "
          f"{g.get('tpr_at_fpr_0.05')} | {k.get('auc')} ({k.get('floor_auc')}) | "
          f"{k.get('tpr_at_fpr_0.05')} | {r['fairface']['fpr']} ({r['fairface']['worst_group_fpr']}) | "
          f"{r['curves']['best_epoch_val_auc']} | {last.get('auc')} / {last.get('val_auc')} |")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--architectures', default=','.join(ARCHITECTURE_NAMES),
                      help='comma-separated, of ' + ', '.join(ARCHITECTURE_NAMES))
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--figures', default='', help='copy each learning-curve PNG here')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args(argv)
  architectures = args.architectures.split(',')
  unknown = sorted(set(architectures) - set(ARCHITECTURE_NAMES))
  if unknown:
    parser.error(f'--architectures: unknown {unknown}; choose from {ARCHITECTURE_NAMES}')
  for path in (quality.CROPS, quality.CROPS_PREALIGNED):
    if not os.path.exists(path):
      print(f'no cached crops at {path}: run `python bench/quality.py prepare --per-class 1000`',
            file=sys.stderr)
      return 2
  status = quality.run_rows([ROW], args.epochs, architectures, args.out, args.figures)
  with open(args.out, encoding='utf-8') as f:
    print_table(json.load(f)['rows'])
  return status


if __name__ == '__main__':
  sys.exit(main())
