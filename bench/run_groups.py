"""Per source and per race x gender: TPR and FPR of a whole run's CLIP model on its test split.

The gate report slices race x gender over every source pooled; a detector's
audit asks per collection (FairFace, never trained on; UTKFace's held-out
share; SDFD per prompted group). This reads the run's artifacts from its MLMD
store: the test split as FaceExampleGen wrote it (the sources' own labels:
FairFace's and UTKFace's human ones, SDFD's prompted ones; nothing the
annotator predicted), the pushed-or-not SavedModel of the newest Trainer
execution and its operating point (assets/operating_point.json). A backbone
model's head is applied to the tower's embeddings from the Trainer's cache
(`train.embedding_cache_dir`), computing the faces the Trainer never embedded
(the test split), so the scores are the served model's up to the tower's
batch-order rounding (docs/clip_backbone.md).

    nice -n 10 .venv/bin/python bench/run_groups.py --config CONFIG embed   # fill the cache
    nice -n 10 .venv/bin/python bench/run_groups.py --config CONFIG table \
        --out bench/results/whole_run_clip.json

`embed` only needs FaceExampleGen's output, so it can run beside the Trainer.
Group rates come with n and a Jeffreys 95% interval (fairness.rate_interval, as the gate's).
"""

import argparse
import collections
import json
import os
import sys
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from fakefaces.components.fairness_gate import evaluation, fairness
from fakefaces.components.shared import component_keys as keys, example_files, features, serving_contract
from fakefaces.components.trainer import backbone
from fakefaces.pipeline import config as config_lib, run_metadata

SPLIT = features.TEST
SPEC = {name: tf.io.FixedLenFeature([], tf.string, default_value='')
        for name in (features.IMAGE, features.SOURCE, features.GENDER, features.RACE,
                     features.DEMOGRAPHICS_SOURCE)}
SPEC[features.LABEL] = tf.io.FixedLenFeature([], tf.int64)
CHECKED = 8  # test faces also scored by the SavedModel itself


def split_examples(metadata_path: str, split: str) -> Dict[str, list]:
  """Columns of the newest FaceExampleGen's `split`: image bytes, label, source, gender,
  race, demographics_source (strings decoded)."""
  store = run_metadata.open_store(metadata_path)
  [examples] = run_metadata.output_uris(store, 'FaceExampleGen')['examples']
  files = example_files.split_files(examples, split)
  columns = collections.defaultdict(list)
  for batch in example_files.records(files).batch(512).map(
      lambda s: tf.io.parse_example(s, SPEC)):
    for name, values in batch.items():
      columns[name].extend(v.decode('utf-8') if isinstance(v, bytes) and name != features.IMAGE
                           else v for v in values.numpy().tolist())
  return dict(columns)


def head_scores(config, model_dir: str, embeddings: np.ndarray,
                train_embeddings: np.ndarray) -> np.ndarray:
  """P(fake) [n] of the SavedModel's head on the tower's features [n, d] (`backbone.head_features`).

  The head is `backbone.build_head` (its standardisation is built from the train
  split's features [m, d], as in training: the SavedModel holds it as constants),
  with the dense layers' weights read from the SavedModel's tracked variables
  (export._ServingModule.model_variables, named by layer). `served_scores` checks the
  result against the model.
  """
  variables = {v.name: v.numpy() for v in tf.saved_model.load(model_dir).model_variables}
  head = backbone.build_head(config.train, train_embeddings)
  for layer in head.layers:
    if hasattr(layer, 'kernel'):  # the Dense layers; Normalization holds no kernel
      layer.set_weights([variables[f'{layer.name}/kernel:0'], variables[f'{layer.name}/bias:0']])
  return head.predict(embeddings, batch_size=256, verbose=0).reshape(-1)


def served_scores(model_dir: str, images: List[bytes]) -> np.ndarray:
  """P(fake) [n] of the SavedModel's serving signature on encoded crops (tower included)."""
  serve = tf.saved_model.load(model_dir).signatures[serving_contract.SERVING_SIGNATURE]
  out = serve(**{serving_contract.IMAGE_BYTES_INPUT: tf.constant(images)})
  return out[serving_contract.PROBABILITY_KEY].numpy().reshape(-1)


def rates(labels: np.ndarray, called_fake: np.ndarray) -> Dict[str, object]:
  """n per class, TPR on the fakes and FPR on the reals (None without them), Wilson intervals."""
  fakes, reals = labels == features.FAKE, labels == features.REAL
  tp, fp = int((called_fake & fakes).sum()), int((called_fake & reals).sum())
  out = {'fake': int(fakes.sum()), 'real': int(reals.sum()), 'tpr': None, 'fpr': None}
  if fakes.any():
    out['tpr'] = round(tp / fakes.sum(), 4)
    out['tpr_interval'] = [round(v, 4) for v in fairness.rate_interval(tp, int(fakes.sum()), 0.95)]
  if reals.any():
    out['fpr'] = round(fp / reals.sum(), 4)
    out['fpr_interval'] = [round(v, 4) for v in fairness.rate_interval(fp, int(reals.sum()), 0.95)]
  return out


