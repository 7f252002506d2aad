"""Processing match: the DataGate's one-class-source probe per candidate face treatment.

The DataGate judges a source that holds one class only (SDFD: fakes; UTKFace:
reals) by a probe on processing features (components/data_gate/shortcut.py,
`processing_features`: source face size, 8x8 blockiness, JPEG-ghost slopes)
against the other class's sources pooled. This bench finds a treatment
(components/face_preparation/treatment.py: crop, resample, shared JPEG
generation, final JPEG quality) under which that probe stays below its bound
with a margin, without running the pipeline:

1. `--align`: lists the inputs as ingestion does (`sources.list_inputs` with
   `ingest.limit_per_source`: the same hash sample and split), keeps the train
   split of the trained sources, and prepares each photo with the config's
   `FacePreparer` (dlib, or the centred square for `align: none`). The aligned
   face BEFORE any treatment is cached as PNG under `--cache` (outside git);
   run it in shards (`--shard k/n`) in the background: dlib costs 0.3-1.3 s a
   photo on a shared 2-core machine.
2. default: for each candidate, `treatment.equalize` + the final encode at
   `jpeg_quality` of every cached face (exactly what `FacePreparer.prepare_image`
   does), then the DataGate's `shortcut.single_class_rows` with its own config
   (`validation.source_shortcut`), once per subsample: seed k draws the gate's
   sample of `max_examples_per_source` per class and source and its folds at
   seed k, with the records in an order salted by k (the pooled other class
   takes its sources' first samples in record order, which in a run is the
   writer's), so the spread over subsamples shows the margin.
   `--feature-means` prints the mean processing feature per class and source
   (which feature carries the separation), `--pairs` the `jpeg_history` probe
   for every two class:source groups (which collections the features tell apart).
3. `--check-ingested DIR`: the first candidate against a run's FaceExampleGen
   output of the same config (byte-identical examples, the gate's AUC in the
   file's order).

  nohup nice -n 10 python bench/processing_match.py --align --shard 0/2 &
  nohup nice -n 10 python bench/processing_match.py --align --shard 1/2 &
  nice -n 10 python bench/processing_match.py [--seeds 0,1,2,3,4] [--candidates q88,q90]
  (--output-size 256 aligns and measures at another side, in its own cache)

Prints the table and writes (merging rows of other candidates measured alike)
bench/results/processing_match.json.
"""

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.data_gate import shortcut  # noqa: E402
from fakefaces.components.face_example_gen import face_workers, sources  # noqa: E402
from fakefaces.components.face_preparation import faces, images, treatment  # noqa: E402
from fakefaces.pipeline.config import load_config  # noqa: E402

CONFIG = os.path.join(ROOT, 'pipeline', 'configs', 'shared_data_clip.yaml')
CACHE = '/work/cache/processing-match'
# Candidate name -> the ingest.face fields it changes (everything else: the config's).
CANDIDATES: Dict[str, Dict[str, Any]] = {
    'none': dict(shared_jpeg_quality=0),
    **{f'q{q}': dict(shared_jpeg_quality=q) for q in (86, 87, 88, 89, 90, 92)},
    # One JPEG generation only: the final encode at the shared quality.
    **{f'final{q}': dict(shared_jpeg_quality=0, jpeg_quality=q) for q in (88, 90, 92)},
    # A slight resampling first: the 8x8 grid gan_faces' quality-75 files leave in their
    # 128 px crops (align: none) is gone, so every source's last JPEG history is the shared one.
    **{f'r{r}q{q}': dict(resample_size=r, shared_jpeg_quality=q)
       for r in (124, 120, 112) for q in (88, 90)},
    **{f'c{c}q{q}': dict(crop_fraction=c / 100, shared_jpeg_quality=q)
       for c in (97, 95) for q in (88, 90)},
    # Bandwidth below every source's (sharpness alike), and a native crop that drops the
    # reflect padding dlib adds around UTKFace's tight 200 px photos.
    **{f'r{r}q88': dict(resample_size=r, shared_jpeg_quality=88) for r in (96, 80, 64)},
    # Native crops (no resampling) of side 120, 116, 112, 104, 96 px: the central pixels, so
    # the reflect padding is dropped; a left offset off the 8 px grid (4, 6 px) also moves
    # gan_faces' old JPEG grid off the shared generation's.
    **{f'n{side}q{q}': dict(crop_fraction=side / 128, native_crop=True, shared_jpeg_quality=q)
       for side in (120, 116, 112, 104, 96) for q in (88, 90)},
    **{f'n{side}q{q}': dict(crop_fraction=side / 128, native_crop=True, shared_jpeg_quality=q)
       for side in (112, 96) for q in (0, 87, 89)},
    # With --output-size 256 (the CLIP tower's 224 px then native, as the config check on
    # native crops requires): native crops of 224, 232, 240 px of the 256 px alignment.
    **{f'w{side}q{q}': dict(crop_fraction=side / 256, native_crop=True, shared_jpeg_quality=q)
       for side in (224, 232, 240) for q in (0, 88, 89, 90)},
    # The final encode's quality beside the shared generation.
    **{f'q{q}f{f}': dict(shared_jpeg_quality=q, jpeg_quality=f)
       for q, f in ((88, 90), (88, 92), (89, 92), (89, 90))},
}
PROCESSING_NAMES = ['log2_face_size', 'blockiness_h', 'blockiness_v', 'ghost_slope_50_70',
                    'ghost_slope_70_85']


