"""The paper's five architectures on one protocol: size, cost, speed, quality per source.

Every architecture of `train.architecture` (baseline, vgg10, vgg16, resnet50,
densenet121) is trained by the Trainer's own code (`training.train`, the same
input pipeline, head, optimiser and seed) on the same records, and scored on
the same test images:

  train       gan_faces train + k140 train (the kaggle140k source kind), an
              equal number per source x label (`--per-stratum`), horizontal flips
  validation  gan_faces valid + k140 valid, `--per-stratum // 2` per stratum
  test        gan_faces test and k140 test (`--test-per-stratum` per stratum),
              FairFace val (`--fairface` reals, audit: never trained on)

Images are read as they lie in ../shared/data (no dlib alignment and no
treatment, unlike the pipeline): gan_faces 128 px, k140 256 px and FairFace
224 px loose crops, each resized to `--image-size`. Early stopping is off
so the curves show every epoch; the weights scored are those of the epoch
with the best validation AUC (EarlyStopping with patience = epochs).

Columns: parameters; GFLOP per image (forward, and a training step;
components/trainer/flops.py); training images/s here (epochs 2 on, with the
load average beside it: see `size_and_speed`);
per source AUC and TPR at FPR 0.05 (from that source's own ROC); FairFace
audit FPR at the operating point (the threshold giving FPR 0.05 on the
validation reals) and at 0.5; the curves' last-epoch train and validation
loss/AUC and the best epoch, to read over- and under-fitting. Each
architecture's learning curves are written to OUT/<architecture>/learning_curves.png
(and copied to `--figures` when given).

  nice -n 10 .venv/bin/python bench/architectures.py [--architectures baseline,vgg10] \
      [--image-size 48] [--epochs 4] [--per-stratum 80] [--figures docs/architectures]

Prints the table and writes bench/results/architectures.json after every
architecture, so a run cut short keeps what finished.
"""

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn import metrics as sk_metrics  # noqa: E402

from fakefaces.components import features  # noqa: E402
from fakefaces.components.split_hash import unit_hash  # noqa: E402
from fakefaces.components.face_example_gen import sources  # noqa: E402
from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig  # noqa: E402
from fakefaces.components.trainer import curves, data, flops, training  # noqa: E402
from fakefaces.components.trainer.config import ARCHITECTURE_NAMES, TrainConfig  # noqa: E402

FAIRFACE, GAN, K140 = 'fairface', 'gan_faces', 'k140'
GAN_SOURCES = (GAN, K140)
TARGET_FPR = 0.05


def list_records(faces_data: str) -> List[sources.InputRecord]:
  """The shared data through the ingestion's own source readers (FairFace as audit)."""
  config = IngestConfig(sources=[
      SourceConfig(kind='fairface', path=os.path.join(faces_data, 'fairface'), role='audit'),
      SourceConfig(kind='kaggle140k', path=os.path.join(faces_data, 'gan_faces'), name=GAN),
      SourceConfig(kind='kaggle140k', path=os.path.join(faces_data, 'k140'), name=K140)])
  return [r for r in sources.list_inputs(config) if not r.problem]


def pick(records, source: str, split: str, label: int, count: int, salt: str):
  """A deterministic sample (by hash of image id) of one source x split x label."""
  stratum = [r for r in records if (r.source, r.split, r.label) == (source, split, label)]
  stratum.sort(key=lambda r: unit_hash(f'{salt}/{r.image_id}'))
  return stratum[:count]


