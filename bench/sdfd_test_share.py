"""What a larger SDFD test share (`ingest.sources[i].test_fraction`) costs and buys, on a finished run.

SDFD is the only source of fakes whose demographics are not predictions (the
prompt's gender, race and age), so the gate's checks on fakes judged on labelled
faces only rest on SDFD's test fakes; at the global test_fraction 0.1, 50 of 600.
This script re-splits SDFD by the ingestion's own hash (`sources.hash_split` at
each (test_fraction, eval_fraction) of SPLITS; every other source keeps the run's
split) and retrains the head as the Trainer does (`train.head` of the run's
config, `train.epochs`, class weights, no early stopping; operating point at the
thresholds' target_fpr on the eval split's reals) on the run's cached CLIP
embeddings, no tower pass. Per split and seed it reports:

* cost: SDFD train fakes; SDFD TPR at the operating point and AUC of SDFD test
  fakes against the pooled test reals (every source's), per prompted gender and
  race, and on the "common" fakes, those in test at every split compared (the
  smallest test share's), so that every split is judged on the same fakes;
  FairFace FPR (the audit source) at the operating point;
* evidence: prompted SDFD test fakes per side of each gate grouping (the
  thresholds' groupings expanded by judge_each_value_of), how many groupings have
  both sides at min_group_size, per kind (race, gender, age, race x gender);
* the DataGate's eval-against-train skew (data_gate/skew.py, the config's
  validation bounds) on the annotated demographics: SDFD's eval:train ratio
  changes the mix of eval against train.

The split is nested (`sources.hash_split`): an SDFD image in test at 0.1 is in
test at every larger share; the extra test fakes come out of eval and train.

    nice -n 10 .venv/bin/python bench/sdfd_test_share.py --config /tmp/s12run/run.yaml

The embedding cache is only read (a crop without a cached embedding stops the script).
"""

import argparse
import collections
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_groups  # noqa: E402  (read_columns)
from fakefaces.components.data_gate import skew
from fakefaces.components.face_example_gen import sources
from fakefaces.components.image_encoder import clip_weights, embedding_cache
from fakefaces.components.shared import features, groupings
from fakefaces.components.trainer import backbone, data, operating_point
from fakefaces.pipeline import config as config_lib, run_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'bench', 'results', 'sdfd_test_share.json')
SDFD, FAIRFACE = 'sdfd', 'fairface'
# SDFD's (test_fraction, eval_fraction): the global eval 0.16 at growing test shares, and
# an eval share keeping SDFD's eval:train ratio at the other sources' 0.16:0.74.
SPLITS = ((0.1, 0.16), (0.3, 0.16), (0.4, 0.16), (0.5, 0.16), (0.6, 0.16), (0.5, 0.09),
          (0.6, 0.07))
SEEDS = (42, 43, 44)
COLUMNS = (features.SOURCE, features.IMAGE_ID, features.GENDER, features.RACE, features.AGE,
           features.DEMOGRAPHICS_SOURCE)
SPEC = {name: tf.io.FixedLenFeature([], tf.string, default_value='')
        for name in COLUMNS + (features.IMAGE,)}
SPEC[features.LABEL] = tf.io.FixedLenFeature([], tf.int64)


def _read(uri: str) -> Dict[str, list]:
  return run_groups.read_columns(uri, features.SPLITS, SPEC)


def run_examples(metadata_path: str) -> Dict[str, np.ndarray]:
  """Every example the run's FaceExampleGen wrote (all splits): COLUMNS, label, split, image;
  and 'annotated_<attribute>': the DemographicAnnotator's values (predicted where unlabelled),
  what StatisticsGen and the DataGate's skew check see."""
  store = run_metadata.open_store(metadata_path)
  [ingested] = run_metadata.output_uris(store, 'FaceExampleGen')['examples']
  [annotated_uri] = run_metadata.output_uris(store, 'DemographicAnnotator')['annotated_examples']
  columns, annotated = _read(ingested), _read(annotated_uri)
  by_id = {i: k for k, i in enumerate(annotated[features.IMAGE_ID])}
  order = [by_id[i] for i in columns[features.IMAGE_ID]]
  for name in features.DEMOGRAPHIC_FEATURES:
    columns[f'annotated_{name}'] = [annotated[name][k] for k in order]
  out = {k: np.array([v.decode('utf-8') if isinstance(v, bytes) else v for v in vs])
         for k, vs in columns.items() if k != features.IMAGE}
  out[features.IMAGE] = columns[features.IMAGE]
  return out


