"""The annotator's two features side by side: dlib descriptors vs CLIP embeddings (`annotator.features`).

On the same labelled crops, each feature goes through the DemographicAnnotator's
own steps (executor.fit, propose, cross_fit_train_split with 5 folds and seed 0,
evaluate_test_split at the configured confidences: the shared-data configs'
protocol, every labelled face scored by classifiers fitted without it):
accuracy per attribute, coverage and accuracy at the attribute's confidence,
precision per class. Then the FairnessGate's view of the same test pairs
(fairness.annotation_summary over the groupings of pipeline/configs/thresholds.yaml,
`judge_each_value_of` expanded): a check on predicted demographics can pass
only where the annotator's precision for both sides reaches
`min_annotator_precision` on at least `min_annotator_support` faces; the bench
lists those groupings per feature.

Crops: bench/generalization.py's `prepare` (FairFace and UTKFace photos through
the ingestion's FacePreparer, dlib hog+cnn, 128 px JPEG): 392 FairFace faces
(train and val) and 280 UTKFace faces with FairFace-vocabulary labels (UTKFace's
labels.csv: race 'unknown' for its Asian and Others, so those faces are not
scored on race nor in the gate's pairs). CLIP embeddings are read from that
bench's embedding cache (the Trainer's, keyed by the crop bytes; missing ones
are computed and added); dlib descriptors are taken from the crop as the
annotator does for faces ingested without `face_descriptors` (cached in
runs/annotate_features/descriptors.npz).

  nice -n 10 .venv/bin/python bench/annotate_features.py [--crops PATH] [--cache /work/cache/clip]
      [--regularization-c 1.0] [--out bench/results/annotate_features.json]

Prints the tables and writes bench/results/annotate_features.json.
"""

import argparse
import csv
import hashlib
import json
import os
import pickle
import sys
import time
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generalization  # noqa: E402  (its crops, cache and sample; sets TF_USE_LEGACY_KERAS)
import numpy as np  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.shared import groupings as groupings_lib  # noqa: E402
from fakefaces.components.shared.thresholds import load_thresholds  # noqa: E402
from fakefaces.components.demographic_annotator import executor, face_features  # noqa: E402
from fakefaces.components.demographic_annotator.config import AnnotatorConfig  # noqa: E402
from fakefaces.components.fairness_gate import fairness  # noqa: E402
from fakefaces.pipeline.config import DEFAULT_THRESHOLDS  # noqa: E402

OUT = os.path.join(ROOT, 'bench', 'results', 'annotate_features.json')
DESCRIPTORS = os.path.join(ROOT, 'runs', 'annotate_features', 'descriptors.npz')
SETS = {'fairface': (generalization.FAIRFACE,), 'utkface': (generalization.UTK,),
        'fairface+utkface': (generalization.FAIRFACE, generalization.UTK)}
FEATURES = (face_features.DLIB_DESCRIPTORS, face_features.CLIP_EMBEDDING)


def labelled_crops(crops_path: str) -> List[dict]:
  """FairFace and UTKFace crops with their human gender, race and age (FairFace vocabulary)."""
  with open(crops_path, 'rb') as f:
    rows = [r for r in pickle.load(f) if r['source'] in SETS['fairface+utkface']]
  labels = {}
  for folder in ('train', 'val'):
    with open(os.path.join(generalization.DATA, 'fairface', f'fairface_label_{folder}.csv')) as f:
      for r in csv.DictReader(f):
        labels[os.path.join(generalization.DATA, 'fairface', r['file'])] = r
  with open(os.path.join(generalization.DATA, 'utkface', 'labels.csv')) as f:
    for r in csv.DictReader(f):
      labels[os.path.join(generalization.DATA, 'utkface', r['path'])] = r
  for r in rows:
    r.update({a: labels[r['path']][a] or features.UNKNOWN for a in features.DEMOGRAPHIC_FEATURES})
  return rows