def train_inputs(config_path: str, limit: int) -> Tuple[Any, List[sources.InputRecord]]:
  """The pipeline config and the train-split inputs ingestion would process, in listing order."""
  config = load_config(config_path)
  config.ingest.limit_per_source = limit
  records = [r for r in sources.list_inputs(config.ingest)
             if r.split == features.TRAIN and not r.problem and not r.relabel
             and r.label is not None]
  return config, records


def cache_stem(cache: str, record: sources.InputRecord) -> str:
  digest = hashlib.sha256(record.image_id.encode('utf-8')).hexdigest()[:24]
  return os.path.join(cache, 'aligned', record.source, digest)


def align_inputs(config, records: List[sources.InputRecord], cache: str, shard: int,
                 shards: int, reverse: bool = False) -> None:
  """Caches each input's aligned face before treatment (PNG) and its outcome (JSON)."""
  preparers = face_workers.Preparers(config.ingest.face)
  start, done = time.time(), 0
  # Sources interleaved, so a partial cache already holds some of every source.
  position: Dict[str, int] = {}
  order = []
  for record in records:
    position[record.source] = position.get(record.source, 0) + 1
    order.append((position[record.source], record.source, record))
  order.sort(key=lambda t: t[:2])
  mine = [record for index, (_, _, record) in enumerate(order) if index % shards == shard]
  # A second process on the same shard from the other end (`reverse`) shares its work.
  for record in (mine[::-1] if reverse else mine):
    stem = cache_stem(cache, record)
    if os.path.exists(stem + '.json'):
      continue
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    meta = {'image_id': record.image_id, 'source': record.source, 'label': record.label}
    preparer = preparers.get(record.align)
    try:
      with open(record.path, 'rb') as f:
        photo = preparer.prepare_image(preparer.decode(f.read()), all_faces=False)
      if photo.faces:
        face = photo.faces[0]
        face.aligned.convert('RGB').save(stem + '.png')
        meta.update(outcome=face_workers.WRITTEN, face_size=face.face_size)
      else:
        meta.update(outcome=face_workers.NO_FACE, reason=photo.no_face_reason)
    except (images.ImageProblem, OSError) as e:
      meta.update(outcome='refused', reason=str(e))
    with open(stem + '.json', 'w') as f:
      json.dump(meta, f)
    done += 1
    if done % 50 == 0:
      print(f'shard {shard}/{shards}: {done} aligned, {time.time() - start:.0f} s', flush=True)
  print(f'shard {shard}/{shards}: done, {done} aligned in {time.time() - start:.0f} s',
        flush=True)


def load_aligned(records: List[sources.InputRecord], cache: str) -> List[Dict[str, Any]]:
  """The cached aligned faces of `records` that ingestion writes (no face, refused: left out)."""
  faces_out = []
  for record in records:
    stem = cache_stem(cache, record)
    if not os.path.exists(stem + '.json'):
      continue  # not aligned yet
    with open(stem + '.json') as f:
      meta = json.load(f)
    if meta['outcome'] != face_workers.WRITTEN:
      continue
    with Image.open(stem + '.png') as image:
      faces_out.append(dict(record=record, aligned=image.convert('RGB'),
                            face_size=meta['face_size']))
  return faces_out


def treat(aligned: List[Dict[str, Any]], params: faces.FacePreparation) -> List[Dict[str, Any]]:
  """Train-split examples as ingestion writes them with `params` (FacePreparer.prepare_image)."""
  return [{features.LABEL: face['record'].label, features.SOURCE: face['record'].source,
           features.IMAGE_ID: face['record'].image_id, features.FACE_SIZE: face['face_size'],
           features.IMAGE: images.encode_jpeg(treatment.equalize(face['aligned'], params),
                                              params.jpeg_quality)}
          for face in aligned]