def cached_embeddings(cache_dir: str, images: List[bytes]) -> np.ndarray:
  """[n, 512] float32 from the run's embedding cache, read only."""
  def not_cached(batch):
    raise SystemExit(f'{len(batch)} crops have no cached embedding in {cache_dir}')
  return embedding_cache.EmbeddingCache(cache_dir, clip_weights.SHA256).embed(
      images, not_cached, batch_size=len(images))


def resplit(d: Dict[str, np.ndarray], eval_fraction: float, test_fraction: float) -> np.ndarray:
  """The splits [n] with SDFD hash-split at `test_fraction`, every other source as the run had it."""
  split = d['split'].copy()
  for i in np.flatnonzero(d[features.SOURCE] == SDFD):
    split[i] = sources.hash_split(d[features.IMAGE_ID][i], eval_fraction, test_fraction)
  return split


def eval_skew(d, split: np.ndarray, validation) -> Dict[str, object]:
  """The DataGate's skew check (data_gate/skew.py) of eval against train per skew feature, on
  the annotated demographics: SDFD's eval:train ratio changes the splits' mixes."""
  out = {}
  for name in validation.skew_features:
    values = d[f'annotated_{name}']
    counts = [collections.Counter(values[split == s].tolist())
              for s in (features.TRAIN, features.EVAL)]
    worst = skew.linf_distance(counts[0], counts[1], validation.max_skew_linf,
                               validation.skew_noise_z)
    out[name] = {k: worst[k] for k in ('linf', 'value', 'noise_margin', 'exceeded')}
  return out


def auc(labels: np.ndarray, scores: np.ndarray):
  from sklearn.metrics import roc_auc_score
  if len(set(labels.tolist())) < 2:
    return None
  return round(float(roc_auc_score(labels, scores)), 4)


def train_scores(config, x: np.ndarray, labels: np.ndarray, train: np.ndarray,
                 seed: int) -> np.ndarray:
  """P(fake) [n] of every example from a head trained on the `train` mask as the Trainer does."""
  train_config = dataclasses.replace(config.train, seed=seed)
  counts = {0: int((labels[train] == 0).sum()), 1: int((labels[train] == 1).sum())}
  weights = data.class_weights(counts)
  tf.keras.utils.set_random_seed(seed)
  head = backbone.build_head(train_config, x[train])
  head.fit(x[train], labels[train].astype(np.float32),
           sample_weight=np.array([weights[int(l)] for l in labels[train]], np.float32),
           batch_size=train_config.batch_size, epochs=train_config.epochs, shuffle=True,
           verbose=0)
  return head.predict(x, batch_size=1024, verbose=0)[:, 0]


def evidence(d, split: np.ndarray, thresholds) -> Dict[str, object]:
  """Prompted SDFD test fakes per side of each gate grouping, against min_group_size."""
  m = ((split == features.TEST) & (d[features.SOURCE] == SDFD) & (d[features.LABEL] == 1) &
       (d[features.DEMOGRAPHICS_SOURCE] == features.PROMPTED))
  rows = [{n: d[n][i] for n in features.DEMOGRAPHIC_FEATURES} for i in np.flatnonzero(m)]
  per_grouping, judged = {}, collections.Counter()
  totals = collections.Counter()
  for grouping in groupings.expand(thresholds.groupings, thresholds.judge_each_value_of):
    group, reference = groupings.groups_of(grouping)
    sides = [sum(g.contains(r) for r in rows) for g in (group, reference)]
    kind = grouping.feature
    totals[kind] += 1
    enough = min(sides) >= thresholds.min_group_size
    judged[kind] += enough
    per_grouping[grouping.name] = sides
  return {'prompted_test_fakes': int(m.sum()),
          'groupings_with_evidence': {k: f'{judged[k]}/{totals[k]}' for k in totals},
          'with_evidence': sum(judged.values()), 'groupings': sum(totals.values()),
          'sides': per_grouping}


