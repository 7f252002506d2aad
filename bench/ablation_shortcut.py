"""Source-shortcut ablation: each mitigation, measured on the shared data.

Protocol (fast, stated with the table in docs/training_and_quality.md): the
shared data is ingested ONCE by the pipeline's own FaceExampleGen (dlib HOG
alignment, 128 px, 2,000 inputs per source: `python -m fakefaces.pipeline.cli
ingest --config bench/ablation_ingest.yaml --out runs/ablation/ingest`), and
every row reuses those TFRecords:

  baseline      as ingested; every source trained on
  +treatment    the same crop / resampling / JPEG generation for every source
                (components/face_preparation/treatment.py, applied to the
                ingested crops, i.e. after their q95 encode: one extra JPEG
                generation that every source shares)
  +balanced     sampling balanced over source x label
  +augment      JPEG re-compression at random quality, blur, resize
  +mindiff      MinDiff (MMD, weight 0.5) between FairFace reals and FFHQ reals
  +audit        FairFace judged but never trained on (removed from train and eval;
                instead of +mindiff, which needs FairFace reals in training)

Each row trains the Trainer's own code (data.py, mitigation.py, training.py)
for a few epochs and scores the same test split (FairFace val + GAN test).
Columns: the DataGate's source-shortcut probe (fairface vs gan_faces reals,
on the data as that row trains on it; '-' when FairFace is not trained on),
the DataGate's verdict on the row's training split, per-source FPR and TPR,
accuracy, AUC, and the fairness gate's verdict (the project's thresholds with
fnr_gap and average_odds_difference declared not measurable, because the fakes
carry no demographics) with its failing bounds.

  nice -n 10 python bench/ablation_shortcut.py [--epochs 4] [--image-size 64] [--max-train 1200]

The defaults are what that table used: the machine was shared by five
engineers (load average 11-13 on 2 cores), where one 128 px epoch on all
2,491 training images took 13 minutes.

Prints the table and writes bench/results/ablation_shortcut.json.
"""

import argparse
import dataclasses
import hashlib
import io
import json
import os
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn import metrics as sk_metrics  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.data_gate import shortcut  # noqa: E402
from fakefaces.components.data_gate.config import SourceShortcutConfig  # noqa: E402
from fakefaces.components.face_preparation import images, treatment  # noqa: E402
from fakefaces.components.face_preparation.faces import FacePreparation  # noqa: E402
from fakefaces.components.fairness_gate import fairness  # noqa: E402
from fakefaces.components.shared.thresholds import load_thresholds  # noqa: E402
from fakefaces.components.trainer import data, mitigation, training  # noqa: E402
from fakefaces.components.trainer.config import TrainConfig  # noqa: E402

FAIRFACE, GAN = 'fairface', 'gan_faces'
TREATMENT = dict(crop_fraction=0.5, resample_size=64, shared_jpeg_quality=75)
AUGMENT = dict(augment_jpeg_quality=[30, 95], augment_blur_sigma=1.5, augment_min_scale=0.4,
               augment_probability=0.5)
MIN_DIFF = dict(min_diff_weight=0.5, min_diff_feature='source', min_diff_sensitive=[FAIRFACE])
# (name, treated data, train config changes, FairFace trained on)
ROWS = [
    ('baseline', False, {}, True),
    ('+treatment', True, {}, True),
    ('+balanced', True, dict(balance_sources=True), True),
    ('+augment', True, dict(balance_sources=True, **AUGMENT), True),
    ('+mindiff', True, dict(balance_sources=True, **AUGMENT, **MIN_DIFF), True),
    ('+audit', True, dict(balance_sources=True, **AUGMENT), False),
]
STRING_KEYS = (features.SOURCE, features.GENDER, features.RACE, features.AGE, features.IMAGE_ID)


def read_split(examples_dir: str, split: str) -> List[Dict[str, Any]]:
  files = sorted(tf.io.gfile.glob(os.path.join(examples_dir, f'Split-{split}', '*')))
  rows = []
  for raw in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
    row = {k: f[k].bytes_list.value[0].decode() for k in STRING_KEYS}
    row[features.LABEL] = int(f[features.LABEL].int64_list.value[0])
    row[features.IMAGE] = f[features.IMAGE].bytes_list.value[0]
    row[features.FACE_SIZE] = int(f[features.FACE_SIZE].int64_list.value[0])
    rows.append(row)
  return rows


def treat(rows: List[Dict[str, Any]], config: FacePreparation) -> List[Dict[str, Any]]:
  out = []
  for row in rows:
    image = treatment.equalize(Image.open(io.BytesIO(row[features.IMAGE])).convert('RGB'), config)
    out.append(dict(row, **{features.IMAGE: images.encode_jpeg(image.convert('RGB'),
                                                                config.jpeg_quality)}))
  return out


def write_split(rows: List[Dict[str, Any]], path: str) -> str:
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for row in rows:
      feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[row[k].encode()]))
                 for k in STRING_KEYS}
      feature[features.IMAGE] = tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[row[features.IMAGE]]))
      for k in (features.LABEL, features.FACE_SIZE):
        feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row[k]]))
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  return path