def feature_table(examples: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
  """Mean processing feature per class:source over every example (what the probe reads)."""
  groups: Dict[str, List[np.ndarray]] = {}
  for example in examples:
    key = f"{features.LABEL_NAMES[example[features.LABEL]]}:{example[features.SOURCE]}"
    groups.setdefault(key, []).append(shortcut.processing_features(example[features.IMAGE],
                                                                   example[features.FACE_SIZE]))
  return {key: dict(zip(PROCESSING_NAMES, np.round(np.mean(rows, axis=0), 4).tolist()))
          for key, rows in sorted(groups.items())}


def pair_aucs(examples: List[Dict[str, Any]], folds: int, seed: int) -> Dict[str, float]:
  """The `jpeg_history` probe's AUC for every two class:source groups, one against the other.

  Every example of each group, no pooling: which collections the features tell apart
  (the same collection's two classes are the control: same processing, other content).
  """
  groups: Dict[str, List[np.ndarray]] = {}
  for example in examples:
    key = f"{features.LABEL_NAMES[example[features.LABEL]]}:{example[features.SOURCE]}"
    groups.setdefault(key, []).append(shortcut.jpeg_history_features(example[features.IMAGE]))
  stacked = {key: np.stack(rows) for key, rows in sorted(groups.items())}
  return {f'{a} vs {b}': round(shortcut.probe_auc(stacked[a], stacked[b], folds, seed), 3)
          for a, b in itertools.combinations(stacked, 2)}


def probe(examples: List[Dict[str, Any]], gate_config, seed: int,
          shuffle: bool = True) -> Dict[str, Dict[str, Any]]:
  """{one-class source: its DataGate row} with the gate's config at probe seed `seed`.

  A subsample per seed: the gate's hash sample of `max_examples_per_source` per class and
  source at that seed, its folds, and (`shuffle`) the records in an order salted by it.
  """
  gate_config = dataclasses.replace(gate_config, seed=seed)
  if shuffle:
    # The split's record order is the writer's (shards), and the pooled other class takes
    # its sources' first samples in that order: each subsample orders them by another salt.
    examples = sorted(examples, key=lambda e: hashlib.sha256(
        f'order{seed}/{e[features.IMAGE_ID]}'.encode('utf-8')).hexdigest())
  counts, samples = shortcut.sample_by_class_and_source(
      examples, gate_config.max_examples_per_source, seed)
  _, rows = shortcut.single_class_rows(shortcut.sources_by_class(counts), samples, gate_config)
  return {row['source']: row for row in rows}


def read_ingested(examples_dir: str) -> List[Dict[str, Any]]:
  """The train split FaceExampleGen wrote (`.../examples/N`), in file order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only this check needs it)
  files = sorted(tf.io.gfile.glob(os.path.join(examples_dir, 'Split-train', '*')))
  rows = []
  for raw in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    feature = tf.train.Example.FromString(raw.numpy()).features.feature
    rows.append({features.LABEL: int(feature[features.LABEL].int64_list.value[0]),
                 features.SOURCE: feature[features.SOURCE].bytes_list.value[0].decode(),
                 features.IMAGE_ID: feature[features.IMAGE_ID].bytes_list.value[0].decode(),
                 features.FACE_SIZE: int(feature[features.FACE_SIZE].int64_list.value[0]),
                 features.IMAGE: feature[features.IMAGE].bytes_list.value[0]})
  return rows


def check_ingested(config, records, args) -> int:
  """Are this bench's examples the ingested ones (same bytes), and the gate's AUCs on them?"""
  ingested = read_ingested(args.check_ingested)
  params = dataclasses.replace(config.ingest.face, **CANDIDATES[args.candidates.split(',')[0]])
  ours = {e[features.IMAGE_ID]: e for e in treat(load_aligned(records, args.cache), params)}
  same = sum(ours.get(e[features.IMAGE_ID], {}).get(features.IMAGE) == e[features.IMAGE]
             for e in ingested)
  print(f'{len(ingested)} ingested train examples, {len(ours)} here, {same} byte-identical')
  in_file_order = [ours.get(e[features.IMAGE_ID], e) for e in ingested]
  for name, examples in (('ingested', ingested), ('bench, file order', in_file_order)):
    rows = probe(examples, config.validation.source_shortcut,
                 config.validation.source_shortcut.seed, shuffle=False)
    print(name, {source: row['auc'] for source, row in rows.items()})
    for row in rows.values():
      print(f"  {row['status']}: {row.get('verdict', row.get('finding'))}")
  return 0


def measure(config, records, args) -> int:
  aligned = load_aligned(records, args.cache)
  print(f'{len(aligned)} aligned train faces of {len(records)} train inputs cached', flush=True)
  seeds = [int(s) for s in args.seeds.split(',')]
  gate_config = config.validation.source_shortcut
  results = []
  for name in args.candidates.split(','):
    params = dataclasses.replace(config.ingest.face, **CANDIDATES[name])
    examples = treat(aligned, params)
    rows = {seed: probe(examples, gate_config, seed) for seed in seeds}
    result = {'candidate': name, 'changes': CANDIDATES[name],
              'auc': {source: [rows[seed][source]['auc'] for seed in seeds]
                      for source in sorted(rows[seeds[0]])},
              'auc_by_features': {source: [rows[seed][source].get('auc_by_features')
                                           for seed in seeds] for source in sorted(rows[seeds[0]])},
              'probed': {source: rows[seeds[0]][source]['probed'] for source in rows[seeds[0]]},
              'feature_means': feature_table(examples) if args.feature_means else None,
              'pair_aucs': pair_aucs(examples, gate_config.folds, seeds[0]) if args.pairs
                           else None}
    results.append(result)
    cells = '  '.join(f"{source} {' / '.join(f'{a:.3f}' for a in aucs)} (max {max(aucs):.3f})"
                      for source, aucs in result['auc'].items())
    print(f'{name:>12}  {cells}', flush=True)
    for pair, auc in (result['pair_aucs'] or {}).items():
      print(f"{'':>14}{pair:<34} {auc:.3f}")
    if args.feature_means:
      for key, means in result['feature_means'].items():
        print(f"{'':>14}{key:<18} " + ' '.join(f'{k} {v:+.3f}' for k, v in means.items()))
  summary = {'config': os.path.relpath(args.config, ROOT), 'limit_per_source': args.limit_per_source,
             'output_size': config.ingest.face.output_size, 'train_inputs': len(records), 'aligned_faces': len(aligned), 'seeds': seeds,
             'max_probe_auc': gate_config.max_probe_auc,
             'max_examples_per_source': gate_config.max_examples_per_source,
             'load_average': os.getloadavg(), 'results': results}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  if os.path.exists(args.out):
    # Rows of other candidates measured alike (same inputs, alignment and seeds) are kept.
    with open(args.out) as f:
      before = json.load(f)
    same = all(before.get(k) == summary[k] for k in ('config', 'limit_per_source',
                                                     'output_size', 'seeds'))
    if same:
      names = {r['candidate'] for r in results}
      summary['results'] = [r for r in before['results'] if r['candidate'] not in names] + results
  with open(args.out, 'w') as f:
    json.dump(summary, f, indent=2)
  print(f'wrote {args.out}')
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=CONFIG)
  parser.add_argument('--limit-per-source', type=int, default=600)
  parser.add_argument('--cache', default=CACHE)
  parser.add_argument('--output-size', type=int, default=0,
                      help="ingest.face.output_size to align at (0: the config's)")
  parser.add_argument('--align', action='store_true', help='only align and cache (step 1)')
  parser.add_argument('--shard', default='0/1', help='k/n: align every n-th input from k')
  parser.add_argument('--reverse', action='store_true',
                      help="align the shard's inputs from its end (a second process on it)")
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--candidates', default=','.join(CANDIDATES))
  parser.add_argument('--feature-means', action='store_true',
                      help='print the mean processing feature per class and source')
  parser.add_argument('--pairs', action='store_true',
                      help='the jpeg_history probe for every two class:source groups')
  parser.add_argument('--check-ingested', default='',
                      help="FaceExampleGen's examples dir of a run with this config: compare "
                      'its train split with the first candidate (bytes, probe AUC)')
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results',
                                                    'processing_match.json'))
  args = parser.parse_args(argv)
  config, records = train_inputs(args.config, args.limit_per_source)
  if args.output_size:
    # Aligned at another side: its own cache; every candidate's fields apply on top.
    config.ingest.face = dataclasses.replace(config.ingest.face, output_size=args.output_size)
    args.cache = os.path.join(args.cache, f'output{args.output_size}')
  if args.align:
    shard, shards = (int(v) for v in args.shard.split('/'))
    align_inputs(config, records, args.cache, shard, shards, args.reverse)
    return 0
  if args.check_ingested:
    return check_ingested(config, records, args)
  return measure(config, records, args)


if __name__ == '__main__':
  sys.exit(main())