def measure(d, split: np.ndarray, common: np.ndarray, scores: np.ndarray,
            target_fpr: float) -> Dict[str, object]:
  """Rates at the operating point; `common`: the SDFD fakes in test at every share compared."""
  labels = d[features.LABEL]
  evaluation, test = split == features.EVAL, split == features.TEST
  threshold = operating_point.threshold_for_fpr(labels[evaluation], scores[evaluation],
                                                target_fpr)
  sdfd = test & (d[features.SOURCE] == SDFD)
  reals = test & (labels == 0)
  fairface = test & (d[features.SOURCE] == FAIRFACE)
  out = {'threshold': round(float(threshold), 6),
         'sdfd_train_fakes': int(((split == features.TRAIN) & (d[features.SOURCE] == SDFD)).sum()),
         'sdfd_test_fakes': int(sdfd.sum()),
         'sdfd_tpr': round(float((scores[sdfd] >= threshold).mean()), 4),
         'sdfd_auc': auc(labels[sdfd | reals], scores[sdfd | reals]),
         'sdfd_tpr_common': round(float((scores[common] >= threshold).mean()), 4),
         'sdfd_auc_common': auc(labels[common | reals], scores[common | reals]),
         'fairface_fpr': round(float((scores[fairface] >= threshold).mean()), 4),
         'fairface_reals': int(fairface.sum())}
  for attribute in (features.GENDER, features.RACE):
    groups = {}
    for value in sorted(set(d[attribute][sdfd].tolist()) - {features.UNKNOWN}):
      g = sdfd & (d[attribute] == value)
      groups[value] = {'n': int(g.sum()), 'tpr': round(float((scores[g] >= threshold).mean()), 4),
                       'auc': auc(labels[g | reals], scores[g | reals])}
    out[attribute] = groups
  return out