def table(columns: Dict[str, list], scores: np.ndarray, threshold: float) -> List[Dict[str, object]]:
  """Rows: every source, then every (source, race x gender, race, gender) group with a label."""
  labels = np.asarray(columns[features.LABEL])
  called = scores >= threshold
  keys: Dict[Tuple[str, str, str], List[int]] = collections.defaultdict(list)
  for i, source in enumerate(columns[features.SOURCE]):
    race, gender = columns[features.RACE][i], columns[features.GENDER][i]
    keys[(source, 'all', '')].append(i)
    if race != features.UNKNOWN and gender != features.UNKNOWN:
      keys[(source, 'race x gender', f'{race} {gender}')].append(i)
    if race != features.UNKNOWN:
      keys[(source, 'race', race)].append(i)
    if gender != features.UNKNOWN:
      keys[(source, 'gender', gender)].append(i)
  rows = []
  for (source, grouping, group), index in sorted(keys.items()):
    index = np.asarray(index)
    origins = sorted({columns[features.DEMOGRAPHICS_SOURCE][i] for i in index})
    rows.append(dict(source=source, grouping=grouping, group=group, origins=origins,
                     **rates(labels[index], called[index])))
  return rows


def gate_summary(report: Dict[str, object]) -> Dict[str, object]:
  """The gate's verdict, check counts per status, and its reasons sorted: about the model
  (failed checks, the Evaluator's refusal) and about missing evidence (insufficient checks,
  with what each lacks and whether it rests on predicted demographics)."""
  checks = report['checks']
  model = [r for r in report['reasons'] if r.startswith(evaluation.EVALUATOR_NOT_BLESSED)]
  model += [f"{c['grouping']}: {c['reason']}" for c in checks if c['status'] == fairness.FAIL]
  evidence = [f"{c['grouping']}: {c['reason']}" for c in checks
              if c['status'] == fairness.INSUFFICIENT]
  return {'verdict': report['verdict'], 'evaluator_verdict': report['evaluator_verdict'],
          'fairness_verdict': report['fairness_verdict'],
          'checks': dict(collections.Counter(c['status'] for c in checks)),
          'insufficient_resting_on_predicted': sum(
              1 for c in checks if c['status'] == fairness.INSUFFICIENT and c.get('rests_on_predicted')),
          'about_the_model': model, 'about_missing_evidence': evidence}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='the run\'s pipeline YAML')
  parser.add_argument('command', choices=['embed', 'table'])
  parser.add_argument('--out', help='JSON to write (table)')
  args = parser.parse_args(argv)
  config = config_lib.load_config(args.config)
  embedder = backbone.Embedder(config.train)
  columns = split_examples(config.metadata_path, SPLIT)
  embeddings = backbone.head_features(embedder, columns[features.IMAGE], config.train)
  print(f'{len(embeddings)} {SPLIT} faces: computed {embedder.cache.computed}, '
        f'reused {embedder.cache.reused}', flush=True)
  if args.command == 'embed':
    return 0
  train_images = split_examples(config.metadata_path, features.TRAIN)[features.IMAGE]
  train_embeddings = backbone.head_features(embedder, train_images, config.train)
  store = run_metadata.open_store(config.metadata_path)
  [model_uri] = run_metadata.output_uris(store, 'Trainer')['model']
  model_dir = os.path.join(model_uri, 'Format-Serving')
  point = serving_contract.read_operating_point(model_dir)
  threshold = float(point[serving_contract.DECISION_THRESHOLD_FIELD])
  scores = head_scores(config, model_dir, embeddings, train_embeddings)
  check = served_scores(model_dir, columns[features.IMAGE][:CHECKED])
  gap = float(np.abs(check - scores[:CHECKED]).max())
  print(f'head on cached embeddings vs the served model, {len(check)} faces: max |diff| {gap:.2e}')
  if gap > 1e-3:
    raise SystemExit(f'the head on cached embeddings disagrees with {model_dir} by {gap}')
  rows = table(columns, scores, threshold)
  for row in rows:
    def fmt(rate, n):
      return '-' if rate is None else f'{rate:.3f} (n={n})'
    print(f"{row['source']:10s} {row['grouping']:14s} {row['group']:28s} "
          f"TPR {fmt(row['tpr'], row['fake']):16s} FPR {fmt(row['fpr'], row['real']):16s} "
          f"{','.join(row['origins'])}")
  try:
    [report_uri] = run_metadata.output_uris(store, 'FairnessGate')[keys.REPORT_KEY]
  except ValueError as e:  # the run has not reached the gate (yet): the groups still count
    print(f'gate: {e}')
    gate = None
  else:
    with open(os.path.join(report_uri, 'report.json')) as f:
      gate = gate_summary(json.load(f))
    print(f"gate: {gate['verdict']} (Evaluator {gate['evaluator_verdict']}, fairness "
          f"{gate['fairness_verdict']}), checks {gate['checks']}")
    for kind in ('about_the_model', 'about_missing_evidence'):
      print(f'{kind}: {len(gate[kind])}')
      for line in gate[kind]:
        print(f'  - {line}')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'config': args.config, 'model': model_dir, 'operating_point': point,
                 'split': SPLIT, 'served_check_max_diff': gap, 'rows': rows, 'gate': gate},
                f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
