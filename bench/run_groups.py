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

    nice -n 10 .venv/bin/python bench/run_groups.py compare OLD.json NEW.json

`embed` only needs FaceExampleGen's output, so it can run beside the Trainer.
Group rates come with n and a Jeffreys 95% interval (fairness.rate_interval, as the gate's).
`table` also records every gate check with what its evidence lacks (`CAUSES`);
`compare` lists how each check's status moved between two such JSONs (two samples).
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


def read_columns(uri: str, splits, spec) -> Dict[str, list]:
  """Columns of an Examples artifact's `splits`, in file order: each feature of `spec`
  (strings decoded, image bytes kept) and 'split'."""
  columns = collections.defaultdict(list)
  for split in splits:
    for batch in example_files.records(example_files.split_files(uri, split)).batch(512).map(
        lambda s: tf.io.parse_example(s, spec)):
      for name, values in batch.items():
        columns[name].extend(v.decode('utf-8') if isinstance(v, bytes) and name != features.IMAGE
                             else v for v in values.numpy().tolist())
      columns['split'].extend([split] * len(batch[features.LABEL]))
  return dict(columns)


def split_examples(metadata_path: str, split: str) -> Dict[str, list]:
  """Columns of the newest FaceExampleGen's `split`: image bytes, label, source, gender,
  race, demographics_source (strings decoded)."""
  store = run_metadata.open_store(metadata_path)
  [examples] = run_metadata.output_uris(store, 'FaceExampleGen')['examples']
  return read_columns(examples, [split], SPEC)


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
  # The hidden width is the SavedModel's own (a merged ensemble of N heads: N x 128).
  hidden = variables.get(f'{backbone.HIDDEN_LAYER}/kernel:0')
  head = backbone.build_head(config.train, train_embeddings,
                             **({'units': hidden.shape[1]} if hidden is not None else {}))
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


# What an insufficient check lacks, from the gate's own check fields and reason text
# (fairness._judge and _mark_predicted): (cause, test on the check). 'other' when none match.
CAUSES = (
    ('reals < min_group_size', lambda c: any('real photos' in x for x in c.get('lacking') or [])),
    ('fakes < min_group_size', lambda c: any(x.endswith(' fakes') for x in c.get('lacking') or [])),
    ('examples < min_group_size', lambda c: any('examples' in x for x in c.get('lacking') or [])),
    ('annotator precision < bound', lambda c: '< min_annotator_precision' in c['reason']),
    ('annotator precision on too few labelled faces',
     lambda c: 'labelled test faces (need' in c['reason']),
    ('interval too wide', lambda c: 'interval' in c['reason'] and 'is wider than' in c['reason']),
    ('interval outside the bound', lambda c: 'interval' in c['reason'] and 'is not' in c['reason']),
    ('no events on either side', lambda c: 'the ratio compares nothing' in c['reason'] or
     'division by zero' in c['reason']),
)


def causes(check: Dict[str, object]) -> List[str]:
  """What an insufficient check lacks: the names in `CAUSES` it matches, or ['other'].

  A check judged on labelled faces only is classified by its labelled judgement (the
  reason before '; judged on labelled faces only', which goes on to name the precision).
  """
  if check.get('judged_on') == fairness.LABELLED_ONLY:
    check = dict(check, reason=check['reason'].split('; judged on labelled faces only')[0])
  found = [name for name, test in CAUSES if test(check)]
  return found or ['other']


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
          'about_the_model': model, 'about_missing_evidence': evidence,
          'insufficient_causes': dict(collections.Counter(
              cause for c in checks if c['status'] == fairness.INSUFFICIENT for cause in causes(c))),
          'by_check': {f"{c['grouping']}: {c['metric']}": {
              'status': c['status'], 'value': c.get('value'),
              'causes': causes(c) if c['status'] == fairness.INSUFFICIENT else []}
                       for c in checks}}


def compare(old: Dict[str, object], new: Dict[str, object]) -> Dict[str, object]:
  """How the gate's checks moved between two `gate_summary`s (e.g. two sample sizes):
  {'moves': {'old -> new': count}, 'measurable_now': [check: new status],
  'still_insufficient': {cause: count} over the checks insufficient in both}."""
  old_checks, new_checks = old['by_check'], new['by_check']
  moves = collections.Counter(
      f"{old_checks[k]['status'] if k in old_checks else 'absent'} -> {v['status']}"
      for k, v in new_checks.items())
  moves.update(f"{v['status']} -> absent" for k, v in old_checks.items() if k not in new_checks)
  insufficient = fairness.INSUFFICIENT
  was_insufficient = {k for k, v in old_checks.items() if v['status'] == insufficient}
  return {'moves': dict(sorted(moves.items())),
          'measurable_now': sorted(f"{k}: {v['status']}" for k, v in new_checks.items()
                                   if k in was_insufficient and v['status'] in (fairness.PASS,
                                                                                fairness.FAIL)),
          'still_insufficient': dict(collections.Counter(
              cause for k, v in new_checks.items()
              if k in was_insufficient and v['status'] == insufficient for cause in v['causes']))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', help='the run\'s pipeline YAML (embed, table)')
  parser.add_argument('command', choices=['embed', 'table', 'compare'])
  parser.add_argument('tables', nargs='*', help='compare: OLD.json NEW.json written by table')
  parser.add_argument('--out', help='JSON to write (table)')
  args = parser.parse_args(argv)
  if args.command == 'compare':
    if len(args.tables) != 2:
      parser.error('compare takes two JSONs written by table: OLD.json NEW.json')
    gates = []
    for path in args.tables:
      with open(path) as f:
        gate = json.load(f).get('gate') or {}
      if 'by_check' not in gate:
        parser.error(f'{path} holds no gate checks per check (gate.by_check): rerun table')
      gates.append(gate)
    moved = compare(*gates)
    for kind, value in moved.items():
      print(f'{kind}:')
      for line in [f'{k}: {v}' for k, v in value.items()] if isinstance(value, dict) else value:
        print(f'  - {line}')
    return 0
  if not args.config or args.tables:
    parser.error(f'{args.command} takes --config and no JSONs')
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
    print(f"insufficient, by what they lack: {gate['insufficient_causes']}")
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