def _mean(values):
  values = [v for v in values if v is not None]
  return round(float(np.mean(values)), 4) if values else None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='the run\'s pipeline YAML')
  parser.add_argument('--splits', nargs='+', default=[f'{t}:{e}' for t, e in SPLITS],
                      help='SDFD test_fraction:eval_fraction pairs')
  parser.add_argument('--seeds', type=int, nargs='+', default=SEEDS)
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args(argv)
  config = config_lib.load_config(args.config)
  thresholds = config_lib.load_thresholds(config.thresholds_file)
  d = run_examples(config.metadata_path)
  x = cached_embeddings(config.train.embedding_cache_dir, d[features.IMAGE])
  [sdfd_source] = [s for s in config.ingest.sources if (s.name or s.kind) == SDFD]
  run_eval, run_test = config.ingest.split_fractions(sdfd_source)
  same = bool((resplit(d, run_eval, run_test) == d['split']).all())
  print(f'{len(x)} examples; SDFD re-split at the run\'s fractions equals its split: {same}',
        flush=True)
  if not same:
    raise SystemExit('the hash split does not reproduce the run\'s SDFD split')
  # In test at the smallest share, so at every share: the same fakes judge every share.
  splits = [tuple(float(v) for v in pair.split(':')) for pair in args.splits]
  smallest = min(splits)
  common = ((resplit(d, smallest[1], smallest[0]) == features.TEST) &
            (d[features.SOURCE] == SDFD))
  results = []
  for share, eval_fraction in splits:
    split = resplit(d, eval_fraction, share)
    runs = []
    for seed in args.seeds:
      start = time.perf_counter()
      scores = train_scores(config, x, d[features.LABEL], split == features.TRAIN, seed)
      runs.append(dict(measure(d, split, common, scores, thresholds.target_fpr), seed=seed,
                       seconds=round(time.perf_counter() - start, 1)))
    row = {'sdfd_test_fraction': share, 'eval_fraction': eval_fraction,
           'evidence': evidence(d, split, thresholds),
           'eval_skew': eval_skew(d, split, config.validation), 'seeds': runs,
           'mean': {k: _mean([r[k] for r in runs])
                    for k in ('sdfd_tpr', 'sdfd_auc', 'sdfd_tpr_common', 'sdfd_auc_common',
                              'fairface_fpr')}}
    for attribute in (features.GENDER, features.RACE):
      row['mean'][attribute] = {
          value: {'n': runs[0][attribute][value]['n'],
                  'tpr': _mean([r[attribute][value]['tpr'] for r in runs]),
                  'auc': _mean([r[attribute][value]['auc'] for r in runs])}
          for value in runs[0][attribute]}
    results.append(row)
    m, e = row['mean'], row['evidence']
    print(f"test {share:.2f} eval {eval_fraction:.2f}: SDFD train {runs[0]['sdfd_train_fakes']} test "
          f"{runs[0]['sdfd_test_fakes']} (prompted {e['prompted_test_fakes']}); SDFD TPR "
          f"{m['sdfd_tpr']} [{min(r['sdfd_tpr'] for r in runs)}-{max(r['sdfd_tpr'] for r in runs)}]"
          f" AUC {m['sdfd_auc']}; FairFace FPR {m['fairface_fpr']}; groupings with "
          f"{thresholds.min_group_size} prompted test fakes a side: {e['with_evidence']}/"
          f"{e['groupings']} {e['groupings_with_evidence']}; eval-train skew "
          f"{ {k: v['linf'] for k, v in row['eval_skew'].items()} }", flush=True)
  print()
  print(f'TPR / AUC: SDFD test fakes against the pooled test reals, mean of {len(args.seeds)} '
        f'seeds; common: the {int(common.sum())} SDFD fakes in test at every share')
  print(f"{'test':>5s} {'eval':>5s} {'train':>5s} {'test':>4s} {'TPR':>6s} {'AUC':>6s} {'TPR c':>6s} "
        f"{'AUC c':>6s} {'FF FPR':>6s} {'skew':>5s} "
        + ' '.join(f'{k[:14]:>14s}' for k in results[0]['evidence']['groupings_with_evidence']))
  for row in results:
    r0, m = row['seeds'][0], row['mean']
    worst = max(v['linf'] for v in row['eval_skew'].values())
    print(f"{row['sdfd_test_fraction']:5.2f} {row['eval_fraction']:5.2f} {r0['sdfd_train_fakes']:5d} {r0['sdfd_test_fakes']:4d} "
          f"{m['sdfd_tpr']:6.3f} {m['sdfd_auc']:6.3f} {m['sdfd_tpr_common']:6.3f} "
          f"{m['sdfd_auc_common']:6.3f} {m['fairface_fpr']:6.3f} {worst:5.3f} "
          + ' '.join(f'{v:>14s}' for v in row['evidence']['groupings_with_evidence'].values()))
  for attribute in (features.GENDER, features.RACE):
    print(f'SDFD TPR (mean of {len(args.seeds)} seeds) per prompted {attribute}:')
    for row in results:
      print(f"  {row['sdfd_test_fraction']:.2f}/{row['eval_fraction']:.2f}: " + ', '.join(
          f"{k} {v['tpr']} (n {v['n']})" for k, v in row['mean'][attribute].items()))
  with open(args.out, 'w') as f:
    json.dump({'config': args.config, 'target_fpr': thresholds.target_fpr,
               'min_group_size': thresholds.min_group_size, 'seeds': list(args.seeds),
               'head': config.train.head, 'epochs': config.train.epochs,
               'max_skew_linf': config.validation.max_skew_linf,
               'examples': len(x), 'shares': results}, f, indent=1)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