def clip_vectors(images: List[bytes], cache: str) -> np.ndarray:
  """Embeddings of the crops from the cache; the tower is built only for crops it lacks."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache  # pylint: disable=g-import-not-at-top
  from fakefaces.components.image_encoder.embedder import Embedder  # pylint: disable=g-import-not-at-top
  settings = AnnotatorConfig(features=face_features.CLIP_EMBEDDING, embedding_cache_dir=cache)
  embedder = []

  def compute(batch):
    embedder[:] = embedder or [Embedder(settings)]
    return embedder[0].compute(batch)

  stored = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256)
  vectors = stored.embed(images, compute)
  print(f'CLIP: {stored.reused} embeddings read from {stored.folder}, {stored.computed} computed',
        flush=True)
  return vectors


def dlib_vectors(images: List[bytes]) -> np.ndarray:
  """Descriptors of the crops, computed once and kept in DESCRIPTORS by crop sha256."""
  stored = {}
  if os.path.exists(DESCRIPTORS):
    with np.load(DESCRIPTORS) as f:
      stored = dict(zip(f['keys'].tolist(), f['vectors']))
  keys = [hashlib.sha256(image).hexdigest() for image in images]
  missing = [(k, image) for k, image in zip(keys, images) if k not in stored]
  if missing:
    describer, start = face_features.DlibDescriptors(), time.process_time()
    for (k, _), outcome in zip(missing, describer.describe([image for _, image in missing])):
      stored[k] = (np.full(face_features.SIZES[describer.name], np.nan, np.float32)
                   if isinstance(outcome, Exception) else outcome)
    print(f'dlib: {len(missing)} descriptors computed, '
          f'{(time.process_time() - start) / len(missing) * 1000:.0f} CPU-ms each', flush=True)
    os.makedirs(os.path.dirname(DESCRIPTORS), exist_ok=True)
    np.savez(DESCRIPTORS, keys=np.asarray(list(stored)), vectors=np.stack(list(stored.values())))
  return np.stack([stored[k] for k in keys])


def annotate(rows: List[dict], vectors: np.ndarray, config: AnnotatorConfig):
  """The annotator's steps on one split of labelled faces: (evaluation, test pairs)."""
  faces = [executor.Face(image_id=r['path'], label=0,
                         human={a: r[a] for a in features.DEMOGRAPHIC_FEATURES}, lacking=False,
                         described=not np.isnan(v).any()) for r, v in zip(rows, vectors)]
  split = config.test_split
  described = executor.Described({split: faces}, {split: vectors}, [], 0, 0.0)
  classifiers, _ = executor.fit(described, config, active=True)
  proposals = executor.propose(described, classifiers)
  executor.cross_fit_train_split(described, proposals, config)
  thresholds = {a: config.min_confidence(a) for a in features.DEMOGRAPHIC_FEATURES}
  return executor.evaluate_test_split(faces, proposals[split], thresholds)


def gate_view(pairs: List[List[str]], thresholds) -> List[dict]:
  """Per grouping: the annotator's precision for each side and whether the gate accepts it."""
  k = len(features.DEMOGRAPHIC_FEATURES)
  evidence = fairness.AnnotationEvidence(
      rows=[], accuracy={},
      pairs=[(dict(zip(features.DEMOGRAPHIC_FEATURES, p[:k])),
              dict(zip(features.DEMOGRAPHIC_FEATURES, p[k:]))) for p in pairs])
  out = []
  for grouping in groupings_lib.expand(thresholds.groupings, thresholds.judge_each_value_of):
    precision = fairness.annotation_summary(grouping, evidence)['precision']
    sides = [(precision[s], precision[f'n_{s}']) for s in ('group', 'reference')]
    out.append({'grouping': grouping.name, 'precision_group': _round(precision['group']),
                'n_group': precision['n_group'],
                'precision_reference': _round(precision['reference']),
                'n_reference': precision['n_reference'],
                'measurable': all(n >= thresholds.min_annotator_support and
                                  p >= thresholds.min_annotator_precision for p, n in sides)})
  return out