def sample(rows: List[Dict[str, Any]], limit: int) -> List[Dict[str, Any]]:
  """A deterministic subset of `limit` rows (by a hash of the image id), in order."""
  if not limit or len(rows) <= limit:
    return rows
  keep = set(sorted(range(len(rows)), key=lambda i: hashlib.sha256(
      rows[i][features.IMAGE_ID].encode()).hexdigest())[:limit])
  return [r for i, r in enumerate(rows) if i in keep]


def rate(hits: int, n: int):
  return round(hits / n, 4) if n else None


def score_row(labels, scores, test, thresholds) -> Dict[str, Any]:
  labels, scores = np.asarray(labels), np.asarray(scores)
  # This bench scores test predictions directly: it takes the thresholds file's explicit
  # decision_threshold, 0.5 when the file chooses by target_fpr (the Trainer's choice).
  cutoff = 0.5 if thresholds.decision_threshold is None else thresholds.decision_threshold
  predicted = scores >= cutoff
  real_mask, fake_mask = labels == 0, labels == 1
  result: Dict[str, Any] = {
      'accuracy': round(float((predicted == labels).mean()), 4),
      'balanced_accuracy': round(float((predicted[fake_mask].mean()
                                        + (1 - predicted[real_mask].mean())) / 2), 4),
      'auc': round(float(sk_metrics.roc_auc_score(labels, scores)), 4),
      'fpr': {}, 'tpr': {}}
  sources = np.array([r[features.SOURCE] for r in test])
  for source in sorted(set(sources)):
    real = (sources == source) & (labels == 0)
    fake = (sources == source) & (labels == 1)
    result['fpr'][source] = rate(int(predicted[real].sum()), int(real.sum()))
    result['tpr'][source] = rate(int(predicted[fake].sum()), int(fake.sum()))
  columns = {k: [r[k] for r in test] for k in (features.GENDER, features.RACE, features.AGE)}
  slices = fairness.slices_from_predictions(labels, scores, columns, cutoff,
                                            crosses=[(features.RACE, features.GENDER)])
  judged = fairness.judge(slices, thresholds)
  failing = [f"{c['grouping']}: {c['metric']} {c['value']:.3f} outside {c['bound']}"
             for c in judged['checks'] if c['status'] == fairness.FAIL]
  short = sorted({c['grouping'] for c in judged['checks']
                  if c['status'] == fairness.INSUFFICIENT})
  result['insufficient_evidence'] = short  # groups under min_group_size reals
  accuracy_ok = (result['balanced_accuracy'] >= thresholds.min_balanced_accuracy and
                 result['auc'] >= thresholds.min_auc)
  if not accuracy_ok:
    failing.insert(0, f"balanced accuracy {result['balanced_accuracy']:.3f} / AUC "
                      f"{result['auc']:.3f} (min {thresholds.min_balanced_accuracy} / "
                      f"{thresholds.min_auc})")
  result['fairness_verdict'] = judged['verdict']
  result['verdict'] = 'PASS' if judged['verdict'] == fairness.PASS and accuracy_ok else 'FAIL'
  result['failing'] = failing
  return result


# (crop_fraction, resample_size, shared_jpeg_quality) settings the probe grid compares.
PROBE_GRID = [(1.0, 0, 0), (0.6, 0, 0), (1.0, 64, 0), (0.6, 64, 75), (0.5, 64, 75),
              (0.6, 48, 75), (0.5, 32, 75), (0.6, 32, 50)]