def protocol(records, args) -> Dict[str, List[sources.InputRecord]]:
  parts = {'train': [], 'validation': []}
  for source in GAN_SOURCES:
    for label in (features.REAL, features.FAKE):
      parts['train'] += pick(records, source, features.TRAIN, label, args.per_stratum, 'train')
      parts['validation'] += pick(records, source, features.EVAL, label,
                                  max(1, args.per_stratum // 2), 'validation')
      parts[f'test/{source}'] = parts.get(f'test/{source}', []) + pick(
          records, source, features.TEST, label, args.test_per_stratum, 'test')
  parts[f'test/{FAIRFACE}'] = pick(records, FAIRFACE, features.TEST, features.REAL, args.fairface,
                                   'test')
  for name, part in parts.items():
    if not part:
      raise ValueError(f'no images for {name} under {args.faces_data}')
  return parts


def dataset(part, config: TrainConfig, training_mode: bool):
  return data.files_dataset([r.path for r in part], [r.label for r in part], config,
                            training=training_mode)


def tpr_at_fpr(labels, scores, target: float = TARGET_FPR) -> float:
  fpr, tpr, _ = sk_metrics.roc_curve(labels, scores)
  return float(tpr[fpr <= target].max())


def threshold_for_fpr(real_scores, target: float = TARGET_FPR) -> float:
  """The lowest threshold at which at most `target` of these reals score at or above it."""
  ordered = np.sort(np.asarray(real_scores))[::-1]
  allowed = int(np.floor(target * len(ordered)))
  return float(np.nextafter(ordered[allowed], np.inf)) if allowed < len(ordered) else 0.0


def size_and_speed(net, summary: Dict[str, Any], train_images: int) -> Dict[str, Any]:
  """Parameters, GFLOP per image, and training images/s from the run's epoch times.

  Epochs after the first (which also traces the step) count; an epoch's time
  includes its validation pass (forward only, on half as many images per
  stratum: about a sixth of the epoch's arithmetic), so this slightly
  understates the training step's own speed. A separate timing model would
  cost another build and trace per architecture, which this shared machine
  could not spare.
  """
  cost = flops.model_flops(net)
  seconds = summary['history'].get('epoch_seconds', [])[1:]
  return {'parameters': int(net.count_params()),
          'forward_gflop_per_image': round(cost['forward'] / 1e9, 4),
          'train_step_gflop_per_image': round(cost['train_step'] / 1e9, 4),
          'train_images_per_sec': (round(train_images * len(seconds) / sum(seconds), 2)
                                   if seconds else None),
          'load_avg': round(os.getloadavg()[0], 2)}


def score(model, parts, config: TrainConfig) -> Dict[str, Any]:
  scores = {}
  for name, part in parts.items():
    if name.startswith('test/') or name == 'validation':
      probabilities, labels = training.predict_probabilities(model, dataset(part, config, False))
      scores[name] = (probabilities, labels)
  val_p, val_l = scores['validation']
  operating = threshold_for_fpr(val_p[val_l == features.REAL])
  result: Dict[str, Any] = {'operating_threshold': round(operating, 6)}
  for source in GAN_SOURCES:
    p, l = scores[f'test/{source}']
    result[source] = {'n_real': int(np.sum(l == 0)), 'n_fake': int(np.sum(l == 1)),
                      'auc': round(float(sk_metrics.roc_auc_score(l, p)), 4),
                      'tpr_at_fpr_0.05': round(tpr_at_fpr(l, p), 4),
                      'fpr_at_operating': round(float(np.mean(p[l == 0] >= operating)), 4),
                      'tpr_at_operating': round(float(np.mean(p[l == 1] >= operating)), 4)}
  p, _ = scores[f'test/{FAIRFACE}']
  result[FAIRFACE] = {'n_real': len(p),
                      'fpr_at_operating': round(float(np.mean(p >= operating)), 4),
                      'fpr_at_0.5': round(float(np.mean(p >= 0.5)), 4)}
  return result


def curve_summary(summary: Dict[str, Any]) -> Dict[str, Any]:
  history = summary['history']
  last = {k: round(v[-1], 4) for k, v in history.items() if k in ('loss', 'val_loss', 'auc',
                                                                   'val_auc')}
  return {'epochs_run': summary['epochs_run'], 'best_epoch_val_auc': summary['best_epoch'],
          'last_epoch': last,
          'min_val_loss_epoch': int(np.argmin(history['val_loss'])) + 1,
          'history': {k: [round(x, 4) for x in v] for k, v in history.items()
                      if k in ('loss', 'val_loss', 'auc', 'val_auc')}}


def run_one(architecture: str, parts, args, out_dir: str) -> Dict[str, Any]:
  config = TrainConfig(architecture=architecture, image_size=args.image_size,
                       color_mode=args.color_mode, epochs=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.learning_rate, seed=args.seed,
                       early_stopping_monitor='val_auc',
                       early_stopping_patience=args.epochs)  # never stops; restores the best
  row: Dict[str, Any] = {'architecture': architecture}
  train_part = parts['train']
  counts = {features.REAL: sum(r.label == features.REAL for r in train_part),
            features.FAKE: sum(r.label == features.FAKE for r in train_part)}
  run_dir = os.path.join(out_dir, architecture)
  training.seed_everything(config)  # before the datasets: their shuffles read the global seed
  start = time.perf_counter()
  model, summary = training.train(config, dataset(train_part, config, True),
                                  dataset(parts['validation'], config, False), counts, run_dir)
  row['train_seconds'] = round(time.perf_counter() - start, 1)
  row.update(size_and_speed(model, summary, len(train_part)))
  row['curves'] = curve_summary(summary)
  row.update(score(model, parts, config))
  row['learning_curves'] = os.path.join(run_dir, curves.LEARNING_CURVES_FILE)
  if args.figures:
    os.makedirs(args.figures, exist_ok=True)
    shutil.copyfile(row['learning_curves'], os.path.join(args.figures, f'{architecture}.png'))
  return row


def print_table(rows) -> None:
  header = (f'{"architecture":12} {"params":>10} {"GFLOP fwd":>9} {"img/s":>6} {"load":>5} '
            f'{"gan AUC":>7} {"gan TPR":>7} {"k140 AUC":>8} {"k140 TPR":>8} {"FF FPR":>6} '
            f'{"best ep":>7} {"train AUC":>9} {"val AUC":>7}')
  print(header)
  for r in rows:
    last = r['curves']['last_epoch']
    print(f'{r["architecture"]:12} {r["parameters"]:>10,} {r["forward_gflop_per_image"]:>9.3f} '
          f'{r["train_images_per_sec"] or 0:>6.1f} {r["load_avg"]:>5.1f} '
          f'{r[GAN]["auc"]:>7.3f} {r[GAN]["tpr_at_fpr_0.05"]:>7.3f} '
          f'{r[K140]["auc"]:>8.3f} {r[K140]["tpr_at_fpr_0.05"]:>8.3f} '
          f'{r[FAIRFACE]["fpr_at_operating"]:>6.3f} {r["curves"]["best_epoch_val_auc"]:>7} '
          f'{last["auc"]:>9.3f} {last["val_auc"]:>7.3f}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--faces-data', default=os.environ.get('FACES_DATA') or
                      os.path.join(ROOT, '..', 'shared', 'data'))
  parser.add_argument('--architectures', default=','.join(
      ARCHITECTURE_NAMES),
                      help='comma-separated, of ' + ', '.join(ARCHITECTURE_NAMES))
  parser.add_argument('--image-size', type=int, default=48)
  parser.add_argument('--color-mode', default='grayscale')
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--learning-rate', type=float, default=1e-3)
  parser.add_argument('--seed', type=int, default=42)
  parser.add_argument('--per-stratum', type=int, default=80,
                      help='training images per source x label (validation: half)')
  parser.add_argument('--test-per-stratum', type=int, default=50)
  parser.add_argument('--fairface', type=int, default=150, help='FairFace val reals scored')
  parser.add_argument('--work-dir', default=os.path.join(ROOT, 'runs', 'bench_architectures'))
  parser.add_argument('--figures', help='also copy each learning-curve PNG here as <arch>.png')
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results',
                                                    'architectures.json'))
  args = parser.parse_args(argv)
  architectures = args.architectures.split(',')
  unknown = sorted(set(architectures) - set(ARCHITECTURE_NAMES))
  if unknown:
    parser.error(f'--architectures: unknown {unknown}; choose from {ARCHITECTURE_NAMES}')
  if not os.path.isdir(args.faces_data):
    print(f'no face data at {args.faces_data} (set --faces-data or FACES_DATA)', file=sys.stderr)
    return 2
  parts = protocol(list_records(args.faces_data), args)
  result = {'benchmark': 'architectures', 'args': vars(args),
            'counts': {name: len(part) for name, part in parts.items()},
            'tensorflow': tf.__version__, 'cpus': os.cpu_count(), 'rows': []}
  print('images:', result['counts'], flush=True)
  for architecture in architectures:
    result['rows'].append(run_one(architecture, parts, args, args.work_dir))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:  # after every row: a cut run keeps what ended
      json.dump(result, f, indent=2)
    print_table(result['rows'])
    sys.stdout.flush()
  return 0


if __name__ == '__main__':
  sys.exit(main())