def _round(value):
  return None if value is None else round(float(value), 3)


def _fmt(value) -> str:
  return '  n/a' if value is None else f'{value:5.3f}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--crops', default=generalization.CROPS,
                      help='crops.pkl of `bench/generalization.py prepare`')
  parser.add_argument('--cache', default=generalization.CACHE, help='the embedding cache folder')
  parser.add_argument('--folds', type=int, default=5)
  parser.add_argument('--regularization-c', type=float,
                      default=AnnotatorConfig.regularization_c, help='annotator.regularization_c')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args(argv)
  if not os.path.exists(args.crops):
    raise SystemExit(f'{args.crops}: no crops; run `bench/generalization.py prepare` first')
  load_before, started = os.getloadavg()[0], time.time()
  rows = labelled_crops(args.crops)
  images = [r['image'] for r in rows]
  vectors = {face_features.DLIB_DESCRIPTORS: dlib_vectors(images),
             face_features.CLIP_EMBEDDING: clip_vectors(images, args.cache)}
  thresholds = load_thresholds(DEFAULT_THRESHOLDS)
  result = {'command': 'bench/annotate_features.py ' + ' '.join(argv or sys.argv[1:]),
            'crops': args.crops, 'folds': args.folds, 'regularization_c': args.regularization_c,
            'load_average_before': load_before,
            'min_annotator_precision': thresholds.min_annotator_precision,
            'min_annotator_support': thresholds.min_annotator_support, 'sets': {}}
  for set_name, sources in SETS.items():
    keep = np.array([r['source'] in sources for r in rows])
    chosen = [r for r, k in zip(rows, keep) if k]
    per_set = result['sets'][set_name] = {'faces': len(chosen)}
    print(f'\n{set_name}: {len(chosen)} faces, {args.folds}-fold cross-fitting, '
          f'C {args.regularization_c:g}')
    print(f'{"features":18} {"attribute":9} {"accuracy":>8} {"coverage":>8} {"acc@conf":>8} '
          f'{"n":>5}  precision by class (support)')
    for name in FEATURES:
      config = AnnotatorConfig(features=name, train_split=features.TEST,
                               test_split=features.TEST, cross_fit_folds=args.folds,
                               regularization_c=args.regularization_c)
      evaluation, pairs = annotate(chosen, vectors[name][keep], config)
      gate = gate_view(pairs, thresholds)
      per_set[name] = {'evaluation': {a: {k: e[k] for k in (
          'n', 'accuracy', 'min_confidence', 'coverage', 'confident_accuracy', 'per_class')}
                                      for a, e in evaluation.items()},
                       'test_pairs': len(pairs), 'gate': gate,
                       'measurable': [g['grouping'] for g in gate if g['measurable']]}
      for attribute, e in evaluation.items():
        classes = ', '.join(f'{c} {_fmt(s["precision"]).strip()} ({s["support"]})'
                            for c, s in e['per_class'].items() if s['support'])
        print(f'{name:18} {attribute:9} {_fmt(e["accuracy"]):>8} {_fmt(e["coverage"]):>8} '
              f'{_fmt(e["confident_accuracy"]):>8} {e["n"]:5d}  {classes}')
    print(f'gate: groupings whose checks on predicted demographics can pass (precision >= '
          f'{thresholds.min_annotator_precision:g} on >= {thresholds.min_annotator_support} faces, '
          'both sides), of ' + str(len(per_set[FEATURES[0]]['gate'])))
    for name in FEATURES:
      print(f'  {name:18} {len(per_set[name]["measurable"]):3d}: '
            + ', '.join(per_set[name]['measurable']))
  result['seconds'] = round(time.time() - started, 1)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'\nwrote {args.out} ({result["seconds"]} s, load average before {load_before:.1f})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