def probe_grid(ingested: str, out: str) -> int:
  """The DataGate's probe (FairFace vs FFHQ reals, training split) per treatment setting."""
  reals = [r for r in read_split(ingested, 'train') if r[features.LABEL] == features.REAL]
  results = []
  for crop, size, quality in PROBE_GRID:
    config = FacePreparation(output_size=128, crop_fraction=crop, resample_size=size,
                             shared_jpeg_quality=quality)
    rows = reals if treatment.is_identity(config) else treat(reals, config)
    pair = shortcut.check_source_shortcut(
        iter(rows), SourceShortcutConfig(on_shortcut='warn'))['pairs'][0]
    results.append({'crop_fraction': crop, 'resample_size': size,
                    'shared_jpeg_quality': quality, 'auc': pair['auc'],
                    'auc_by_features': pair['auc_by_features']})
    print(json.dumps(results[-1]), flush=True)
  tf.io.gfile.makedirs(os.path.dirname(out))
  with open(out, 'w') as f:
    json.dump(results, f, indent=2)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--ingested', default=os.path.join(ROOT, 'runs', 'ablation', 'ingest',
                                                         'examples'))
  parser.add_argument('--work', default=os.path.join(ROOT, 'runs', 'ablation', 'rows'))
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--architecture', default='baseline')
  parser.add_argument('--image-size', type=int, default=64)
  parser.add_argument('--max-train', type=int, default=1200,
                      help='deterministic sample of the training split (0: all)')
  parser.add_argument('--rows', default=','.join(r[0] for r in ROWS))
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results',
                                                    'ablation_shortcut.json'))
  parser.add_argument('--probe-grid', action='store_true',
                      help='only the probe AUC per treatment setting (no training); writes '
                      'bench/results/ablation_shortcut_probe_grid.json')
  args = parser.parse_args(argv)
  if args.probe_grid:
    return probe_grid(args.ingested, os.path.join(os.path.dirname(args.out),
                                                  'ablation_shortcut_probe_grid.json'))
  thresholds = dataclasses.replace(
      load_thresholds(os.path.join(ROOT, 'pipeline', 'configs', 'thresholds.yaml')),
      not_measurable=['fnr_gap', 'average_odds_difference'])

  raw = {split: read_split(args.ingested, split) for split in features.SPLITS}
  ingest_config = FacePreparation(output_size=128, **TREATMENT)
  treated = {split: treat(rows, ingest_config) for split, rows in raw.items()}
  probe_config = SourceShortcutConfig(on_shortcut='warn')
  results = []
  for name, use_treated, changes, fairface_trained in ROWS:
    if name not in args.rows.split(','):
      continue
    start = time.time()
    splits = treated if use_treated else raw
    # As many training images in every row, FairFace or not.
    train_rows = sample([r for r in splits['train']
                         if fairface_trained or r[features.SOURCE] != FAIRFACE], args.max_train)
    eval_rows = [r for r in splits['eval'] if fairface_trained or r[features.SOURCE] != FAIRFACE]
    test_rows = splits['test']
    row_dir = os.path.join(args.work, name.strip('+'))
    train_file = write_split(train_rows, os.path.join(row_dir, 'train.tfrecord.gz'))
    eval_file = write_split(eval_rows, os.path.join(row_dir, 'eval.tfrecord.gz'))
    test_file = write_split(test_rows, os.path.join(row_dir, 'test.tfrecord.gz'))
    # The DataGate's check on what this row trains on, and the probe on the row's data.
    gate = shortcut.check_source_shortcut(iter(train_rows), probe_config)
    data_probe = shortcut.check_source_shortcut(
        iter([r for r in splits['train'] if r[features.LABEL] == features.REAL]), probe_config)
    probe = next((p for p in data_probe['pairs'] if p['class'] == 'real'), {})

    config = TrainConfig(architecture=args.architecture, epochs=args.epochs,
                         image_size=args.image_size,
                         early_stopping_patience=0, seed=42, **changes)
    config, train_ds, wrapper = mitigation.training_inputs([train_file], config)
    eval_ds = data.tfrecord_dataset([eval_file], config, training=False)
    counts = data.count_labels([train_file])
    model, history = training.train(config, train_ds, eval_ds, counts,
                                    os.path.join(row_dir, 'run'), model_wrapper=wrapper)
    scores, labels = training.predict_probabilities(
        model, data.tfrecord_dataset([test_file], config, training=False))
    np.savez(os.path.join(row_dir, 'test_scores.npz'), scores=scores, labels=labels,
             image_ids=np.array([r[features.IMAGE_ID] for r in test_rows]))
    row = {'row': name, 'train_examples': len(train_rows),
           'probe_auc_fairface_vs_gan_reals': probe.get('auc'),
           'probe_auc_by_features': probe.get('auc_by_features'),
           'data_gate': 'stop' if gate['findings'] else 'pass',
           'data_gate_findings': gate['findings'],
           'epochs': history['epochs_run'], 'seconds': round(time.time() - start, 1),
           'config_changes': changes, 'fairface_trained_on': fairface_trained,
           **score_row(labels, scores, test_rows, thresholds)}
    results.append(row)
    print(json.dumps({k: row[k] for k in ('row', 'probe_auc_fairface_vs_gan_reals', 'data_gate',
                                          'fpr', 'tpr', 'accuracy', 'auc', 'verdict',
                                          'seconds')}), flush=True)
    tf.io.gfile.makedirs(os.path.dirname(args.out))
    with open(args.out, 'w') as f:
      json.dump({'protocol': {'ingested': args.ingested, 'epochs': args.epochs,
                              'architecture': args.architecture,
                              'image_size': args.image_size, 'max_train': args.max_train,
                              'color_mode': 'grayscale', 'treatment': TREATMENT,
                              'augment': AUGMENT, 'min_diff': MIN_DIFF,
                              'test_examples': len(raw['test'])},
                 'rows': results}, f, indent=2)

  print('\n| row | probe AUC (FairFace vs FFHQ reals) | DataGate | FPR FairFace | FPR FFHQ | '
        'TPR GAN | accuracy | AUC | gate verdict: failing bounds |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in results:
    print(f"| {r['row']} | {r['probe_auc_fairface_vs_gan_reals']} | {r['data_gate']} | "
          f"{r['fpr'].get(FAIRFACE)} | {r['fpr'].get(GAN)} | {r['tpr'].get(GAN)} | "
          f"{r['accuracy']} | {r['auc']} | {r['verdict']}: {len(r['failing'])} bound(s) fail "
          f"({'; '.join(r['failing'][:3])}); {len(r['insufficient_evidence'])} grouping(s) "
          'insufficient |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
