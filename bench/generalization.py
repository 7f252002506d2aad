"""Generalisation bench: detectors that transfer across generators and stay fair on unseen reals.

Which training data and model make a detector that transfers across
generators -- StyleGAN2 (`gan_faces`), StyleGAN (`k140`), Stable Diffusion 2.1
(`sdfd`) -- and is fair on a real-photo collection it never saw (FairFace,
UTKFace)? Three models on the same crops, splits and columns: a head on frozen
CLIP ViT-B/16 embeddings (train.architecture clip_vit_b16), the paper's CNN as
pipeline/configs/shared_data.yaml trains it, and the fused model (the two
stacked). The decision rule is docs/detection_quality.md, "Generalisation with
the CLIP backbone: decision rule".

Two stages:

* `prepare`: every sampled input becomes the crop the pipeline would write
  (the ingestion's own FacePreparer, output 128 px, JPEG q95): the GAN sources
  `align: none` as in pipeline/configs/shared_data.yaml, SDFD, FairFace and
  UTKFace through dlib (`hog+cnn`, the pipeline's detector chain); then each
  crop is embedded by the image encoder's Embedder (the serving signatures' decode,
  the float32 Keras tower) through the Trainer's embedding cache
  (`--cache`, default /work/cache/clip, outside the repository and shared).
  Crops and their metadata go to /work/cache/generalization/crops.pkl (WORK).
  Resumable: the cache keeps every finished batch.
* `rows`: heads (backbone.build_head, the Trainer's linear and mlp heads)
  trained on the cached embeddings, seconds per row; CNN rows, each trained by
  the Trainer's `module.train_cnn` with shared_data.yaml's `train:` block on
  the row's crops written as tf.Examples (~7.5 minutes a row on the shared
  2 cores at load 8; its logits kept in WORK/logits, so a rerun costs
  nothing); fused rows, the CNN's and the CLIP head's logits of the same
  fakes and reals stacked by the fused model's own fit (fused.fit_stacking, on
  the row's eval split). Prints the table and writes
  bench/results/generalization.json.

Sample (fixed seed 0), split as the rows use it (train / eval / test):
  gan_faces  its own splits, 150 / 30 / 50 per class (128 px, FFHQ-aligned);
  k140       its own splits, 150 / 30 / 50 per class (256 px -> 128);
  sdfd       300 of its 600 fakes, 45 / 10 / 45 % (`--sdfd-all`: the other 300 to test);
  fairface   120 of train (80 / 20 %, training reals) and 280 of val (audit);
  utkface    280 of 3,000: 100 training reals (80 / 20 %), 180 audit.
About 1,900 faces: the tower costs ~0.55 s a face on 2 idle cores and ~1.8 s on the
shared machine at load 7-8 (measured while this bench ran).
Larger samples: raise the counts in `inputs()`; prepared crops and embeddings are reused.
The operating point of a row is the threshold giving FPR 0.05 on its own eval
reals (the eval shares of the real sources it trains on).

  nice -n 10 .venv/bin/python bench/generalization.py prepare
  nice -n 10 .venv/bin/python bench/generalization.py rows [--epochs 40] [--cached-cnn-only]
  nice -n 10 .venv/bin/python bench/generalization.py rows --models cnn --cnn-reals +utkface

Concept erasure (`rows --erasure`): the mlp head at five seeds with levers that
erase, by LEACE fitted on the row's training data, the collection of each training
real (`erase`), FFHQ's two preparations only (`erase_ffhq`), and then the generator
of each training fake (`erase+generator`); one direction of training reals per run,
~8 minutes each at load 5, results in bench/results/generalization_erasure_*.json:

  nice -n 10 .venv/bin/python bench/generalization.py rows --erasure --reals +utkface
  nice -n 10 .venv/bin/python bench/generalization.py rows --erasure --reals +fairface
  nice -n 10 .venv/bin/python bench/generalization.py rows --erasure --levers ,erase_ffhq \
      --out bench/results/generalization_erasure_ffhq.json
  .venv/bin/python bench/generalization.py erasure-table   # the docs' tables
  .venv/bin/python bench/generalization.py collection-probe

A head ensemble against seed variance (`rows --ensemble`): the committed configuration's mlp
head (FFHQ + UTKFace reals) single at seeds 42-46, early-stopped on the eval split at the same
seeds, and as five ensembles of five heads (seeds 42-46, 47-51, ... 62-66, logits averaged);
each with its LOGO twins: 60 rows, 120 heads (the first ensemble's members are the single-head
rows, trained once), 474 s at load 3; results in bench/results/generalization_ensemble.json:

  nice -n 10 .venv/bin/python bench/generalization.py rows --ensemble
  .venv/bin/python bench/generalization.py erasure-table bench/results/generalization_ensemble.json

A larger FairFace audit (`--fairface-audit N`): the audit (test split) grows to N faces per race x
gender group, the added faces drawn from FairFace photos no other input uses (`fairface_audit_extra`),
every other input, split and threshold unchanged; crops in their own file, results beside the
sample's (`_auditN`). 70 a group (700 more faces): 92 s of dlib and 247 s of the tower at load 3:

  nice -n 10 .venv/bin/python bench/generalization.py prepare --fairface-audit 70
  nice -n 10 .venv/bin/python bench/generalization.py rows --ensemble --fairface-audit 70
  .venv/bin/python bench/generalization.py audit-table bench/results/generalization_ensemble_audit70.json

The confirmatory rows (`--single-seeds`, `--ensemble-seeds`; docs/detection_quality.md, "A head
ensemble on fresh seeds: confirmatory rule"): the single head at fresh seeds and an ensemble of
each five consecutive seeds, judged by `confirm_verdict` (means over the draws, unpaired):

  nice -n 10 .venv/bin/python bench/generalization.py rows --ensemble --fairface-audit 70 \
      --single-seeds 100-109 --ensemble-seeds 200-239
  .venv/bin/python bench/generalization.py erasure-table \
      bench/results/generalization_ensemble_confirm_audit70.json

SDFD's prompted groups (docs/detection_quality.md, "SDFD's prompted groups caught alike: decision
rule"): `--sdfd-all` adds SDFD's other 300 fakes to its test split (435 test fakes, 35-59 a prompted
race; training and eval unchanged; crops and results in their own files, `_sdfd_all`), and the
sample-weight levers of `sample_weights` are judged by `parity_verdict` (80 rows, 427-670 s at
load 5-7):

  nice -n 10 .venv/bin/python bench/generalization.py prepare --fairface-audit 70 --sdfd-all
  nice -n 10 .venv/bin/python bench/generalization.py rows --erasure --reals +utkface \
      --levers ,balance_sources,sdfd_x3,sdfd_groups --fairface-audit 70 --sdfd-all \
      --out bench/results/generalization_parity_audit70_sdfd_all.json
  .venv/bin/python bench/generalization.py erasure-table \
      bench/results/generalization_parity_audit70_sdfd_all.json

Views of the training crops (docs/detection_quality.md, "Augmented views for the CLIP head"):
`prepare --views flip,history` embeds each training crop's views once into the same cache
(0.75-0.9 s a view at load 5); `rows --views ...` trains the --heads (default mlp) on the
crops and their views (five seeds, the LOGO and single-source rows), keeps the rows already
in its --out (bench/results/generalization_views.json) and prints the rule's verdict per
setting.

  nice -n 10 .venv/bin/python bench/generalization.py prepare --views history,flip
  nice -n 10 .venv/bin/python bench/generalization.py rows \
      --views none,flip,history,flip+history --heads mlp,linear
"""

import argparse
import csv
import glob
import json
import math
import os
import pickle
import random
import re
import sys
import time
from typing import Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

DATA = os.environ.get('FACES_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
CACHE = '/work/cache/clip'
# Crops, the CNN rows' logits and training runs: outside the repository, beside the
# embedding cache, so they outlive a checkout (crops cost ~5 minutes of dlib, a CNN row minutes).
WORK = '/work/cache/generalization'
CROPS = os.path.join(WORK, 'crops.pkl')
# The CNN rows train as this configuration's `train:` block (the shipped shared-data CNN).
CNN_CONFIG = os.path.join(ROOT, 'pipeline', 'configs', 'shared_data.yaml')
OUT = os.path.join(ROOT, 'bench', 'results', 'generalization.json')
ERASURE_OUT = os.path.join(ROOT, 'bench', 'results', 'generalization_erasure.json')
ENSEMBLE_OUT = os.path.join(ROOT, 'bench', 'results', 'generalization_ensemble.json')
CONFIRM_OUT = os.path.join(ROOT, 'bench', 'results', 'generalization_ensemble_confirm.json')
VIEWS_OUT = os.path.join(ROOT, 'bench', 'results', 'generalization_views.json')
GAN, K140, SDFD, FAIRFACE, UTK, FFHQ = 'gan_faces', 'k140', 'sdfd', 'fairface', 'utkface', 'ffhq'
GENERATORS = (GAN, K140, SDFD)
TRAIN, EVAL, TEST = 'train', 'eval', 'test'
TARGET_FPR = 0.05
# FairFace in the sample: the first FAIRFACE_TRAIN of train in the shuffled order (training
# reals, 80 / 20 %) and the first FAIRFACE_AUDIT of val (audit); `--fairface-audit` adds to the latter.
FAIRFACE_TRAIN, FAIRFACE_AUDIT = 120, 280
# SDFD's first fakes in the shuffled order (45 / 10 / 45 %); `--sdfd-all` adds the rest to test.
SDFD_SAMPLE = 300
MIN_GROUP = 15  # groups under this many photos are reported, not judged (decision rule)
# Goals of issue 33 (docs/detection_quality.md, G1-G5).
WITHIN_AUC, LOGO_AUC, LOGO_TPR = 0.97, 0.90, 0.85
AUDIT_FPR, AUDIT_GROUP_FPR, SDFD_GROUP_GAP = 0.03, 0.05, 0.05


# ------------------------------------------------------------------ prepare

def _shuffled(items: Sequence, seed: int = 0) -> list:
  items = sorted(items)
  random.Random(seed).shuffle(items)
  return items


def _by_share(items: list, shares: Sequence[float]) -> List[list]:
  """`items` cut in consecutive parts of the given shares (the last takes the rest)."""
  parts, start = [], 0
  for share in shares[:-1]:
    end = start + int(round(share * len(items)))
    parts.append(items[start:end])
    start = end
  return parts + [items[start:]]


def inputs(fairface_audit: int = 0, sdfd_all: bool = False) -> List[dict]:
  """The sampled inputs: dicts with path, source, split, label (0 real, 1 fake), gender, race.

  Args:
    fairface_audit: 0 for the sample above; N > 0 enlarges only the FairFace audit (test
      split) to N faces per race x gender group (`fairface_audit_extra`), every other input
      the same.
    sdfd_all: SDFD's other 300 fakes join its test split (435 test fakes, 33-68 a prompted
      race), every other input the same; last in the list.
  """
  rows = []
  gan_split = {'train': TRAIN, 'valid': EVAL, 'test': TEST}
  for source, root, counts in (
      (GAN, os.path.join(DATA, 'gan_faces'), {'train': 150, 'valid': 30, 'test': 50}),
      (K140, os.path.join(DATA, 'k140', 'real_vs_fake', 'real-vs-fake'),
       {'train': 150, 'valid': 30, 'test': 50})):
    for folder, count in counts.items():
      for label, name in ((0, 'real'), (1, 'fake')):
        paths = _shuffled(glob.glob(os.path.join(root, folder, name, '*.jpg')))
        for path in paths[:count or None]:
          rows.append(dict(path=path, source=source, split=gan_split[folder], label=label,
                           gender='unknown', race='unknown'))
  with open(os.path.join(DATA, 'sdfd', 'labels.csv')) as f:
    sdfd = _shuffled([tuple(r.items()) for r in csv.DictReader(f)])
  for split, part in zip((TRAIN, EVAL, TEST), _by_share(sdfd[:SDFD_SAMPLE], (0.45, 0.1, 0.45))):
    rows += [_sdfd_row(dict(r), split) for r in part]
  fairface = _fairface_labelled()
  for folder, count in (('train', FAIRFACE_TRAIN), ('val', FAIRFACE_AUDIT)):
    labelled = fairface[folder][:count]
    parts = (zip((TRAIN, EVAL), _by_share(labelled, (0.8, 0.2))) if folder == 'train'
             else [(TEST, labelled)])
    for split, part in parts:
      for r in map(dict, part):
        rows.append(_fairface_row(r, split))
  with open(os.path.join(DATA, 'utkface', 'labels.csv')) as f:
    utk = _shuffled([tuple(r.items()) for r in csv.DictReader(f)])[:280]
  train_half, audit_half = utk[:100], utk[100:]
  for split, part in list(zip((TRAIN, EVAL), _by_share(train_half, (0.8, 0.2)))) + [
      (TEST, audit_half)]:
    for r in map(dict, part):
      # UTKFace's own race label (White, Black, Asian, Indian, Others): FairFace's vocabulary
      # has no single 'Asian', and the audit groups should cover every photo.
      rows.append(dict(path=os.path.join(DATA, 'utkface', r['path']), source=UTK, split=split,
                       label=0, gender=r['gender'], race=r['utk_race']))
  if fairface_audit:  # last: every other input keeps its place
    rows += [_fairface_row(dict(r), TEST)
             for r in fairface_audit_extra(fairface, fairface_audit)]
  if sdfd_all:
    rows += [_sdfd_row(dict(r), TEST) for r in sdfd[SDFD_SAMPLE:]]
  return rows


def _sdfd_row(r: dict, split: str) -> dict:
  return dict(path=os.path.join(DATA, 'sdfd', r['path']), source=SDFD, split=split, label=1,
              gender=r['gender'], race=r['race'])


def _fairface_labelled() -> Dict[str, list]:
  """FairFace's label rows (tuples of (column, value)) per folder, train and val, shuffled."""
  labelled = {}
  for folder in ('train', 'val'):
    with open(os.path.join(DATA, 'fairface', f'fairface_label_{folder}.csv')) as f:
      labelled[folder] = _shuffled([tuple(r.items()) for r in csv.DictReader(f)])
  return labelled


def _fairface_row(r: dict, split: str) -> dict:
  return dict(path=os.path.join(DATA, 'fairface', r['file']), source=FAIRFACE, split=split,
              label=0, gender=r['gender'], race=r['race'])


def fairface_audit_extra(fairface: Dict[str, list], per_group: int) -> list:
  """FairFace faces that enlarge the audit to `per_group` faces per race x gender group.

  Drawn in the sample's shuffled order: the rest of val (43 faces a group in all, so val
  alone reaches 43), then train after its first FAIRFACE_TRAIN faces (the `+fairface` rows'
  training reals), each taken while its group holds fewer than `per_group` audit faces
  (the sample's FAIRFACE_AUDIT val faces count). Disjoint from every other FairFace input.

  Args:
    fairface: `_fairface_labelled()`.
    per_group: the audit's faces per race x gender group.

  Returns:
    The added label rows (tuples of (column, value)), in drawing order.

  Raises:
    ValueError: FairFace holds too few unused faces of a group.
  """
  def group(r):
    return dict(r)['race'], dict(r)['gender']

  held: Dict[tuple, int] = {}
  for r in fairface['val'][:FAIRFACE_AUDIT]:
    held[group(r)] = held.get(group(r), 0) + 1
  extra = []
  for r in fairface['val'][FAIRFACE_AUDIT:] + fairface['train'][FAIRFACE_TRAIN:]:
    if held.get(group(r), 0) < per_group:
      held[group(r)] = held.get(group(r), 0) + 1
      extra.append(r)
  short = {g: n for g, n in held.items() if n < per_group}
  if short:
    raise ValueError(f'FairFace ({DATA}/fairface) has fewer than {per_group} unused faces in '
                     f'groups {sorted(short)}')
  return extra


def crops_file(fairface_audit: int = 0, sdfd_all: bool = False) -> str:
  """Where `prepare` keeps the crops of `inputs(fairface_audit, sdfd_all)` (the sample's: CROPS)."""
  return CROPS.replace('.pkl', (f'_fairface_audit{fairface_audit}' if fairface_audit else '')
                       + ('_sdfd_all' if sdfd_all else '') + '.pkl')


def _save(rows: List[dict], path: str = CROPS) -> None:
  """The crops so far to `path` (a rerun prepares only the others)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'wb') as f:
    pickle.dump(rows, f)
  os.replace(path + '.tmp', path)


def prepare(cache: str, fairface_audit: int = 0, views: Sequence[str] = (),
            sdfd_all: bool = False, image_size: int = 224) -> int:
  """Crops of every input as the pipeline would write them, their cached embeddings, and
  those of `views` of the training crops (embed_views).

  With `fairface_audit` or `sdfd_all` (`inputs`), to their own file (`crops_file`), reusing the
  crops of the sample and of the same audit without `sdfd_all`.
  `image_size`: the tower's input side (train.image_size); other than 224 the embeddings go to
  that size's own cache folder and the summary to its own file (`prepare_file`).
  """
  from fakefaces.components.face_preparation.faces import FacePreparation, FacePreparer
  from fakefaces.components.image_encoder import clip_weights, embedding_cache
  from fakefaces.components.image_encoder.embedder import Embedder
  from fakefaces.components.trainer.config import TrainConfig

  preparers = {'none': FacePreparer(FacePreparation(align='none', output_size=128)),
               'dlib': FacePreparer(FacePreparation(align='dlib', detector='hog+cnn',
                                                    output_size=128))}
  done, path = {}, crops_file(fairface_audit, sdfd_all)
  for done_path in sorted({CROPS, crops_file(fairface_audit), path}):
    if os.path.exists(done_path):
      with open(done_path, 'rb') as f:
        done.update({r['path']: r for r in pickle.load(f)})
  rows, missed, start = [], [], time.time()
  todo = inputs(fairface_audit, sdfd_all)
  for i, r in enumerate(todo):
    if r['path'] in done:
      rows.append(dict(r, image=done[r['path']]['image']))
      continue
    with open(r['path'], 'rb') as f:
      data = f.read()
    preparer = preparers['none' if r['source'] in (GAN, K140) else 'dlib']
    try:
      photo = preparer.prepare(data, all_faces=False)
    except Exception as e:  # one bad photo is reported, never the end of the run  # pylint: disable=broad-except
      missed.append((r['path'], str(e)))
      continue
    if not photo.faces:
      missed.append((r['path'], photo.no_face_reason))
      continue
    rows.append(dict(r, image=photo.faces[0].encoded))
    if i % 200 == 0:
      _save(rows, path)
      print(f'{i}/{len(todo)} prepared, {len(missed)} without a face, {time.time() - start:.0f} s',
            flush=True)
  _save(rows, path)
  prepared_s = time.time() - start
  print(f'{len(rows)} crops, {len(missed)} without a face, {prepared_s:.0f} s -> {path}',
        flush=True)
  config = TrainConfig(architecture='clip_vit_b16', image_size=image_size, color_mode='rgb',
                       embedding_cache_dir=cache)
  embedder = Embedder(config)
  start, computed, reused = time.time(), 0, 0
  for source in (SDFD, FAIRFACE, UTK, GAN, K140):
    # The cache read again per source: another process may have embedded some meanwhile.
    embedder.cache = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256, image_size)
    images = [r['image'] for r in rows if r['source'] == source]
    embedder(images, batch_size=32)
    computed, reused = computed + embedder.cache.computed, reused + embedder.cache.reused
    print(f'{source}: {len(images)} embedded ({embedder.cache.computed} computed), '
          f'{time.time() - start:.0f} s', flush=True)
  summary = {'crops': len(rows), 'without_face': len(missed), 'missed': missed[:50],
             'prepare_seconds': round(prepared_s), 'embed_seconds': round(time.time() - start),
             'computed': computed, 'reused': reused, 'cache': embedder.cache.folder,
             'image_size': image_size, 'load_avg': round(os.getloadavg()[0], 2)}
  with open(prepare_file(fairface_audit, sdfd_all, image_size), 'w') as f:
    json.dump(summary, f, indent=1)
  if views:
    embed_views(rows, views, embedder, cache)
  return 0


# ------------------------------------------------------------------ views

# A view's index in its seed: each example draws each view from its own stream.
VIEW_INDEX = {'flip': 1, 'history': 2}


def view_images(images: Sequence[bytes], kind: str, config) -> List[bytes]:
  """PNG bytes of each encoded crop's `kind` view, at the crop's own size.

  'flip': mirrored left-right. 'history': augment.augment_history with
  `config`'s augment_* settings (the CNN's: CNN_CONFIG), seeded by the crop's
  sha256 and the view's index, so a crop always gets the same view and a
  changed crop another. PNG keeps the view's pixels (its JPEG generations
  included) exactly; the cache keys on these bytes, so a view never shares an
  entry with its unaugmented crop.
  """
  import hashlib
  import tensorflow as tf
  from fakefaces.components.trainer import augment
  out = []
  for data in images:
    image = tf.image.convert_image_dtype(tf.io.decode_image(data, channels=3,
                                                            expand_animations=False), tf.float32)
    if kind == 'flip':
      image = tf.image.flip_left_right(image)
    elif kind == 'history':
      seed = tf.constant([int(hashlib.sha256(data).hexdigest()[:15], 16), VIEW_INDEX[kind]],
                         tf.int64)
      image = augment.augment_history(image, seed, config)
    else:
      raise ValueError(f'view {kind!r} is not one of {list(VIEW_INDEX)}')
    out.append(tf.io.encode_png(tf.image.convert_image_dtype(image, tf.uint8,
                                                             saturate=True)).numpy())
  return out


def embed_views(rows: List[dict], views: Sequence[str], embedder, cache: str) -> None:
  """Each view of every training crop embedded once into the cache (resumable, per batch)."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache
  config = cnn_config()
  train = [r['image'] for r in rows if r['split'] == TRAIN]
  start = time.time()
  for kind in views:
    for i in range(0, len(train), 64):
      embedder.cache = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256)
      embedder(view_images(train[i:i + 64], kind, config), batch_size=32)
      print(f'view {kind}: {min(i + 64, len(train))}/{len(train)} embedded '
            f'({embedder.cache.computed} computed), {time.time() - start:.0f} s, '
            f'load {os.getloadavg()[0]:.1f}', flush=True)



# ------------------------------------------------------------------ rows

REALS = {'ffhq': (FFHQ,), '+fairface': (FFHQ, FAIRFACE), '+utkface': (FFHQ, UTK),
         '+fairface+utkface': (FFHQ, FAIRFACE, UTK)}
# The real collection a reals set never trained on: G3's audit (FairFace is G4's, always).
UNSEEN = {'ffhq': (FAIRFACE, UTK), '+fairface': (UTK,), '+utkface': (FAIRFACE,),
          '+fairface+utkface': ()}


# The CNN rows' training reals, in the order they run: the chosen configuration's first.
CNN_REALS = ('+utkface', 'ffhq', '+fairface')
CLIP_HEADS = ('linear', 'mlp')
# The decision rule's last tie-break, the simpler model first: it orders the two heads
# (linear before mlp); the CNN and the fused models (a CNN plus a head) come after them.
SIMPLICITY = ('linear', 'mlp', 'cnn', 'fused linear', 'fused mlp')
SEED = 42  # the CLIP heads' seed (initialisation and shuffling) unless a row names another
FAKE_SETS = (GENERATORS, (GAN, K140), (K140, SDFD), (GAN, SDFD))
# The erasure rows (docs/detection_quality.md, "Linear concept erasure of the training reals'
# collection: decision rule (written before the bench runs)"): the committed configuration's head
# and both directions of reals, each lever at five seeds.
ERASURE_REALS = ('+utkface', '+fairface')
ERASURE_LEVERS = ('', 'erase', 'reweight', 'reweight+erase', 'erase+generator')
ERASURE_SEEDS = (42, 43, 44, 45, 46)
# The ensemble rows (docs/detection_quality.md, "A head ensemble against seed variance: decision
# rule (written before the bench runs)"): the committed configuration, five draws of each model;
# ensemble k of seeds 42 + 5k ... 46 + 5k, so no two ensembles share a head.
ENSEMBLE_REALS = '+utkface'
ENSEMBLE_SIZE = 5
ENSEMBLE_LEVERS = ('', 'early_stop', f'ensemble{ENSEMBLE_SIZE}')
# The views rows (docs/detection_quality.md, "Augmented views for the CLIP head: decision
# rule"): the shipped configuration (mlp, FFHQ + UTKFace reals) with each setting of views
# of its training crops, its LOGO twins and the two single-source rows (cross-source AUC).
VIEW_SETTINGS = ('none', 'flip', 'history', 'flip+history')
VIEW_SEEDS = (42, 1, 2, 3, 4)
VIEW_REALS = '+utkface'


def _named(spec: dict) -> dict:
  prefix = {'clip': spec['head'], 'cnn': 'cnn', 'fused': f"fused(cnn+{spec['head'][6:]})"}
  spec['name'] = (f"{prefix[spec['model']]} fakes={'+'.join(spec['fakes'])} reals={spec['reals']}"
                  + (f" {spec['lever']}" if spec['lever'] else '')
                  + (f" views={spec['views']}" if spec.get('views', 'none') != 'none' else '')
                  + (f" seed={spec['seed']}" if spec.get('seed', SEED) != SEED else ''))
  return spec


def row_specs() -> List[dict]:
  """Every row: model (CLIP head, CNN, fused) x training fakes x training reals x lever.

  A configuration (model, reals, lever) trained on all three generators has its
  leave-one-generator-out rows beside it (the same, minus one generator); the
  rows without `sdfd` are both the "GAN fakes only" rows and its LOGO-sdfd rows.
  The fused rows stack the CNN row and the CLIP head row of the same fakes and reals.
  """
  fake_sets = FAKE_SETS
  specs = []
  for head in CLIP_HEADS:
    for reals in ('ffhq', '+fairface', '+utkface'):
      for lever in ('', 'reweight'):
        if lever and reals == 'ffhq':
          continue  # one real group: nothing to reweight
        for fakes in fake_sets:
          specs.append(dict(model='clip', head=head, fakes=fakes, reals=reals, lever=lever))
    specs.append(dict(model='clip', head=head, fakes=GENERATORS, reals='+fairface+utkface',
                      lever=''))
  for reals in CNN_REALS:
    for fakes in fake_sets:
      specs.append(dict(model='cnn', head='cnn', fakes=fakes, reals=reals, lever=''))
      specs += [dict(model='fused', head=f'fused {head}', fakes=fakes, reals=reals, lever='')
                for head in CLIP_HEADS]
  return [_named(spec) for spec in specs]


def erasure_specs(seeds: Sequence[int] = ERASURE_SEEDS,
                  reals_sets: Sequence[str] = ERASURE_REALS,
                  levers: Sequence[str] = ERASURE_LEVERS) -> List[dict]:
  """The erasure rows: the mlp head x reals_sets x levers x the four fake sets x seeds."""
  return [_named(dict(model='clip', head='mlp', fakes=fakes, reals=reals, lever=lever, seed=seed))
          for seed in seeds for reals in reals_sets for lever in levers for fakes in FAKE_SETS]


def ensemble_specs(single_seeds: Sequence[int] = (),
                   ensemble_seeds: Sequence[int] = ()) -> List[dict]:
  """The ensemble rows: the single head and the early-stopped head at the erasure rows' seeds,
  and five `ensembleN` rows whose seeds start ENSEMBLE_SIZE apart; each with its LOGO twins.

  With `single_seeds` (the confirmatory rows, `confirm_verdict`): the single head at those seeds
  and an `ensembleN` row of each ENSEMBLE_SIZE consecutive `ensemble_seeds`, no early stopping.

  Raises:
    ValueError: `ensemble_seeds` are not runs of ENSEMBLE_SIZE consecutive seeds.
  """
  ensemble = f'ensemble{ENSEMBLE_SIZE}'
  if not single_seeds:
    single = [l for l in ENSEMBLE_LEVERS if l != ensemble]
    return (erasure_specs(ERASURE_SEEDS, (ENSEMBLE_REALS,), single)
            + erasure_specs([ERASURE_SEEDS[0] + ENSEMBLE_SIZE * k
                             for k in range(len(ERASURE_SEEDS))], (ENSEMBLE_REALS,), (ensemble,)))
  firsts = list(ensemble_seeds[::ENSEMBLE_SIZE])
  if not firsts or list(ensemble_seeds) != [s + i for s in firsts for i in range(ENSEMBLE_SIZE)]:
    raise ValueError(f'--ensemble-seeds {list(ensemble_seeds)}: not runs of {ENSEMBLE_SIZE} '
                     'consecutive seeds')
  return (erasure_specs(single_seeds, (ENSEMBLE_REALS,), ('',))
          + erasure_specs(firsts, (ENSEMBLE_REALS,), (ensemble,)))


def view_specs(settings: Sequence[str] = VIEW_SETTINGS, seeds: Sequence[int] = VIEW_SEEDS,
               heads: Sequence[str] = ('mlp',)) -> List[dict]:
  """The views rows: heads x settings x seeds x (FAKE_SETS and gan_faces, k140 alone)."""
  return [_named(dict(model='clip', head=head, fakes=fakes, reals=VIEW_REALS, lever='',
                      views=views, seed=seed))
          for head in heads for views in settings for seed in seeds
          for fakes in FAKE_SETS + ((GAN,), (K140,))]


def prepare_file(fairface_audit: int = 0, sdfd_all: bool = False,
                 image_size: int = 224) -> str:
  """The summary `prepare` writes beside its crops (`_<size>px` at a tower input other than 224)."""
  crops = crops_file(fairface_audit, sdfd_all)
  size = f'_{image_size}px' if image_size != 224 else ''
  return os.path.join(os.path.dirname(crops), os.path.basename(crops).replace(
      'crops', 'prepare').replace('.pkl', f'{size}.json'))


def load_embedded(cache: str, fairface_audit: int = 0,
                  sdfd_all: bool = False, image_size: int = 224) -> Dict[str, np.ndarray]:
  """Columns of every prepared crop with its embedding [n, 512] at the tower's `image_size`,
  read from the Trainer's cache."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache
  with open(crops_file(fairface_audit, sdfd_all), 'rb') as f:
    rows = pickle.load(f)

  def not_cached(batch):
    raise SystemExit(f'{len(batch)} crops have no cached embedding in {cache}: run '
                     '`bench/generalization.py prepare'
                     + (f' --fairface-audit {fairface_audit}' if fairface_audit else '')
                     + (' --sdfd-all' if sdfd_all else '')
                     + (f' --image-size {image_size}' if image_size != 224 else '') + '` first')

  vectors = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256, image_size).embed(
      [r['image'] for r in rows], not_cached, batch_size=len(rows))
  columns = {k: np.array([r[k] for r in rows]) for k in ('source', 'split', 'label', 'gender',
                                                         'race')}
  # The real source a row trains on: FFHQ for the GAN sources' reals.
  columns['real_source'] = np.where(np.isin(columns['source'], [GAN, K140]), FFHQ,
                                    columns['source'])
  added = ({r['path'] for r in inputs(fairface_audit)[len(inputs()):]} if fairface_audit
           else set())
  columns['audit_added'] = np.array([r['path'] in added for r in rows])  # `fairface_audit_extra`
  columns['x'] = vectors
  columns['image'] = np.array([r['image'] for r in rows], dtype=object)  # encoded crops
  return columns


def load_views(d: Dict[str, np.ndarray], kinds: Sequence[str], cache: str) -> None:
  """d['views'][kind]: each training crop's view embedding [n, 512] (NaN off the train split),
  read from the cache (`prepare --views` embeds them)."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache
  store = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256)
  train = d['split'] == TRAIN
  config = cnn_config()
  d['views'] = {}
  for kind in kinds:
    def not_cached(batch, kind=kind):
      raise SystemExit(f'{len(batch)} {kind} views have no cached embedding in {cache}: run '
                       f'`bench/generalization.py prepare --views {kind}` first')

    vectors = np.full(d['x'].shape, np.nan, np.float32)
    vectors[train] = store.embed(view_images(d['image'][train].tolist(), kind, config), not_cached,
                                 batch_size=int(train.sum()))
    d['views'][kind] = vectors


def selection(d: Dict[str, np.ndarray], spec: dict, split: str) -> np.ndarray:
  """Mask of the row's examples of `split`: fakes of its generators, reals of its real sources.

  FFHQ reals come only from the GAN sources among its fakes, so no source is all reals.
  """
  fakes = (d['label'] == 1) & np.isin(d['source'], spec['fakes'])
  reals = (d['label'] == 0) & np.isin(d['real_source'], REALS[spec['reals']]) & (
      (d['real_source'] != FFHQ) | np.isin(d['source'], spec['fakes']))
  return (d['split'] == split) & (fakes | reals)


def _spread(weights: np.ndarray, m: np.ndarray, groups: np.ndarray) -> None:
  """weights[m] (equal within m) spread equally over the values of groups[m], m's total
  unchanged: each example's weight times m's count over (values x its value's count)."""
  names, counts = np.unique(groups[m], return_counts=True)
  share = dict(zip(names, m.sum() / (len(names) * counts)))
  weights[m] *= np.array([share[g] for g in groups[m]], np.float32)


def sample_weights(d: Dict[str, np.ndarray], mask: np.ndarray, lever: str) -> np.ndarray:
  """The Trainer's class weights (data.class_weights), then each lever of `lever` ('+'-joined):

  * 'reweight': the reals of each diverse collection (FairFace, UTKFace) spread equally over
    its race x gender groups, the collection's total weight unchanged (FFHQ has no group
    labels and keeps its weights);
  * 'balance_sources': within each class, each source (gan_faces, k140, sdfd, utkface,
    fairface; the two GAN sources' FFHQ reals apart) the same total weight, the class's
    total unchanged;
  * 'sdfd_groups': SDFD's fakes spread equally over their prompted race x gender groups
    ('unknown', a prompt that named neither, is a value), their total unchanged;
  * 'sdfd_xK': SDFD's fakes K times their weight, then every fake rescaled so the class's
    total is unchanged (the weight comes from the GAN fakes).
  """
  from fakefaces.components.trainer import data
  labels = d['label'][mask]
  class_weight = data.class_weights({0: int((labels == 0).sum()), 1: int((labels == 1).sum())})
  weights = np.array([class_weight[int(l)] for l in labels], np.float32)
  levers = lever.split('+')
  groups = np.char.add(np.char.add(d['race'][mask].astype(str), ' x '),
                       d['gender'][mask].astype(str))
  if 'reweight' in levers:
    real_sources = d['real_source'][mask]
    for source in set(real_sources[labels == 0].tolist()) - {FFHQ}:
      _spread(weights, (labels == 0) & (real_sources == source), groups)
  if 'balance_sources' in levers:
    for label in (0, 1):
      _spread(weights, labels == label, d['source'][mask])
  boost = [float(l[len('sdfd_x'):]) for l in levers if l.startswith('sdfd_x')]
  sdfd = ((labels == 1) & (d['source'][mask] == SDFD) if boost or 'sdfd_groups' in levers
          else np.zeros(len(labels), bool))
  if 'sdfd_groups' in levers and sdfd.any():
    _spread(weights, sdfd, groups)
  if boost and sdfd.any():
    fakes = labels == 1
    total = weights[fakes].sum()
    weights[sdfd] *= boost[0]
    weights[fakes] *= total / weights[fakes].sum()
  return weights


def leace_eraser(x: np.ndarray, concept: np.ndarray):
  """LEACE: the affine map that leaves no linear trace of `concept` in `x`, changing x least.

  Belrose et al., "LEACE: Perfect linear concept erasure in closed form", NeurIPS 2023,
  Theorem 4.3: r(x) = x - W+ P W (x - mean), with W whitening x, P the orthogonal
  projection onto the column space of W cov(x, z) (z the concept's one-hot code) and W+
  unwhitening. On the fitted x every class of the concept then has the same mean, so no
  linear classifier separates them. W is taken from the Ledoit-Wolf shrunk covariance
  (fewer examples than dimensions here); any invertible W keeps that guarantee.

  Args:
    x: [n, d] embeddings the eraser is fitted on.
    concept: [n] the concept's label of each (at least two distinct values).

  Returns:
    (kernel [d, d], bias [d]) float32: the erased embeddings are x @ kernel + bias.
  """
  from sklearn.covariance import ledoit_wolf
  x = np.asarray(x, np.float64)
  names, codes = np.unique(np.asarray(concept), return_inverse=True)
  if len(names) < 2:
    raise ValueError(f'concept erasure needs two or more values of the concept, got {names.tolist()}')
  z = np.eye(len(names))[codes]
  mean = x.mean(0)
  cross = (x - mean).T @ (z - z.mean(0)) / len(x)  # cov(x, z) [d, k]
  eigenvalues, eigenvectors = np.linalg.eigh(ledoit_wolf(x)[0])
  eigenvalues = np.maximum(eigenvalues, eigenvalues.max() * 1e-12)
  whiten = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
  unwhiten = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
  u, singular, _ = np.linalg.svd(whiten @ cross, full_matrices=False)
  u = u[:, singular > singular.max() * 1e-6]  # rank k - 1: the one-hot code sums to 1
  erase = unwhiten @ u @ u.T @ whiten  # [d, d], on column vectors
  return (np.eye(x.shape[1]) - erase.T).astype(np.float32), (mean @ erase.T).astype(np.float32)


def erased(d: Dict[str, np.ndarray], spec: dict) -> np.ndarray:
  """Every embedding [n, 512] as the row's head sees it: with lever `erase`, LEACE of the
  collection of each training real (its source: gan_faces' FFHQ 128 px, k140's FFHQ 256 px,
  UTKFace, FairFace), fitted on the row's training reals only; with `generator` also, then
  LEACE of the generator among its training fakes, fitted on the erased fakes."""
  x = d['x']
  levers = spec['lever'].split('+')
  train = selection(d, spec, TRAIN)
  for concept, fit in (('erase', train & (d['label'] == 0)),
                       ('erase_ffhq', train & (d['label'] == 0) & (d['real_source'] == FFHQ)),
                       ('generator', train & (d['label'] == 1))):
    # erase_ffhq: FFHQ's two preparations only (gan_faces' 128 px against k140's 256 px);
    # a row with one of them has nothing to erase.
    if concept in levers and len(set(d['source'][fit].tolist())) > 1:
      kernel, bias = leace_eraser(x[fit], d['source'][fit])
      x = x @ kernel + bias
  return x


_PROBES = {}  # collection_probe's answers: they depend on the row's data and eraser, not its seed


def collection_probe(d: Dict[str, np.ndarray], spec: dict, x: np.ndarray) -> float:
  """How well a linear probe names the collection of a held-out real: balanced accuracy on the
  row's eval reals of a logistic regression (C = 1) fitted on its training reals' `x` [n, d]
  (chance: 1 / the number of collections). Checks that the eraser removed what it should."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import balanced_accuracy_score
  key = (spec['reals'], tuple(spec['fakes']), spec['lever'])
  if key not in _PROBES:
    train, evaluation = [selection(d, spec, split) & (d['label'] == 0) for split in (TRAIN, EVAL)]
    probe = LogisticRegression(C=1.0, max_iter=5000).fit(x[train], d['source'][train])
    _PROBES[key] = round(float(balanced_accuracy_score(d['source'][evaluation],
                                                       probe.predict(x[evaluation]))), 4)
  return _PROBES[key]


def unseen_named_as(d: Dict[str, np.ndarray], reals: str) -> Dict[str, float]:
  """Which training collection a linear probe (as `collection_probe`, on the raw embeddings of
  the training reals of all three generators' row) names each unseen-collection test real:
  the share of each answer."""
  from sklearn.linear_model import LogisticRegression
  spec = dict(fakes=GENERATORS, reals=reals, lever='')
  train = selection(d, spec, TRAIN) & (d['label'] == 0)
  probe = LogisticRegression(C=1.0, max_iter=5000).fit(d['x'][train], d['source'][train])
  unseen = (d['split'] == TEST) & (d['source'] == UNSEEN[reals][0])
  names, counts = np.unique(probe.predict(d['x'][unseen]), return_counts=True)
  return {str(k): round(float(v / unseen.sum()), 3) for k, v in zip(names, counts)}


def wilson(k: int, n: int, z: float = 1.96) -> List[float]:
  """Wilson 95% interval of k/n (the decision rule's interval for group rates)."""
  if not n:
    return [0.0, 1.0]
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def rate_by_group(called: np.ndarray, groups: np.ndarray) -> Dict[str, dict]:
  out = {}
  for g in sorted(set(groups.tolist())):
    m = groups == g
    k, n = int(called[m].sum()), int(m.sum())
    out[g] = {'n': n, 'rate': round(k / n, 4), 'wilson95': wilson(k, n), 'judged': n >= MIN_GROUP}
  return out


def audit(d, scores, threshold, source: str) -> dict:
  """Reals of `source`'s test split called fake at `threshold`: overall and per race x gender."""
  m = (d['split'] == TEST) & (d['source'] == source)
  called = scores[m] >= threshold
  groups = rate_by_group(called, np.char.add(np.char.add(d['race'][m].astype(str), ' x '),
                                             d['gender'][m].astype(str)))
  judged = [g['rate'] for g in groups.values() if g['judged']]
  return {'n': int(m.sum()), 'fpr': round(float(called.mean()), 4),
          'wilson95': wilson(int(called.sum()), int(m.sum())),
          'worst_group_fpr': max(judged) if judged else None,
          'worst_group': max(((g['rate'], k) for k, g in groups.items() if g['judged']),
                             default=(None, None))[1],
          'per_race_x_gender': groups}


def score_generators(d, scores, threshold) -> Dict[str, dict]:
  """G1/G2 per generator: gan_faces and k140 on their own test split, sdfd test fakes
  against the pooled test reals; AUC, TPR at FPR 0.05 (own ROC), TPR at the operating point."""
  from fakefaces.components.trainer import operating_point
  from sklearn.metrics import roc_auc_score
  test = d['split'] == TEST
  out = {}
  for source in GENERATORS:
    if source == SDFD:
      # The sample's test reals: faces added to the FairFace audit would move this AUC with
      # the audit's size (`--fairface-audit` changes the audit only).
      m = test & ((d['source'] == SDFD) | ((d['label'] == 0) & ~d['audit_added']))
    else:
      m = test & (d['source'] == source)
    y, s = d['label'][m], scores[m]
    tpr = operating_point.tpr_at_fpr(y, s, TARGET_FPR)
    out[source] = {'n_real': int((y == 0).sum()), 'n_fake': int((y == 1).sum()),
                   'auc': round(float(roc_auc_score(y, s)), 4),
                   'tpr_at_fpr_0.05': None if tpr is None else round(tpr, 4),
                   'tpr_at_threshold': round(float((s[y == 1] >= threshold).mean()), 4)}
    if source != SDFD:  # its own reals (FFHQ at 128 or 256 px) called fake at the operating point
      out[source]['real_fpr_at_threshold'] = round(float((s[y == 0] >= threshold).mean()), 4)
  return out


def sdfd_groups(d, scores, threshold) -> dict:
  """G5: SDFD test fakes caught at the operating point per prompted race and gender, and each
  group's AUC against the reals SDFD's own AUC uses (`score_generators`): a group ranked below
  the reals (a lower AUC) is missed at any threshold the reals allow."""
  from sklearn.metrics import roc_auc_score
  m = (d['split'] == TEST) & (d['source'] == SDFD)
  reals = scores[(d['split'] == TEST) & (d['label'] == 0) & ~d['audit_added']]
  caught = scores[m] >= threshold
  overall = float(caught.mean())
  out = {'n': int(m.sum()), 'tpr': round(overall, 4)}
  gaps = []
  for attribute in ('race', 'gender'):
    groups = rate_by_group(caught, d[attribute][m].astype(str))
    for name, g in groups.items():
      fakes = scores[m][d[attribute][m].astype(str) == name]
      g['auc'] = round(float(roc_auc_score(np.r_[np.zeros(len(reals)), np.ones(len(fakes))],
                                           np.r_[reals, fakes])), 4)
    out[attribute] = groups
    gaps += [abs(g['rate'] - overall) for k, g in groups.items() if g['judged'] and k != 'unknown']
  out['max_gap'] = round(max(gaps), 4) if gaps else None
  return out


def score_row(d, spec: dict, scores: np.ndarray, **extra) -> dict:
  """The row's columns from its scores [n] of every crop (any monotone score: P(fake) or a logit).

  The operating point is the threshold giving FPR 0.05 on the row's eval reals.
  """
  from fakefaces.components.trainer import operating_point
  train, evaluation = selection(d, spec, TRAIN), selection(d, spec, EVAL)
  eval_labels = d['label'][evaluation]
  threshold = operating_point.threshold_for_fpr(eval_labels, scores[evaluation], TARGET_FPR)
  row = dict(spec, fakes=list(spec['fakes']), train_fakes=int((d['label'][train] == 1).sum()),
             train_reals=int((d['label'][train] == 0).sum()),
             eval_reals=int((eval_labels == 0).sum()), threshold=round(float(threshold), 6),
             **extra)
  # Which training collection's eval reals the threshold stands on (k over it, of n).
  row['eval_reals_over_threshold'] = {
      str(source): [int((scores[m] >= threshold).sum()), int(m.sum())]
      for source in sorted(set(d['source'][evaluation & (d['label'] == 0)].tolist()))
      for m in [evaluation & (d['label'] == 0) & (d['source'] == source)]}
  row['generators'] = score_generators(d, scores, threshold)
  row['audit'] = {source: audit(d, scores, threshold, source) for source in (FAIRFACE, UTK)}
  row['sdfd_groups'] = sdfd_groups(d, scores, threshold)
  return row


# (row's head, fakes, reals, lever, views, seed, epochs) -> a head's (scores, logits, seconds)
_HEADS = {}


def train_head(d, spec: dict, x: np.ndarray, seed: int, epochs: int):
  """(P(fake) [n], fake logits [n], training seconds) of every crop by one CLIP head at `seed`.

  With lever `early_stop`, early stopping on the row's eval split (the Trainer's defaults:
  val_loss, patience 3, best weights restored). Kept for the run: an ensemble's members are
  the single-head rows of the same seeds (`rows --ensemble`).
  """
  import tensorflow as tf
  from fakefaces.components.trainer import backbone, fused
  from fakefaces.components.trainer.config import TrainConfig
  levers = spec['lever'].split('+')
  early_stop = 'early_stop' in levers
  key = (spec['head'], tuple(spec['fakes']), spec['reals'], '+'.join(
      l for l in levers if not l.startswith('ensemble')), spec.get('views', 'none'), seed, epochs)
  if key in _HEADS:
    return _HEADS[key]
  config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                       head=spec['head'], epochs=epochs, batch_size=32, seed=seed)
  train, evaluation = selection(d, spec, TRAIN), selection(d, spec, EVAL)
  # The training crops, then each of the row's views of them (same labels and weights).
  kinds = [k for k in spec.get('views', 'none').split('+') if k != 'none']
  x_train = np.concatenate([x[train]] + [d['views'][k][train] for k in kinds])
  copies = 1 + len(kinds)
  tf.keras.utils.set_random_seed(config.seed)
  head = backbone.build_head(config, x_train)
  fit = {}
  if early_stop:
    fit = dict(validation_data=(x[evaluation], d['label'][evaluation].astype(np.float32)),
               callbacks=[tf.keras.callbacks.EarlyStopping(
                   monitor=config.early_stopping_monitor, patience=config.early_stopping_patience,
                   restore_best_weights=True)])
  start = time.perf_counter()
  head.fit(x_train, np.tile(d['label'][train].astype(np.float32), copies),
           sample_weight=np.tile(sample_weights(d, train, spec['lever']), copies),
           batch_size=config.batch_size, epochs=epochs, shuffle=True, verbose=0, **fit)
  seconds = time.perf_counter() - start
  scores = head.predict(x, batch_size=1024, verbose=0)[:, 0]
  logits = fused.logit_model(head, 'clip').predict(x, batch_size=1024, verbose=0)[:, 0]
  _HEADS[key] = scores, logits, seconds
  return _HEADS[key]


def ensemble_size(lever: str) -> int:
  """N of a lever `ensembleN` (the heads of seeds seed ... seed + N - 1); 1 without one."""
  sizes = [int(l[len('ensemble'):]) for l in lever.split('+') if l.startswith('ensemble')]
  return sizes[0] if sizes else 1


def clip_row(d, spec: dict, epochs: int):
  """(row, the head's fake logits [n] of every crop): a CLIP head trained on the cached embeddings.

  With lever `ensembleN`, N heads of seeds seed ... seed + N - 1, their logits averaged: the
  row's score is the sigmoid of the mean logit (deep ensembles, Lakshminarayanan et al. 2017).
  """
  x = erased(d, spec)
  seed, size = spec.get('seed', SEED), ensemble_size(spec['lever'])
  heads = [train_head(d, spec, x, seed + i, epochs) for i in range(size)]
  if size == 1:
    scores, logits, seconds = heads[0]
  else:
    logits = np.mean([h[1] for h in heads], axis=0)
    scores, seconds = probability(logits), sum(h[2] for h in heads)
  extra = {}
  if {'erase', 'erase_ffhq'} & set(spec['lever'].split('+')):
    extra['collection_probe'] = {'raw': collection_probe(d, dict(spec, lever=''), d['x']),
                                 'erased': collection_probe(d, spec, x)}
  return score_row(d, spec, scores, head_train_seconds=round(seconds, 1), **extra), logits


def probability(logits: np.ndarray) -> np.ndarray:
  """P(fake) [n] float32 from fake logits [n], as a served float32 sigmoid gives it (the
  operating point is chosen on probabilities: operating_point clips thresholds to (0, 1))."""
  from scipy.special import expit
  return expit(np.asarray(logits, np.float32))


def cnn_config(epochs: int = 0):
  """CNN_CONFIG's `train:` block (the pipeline's CNN for shared data); `epochs` > 0 replaces its epochs."""
  import dataclasses
  from fakefaces.pipeline.config import load_config
  config = load_config(CNN_CONFIG).train
  return dataclasses.replace(config, epochs=epochs) if epochs else config


def _write_records(d, mask: np.ndarray, path: str) -> None:
  """The masked crops as the ingestion's tf.Examples (image, label, source), gzipped."""
  import tensorflow as tf
  from fakefaces.components.shared import features

  def feature(value):
    if isinstance(value, int):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for image, label, source in zip(d['image'][mask], d['label'][mask], d['source'][mask]):
      example = tf.train.Example(features=tf.train.Features(feature={
          features.IMAGE: feature(image), features.LABEL: feature(int(label)),
          features.SOURCE: feature(str(source).encode())}))
      writer.write(example.SerializeToString())


def cnn_logits_file(d, spec: dict, config, work: str) -> str:
  """Where `cnn_row` keeps the row's logits: named by the config, the row and every crop's bytes."""
  import dataclasses
  import hashlib
  key = hashlib.sha256(json.dumps(
      [dataclasses.asdict(config), spec['fakes'], spec['reals'], spec['lever'],
       [hashlib.sha256(b).hexdigest() for b in d['image']]], sort_keys=True).encode()
                       ).hexdigest()[:16]
  return os.path.join(work, 'logits', f'cnn-{key}.npz')


def cnn_row(d, spec: dict, config, work: str):
  """(row, the CNN's fake logits [n] of every crop): the pipeline's CNN trained on the row's data.

  The row's train and eval crops are written as the ingestion's tf.Examples and
  trained by the Trainer's own `module.train_cnn` (source-balanced sampling,
  processing augmentation, early stopping on the eval split, the float32 served
  copy), then every crop is scored as the serving signatures decode it. The
  logits are kept in `work`/logits, keyed by the config, the row and its crops,
  so a rerun costs nothing and a changed crop or setting retrains.
  """
  import types
  stored = cnn_logits_file(d, spec, config, work)
  key = os.path.basename(stored)[4:-4]
  if os.path.exists(stored):
    with np.load(stored) as cached:
      logits = cached['logits']
      return score_row(d, spec, probability(logits), **json.loads(str(cached['info']))), logits
  import tensorflow as tf
  from fakefaces.components.trainer import fused, module, preprocess, training
  run_dir = os.path.join(work, 'cnn_runs', key)
  os.makedirs(run_dir, exist_ok=True)
  files = {}
  for split in (TRAIN, EVAL):
    files[split] = os.path.join(run_dir, f'{split}.tfrecord.gz')
    _write_records(d, selection(d, spec, split), files[split])
  fn_args = types.SimpleNamespace(train_files=[files[TRAIN]], eval_files=[files[EVAL]],
                                  model_run_dir=run_dir)
  training.seed_everything(config)  # before the datasets, as run_fn does
  start = time.perf_counter()
  cnn = module.train_cnn(config, fn_args)
  seconds = time.perf_counter() - start
  with open(os.path.join(run_dir, training.HISTORY_FILE)) as f:
    history = json.load(f)
  logit = fused.logit_model(cnn, 'cnn')
  images = d['image'].tolist()
  logits = np.concatenate([
      logit(preprocess.decode_batch(tf.constant(images[i:i + 256]), config.image_size,
                                    config.color_mode), training=False).numpy().reshape(-1)
      for i in range(0, len(images), 256)])
  info = {'cnn_train_seconds': round(seconds, 1), 'epochs_run': history['epochs_run'],
          'weights_from_epoch': history['weights_from_epoch'],
          'precision_policy': history['precision_policy'], 'load_avg': round(os.getloadavg()[0], 2)}
  os.makedirs(os.path.dirname(stored), exist_ok=True)
  np.savez(stored + '.tmp.npz', logits=logits.astype(np.float32), info=json.dumps(info))
  os.replace(stored + '.tmp.npz', stored)
  return score_row(d, spec, probability(logits), **info), logits


def fused_row(d, spec: dict, cnn_logits: np.ndarray, clip_logits: np.ndarray) -> dict:
  """The CNN's and the CLIP head's logits stacked as the fused model is (fused.fit_stacking on
  the row's eval split); scored by the stacking layer's P(fake)."""
  from fakefaces.components.trainer import fused
  logits = np.stack([cnn_logits, clip_logits], axis=1).astype(np.float32)
  evaluation = selection(d, spec, EVAL)
  weights, bias = fused.fit_stacking(logits[evaluation], d['label'][evaluation])
  stacking = {'parts': list(fused.PARTS), 'weights': [round(float(w), 4) for w in weights],
              'bias': round(bias, 4), 'C': fused.STACKING_C}
  return score_row(d, spec, probability(logits @ weights + bias), stacking=stacking)


def configurations(rows: List[dict]) -> List[dict]:
  """Each (model, reals, lever) with all three generators, its LOGO AUCs and the rule's ranking key."""
  by_name = {r['name']: r for r in rows}
  configs = []
  for r in rows:
    if tuple(r['fakes']) != GENERATORS:
      continue
    logo = {}
    for held_out in GENERATORS:
      name = r['name'].replace('+'.join(GENERATORS),
                               '+'.join(g for g in GENERATORS if g != held_out))
      if name in by_name:
        g = by_name[name]['generators'][held_out]
        logo[held_out] = {'auc': g['auc'], 'tpr_at_fpr_0.05': g['tpr_at_fpr_0.05']}
    unseen = UNSEEN[r['reals']]
    audits = [r['audit'][s] for s in set(unseen) | {FAIRFACE}]
    excess = max(max(a['fpr'] - AUDIT_FPR, (a['worst_group_fpr'] or 0) - AUDIT_GROUP_FPR)
                 for a in audits)
    within = [r['generators'][s]['auc'] for s in GENERATORS]
    goals = {
        'G1 within AUC >= 0.97': min(within) >= WITHIN_AUC,
        'G2 LOGO AUC >= 0.90 and TPR >= 0.85': len(logo) == 3 and all(
            v['auc'] >= LOGO_AUC and (v['tpr_at_fpr_0.05'] or 0) >= LOGO_TPR
            for v in logo.values()),
        'G3 unseen collection FPR <= 0.03, groups <= 0.05': bool(unseen) and all(
            r['audit'][s]['fpr'] <= AUDIT_FPR and (r['audit'][s]['worst_group_fpr'] or 0)
            <= AUDIT_GROUP_FPR for s in unseen),
        'G4 FairFace FPR <= 0.03, groups <= 0.05': r['audit'][FAIRFACE]['fpr'] <= AUDIT_FPR and (
            r['audit'][FAIRFACE]['worst_group_fpr'] or 0) <= AUDIT_GROUP_FPR,
        'G5 SDFD group TPR within 0.05': (r['sdfd_groups']['max_gap'] or 0) <= SDFD_GROUP_GAP,
    }
    configs.append({'name': r['name'], 'model': r['model'], 'head': r['head'],
                    'reals': r['reals'],
                    'lever': r['lever'], 'unseen': list(unseen), 'logo': logo,
                    'min_logo_auc': min(v['auc'] for v in logo.values()) if logo else None,
                    'min_within_auc': min(within), 'audit_excess': round(max(0.0, excess), 4),
                    'sdfd_max_gap': r['sdfd_groups']['max_gap'], 'goals': goals,
                    'goals_met': sum(goals.values())})
  return rank(configs)


def rank(configs: List[dict]) -> List[dict]:
  """The decision rule: audit met, then smaller audit excess (0.02 ties), then the worst LOGO AUC
  (0.02 ties), then the worst within-source AUC (0.02 ties: the rule counts AUC differences under
  0.02 as noise), the SDFD gap, the simpler model (SIMPLICITY).

  Tie bands are applied greedily down the sorted list: a config within the band of the
  one ranked before it shares its band.
  """
  def banded(items, key, band, reverse):
    items = sorted(items, key=lambda c: key(c), reverse=reverse)
    bands, previous, level = [], None, 0
    for c in items:
      if previous is not None and abs(key(c) - previous) > band:
        level += 1
      bands.append(level)
      previous = key(c)
    return {id(c): b for c, b in zip(items, bands)}

  judgeable = [c for c in configs if c['unseen'] and c['min_logo_auc'] is not None]
  audit_band = banded(judgeable, lambda c: c['audit_excess'], 0.02, False)
  logo_band = banded(judgeable, lambda c: c['min_logo_auc'], 0.02, True)
  within_band = banded(judgeable, lambda c: c['min_within_auc'], 0.02, True)
  ordered = sorted(judgeable, key=lambda c: (
      c['audit_excess'] > 0, audit_band[id(c)], logo_band[id(c)], within_band[id(c)],
      c['sdfd_max_gap'] or 0, SIMPLICITY.index(c['head'])))
  for i, c in enumerate(ordered):
    c['rank'] = i + 1
  return ordered + [dict(c, rank=None) for c in configs if c not in judgeable]


# The decision rule's bands for a lever against the same configuration without it (paired seeds).
GAIN_FPR, GAIN_GROUP_FPR, GAIN_SEEDS = 0.01, 0.03, 4
LOSS_AUC, LOSS_SDFD_TPR, LOSS_FAIRFACE_FPR, LOSS_K140_FPR = 0.02, 0.03, 0.01, 0.04
# Each lever and the levers it is judged against.
ERASURE_BASES = {'erase': ('',), 'reweight': ('',), 'reweight+erase': ('', 'reweight'),
                 'erase+generator': ('', 'erase'), 'erase_ffhq': ('',)}


def _seed_numbers(by_key: dict, reals: str, lever: str, seed: int) -> dict:
  """The decision rule's numbers of one configuration at one seed (its LOGO twins included)."""
  full = by_key[(reals, lever, seed, GENERATORS)]
  unseen = UNSEEN[reals][0]
  audit_ = full['audit'][unseen]
  worst = audit_['per_race_x_gender'].get(audit_['worst_group'], {})
  logo = {held_out: by_key[(reals, lever, seed, tuple(g for g in GENERATORS if g != held_out))]
          ['generators'][held_out]['auc'] for held_out in GENERATORS}
  within = {s: full['generators'][s]['auc'] for s in GENERATORS}
  return {'unseen_fpr': audit_['fpr'], 'unseen_worst_group_fpr': audit_['worst_group_fpr'],
          'unseen_worst_group': [audit_['worst_group'], worst.get('n'), worst.get('wilson95')],
          'fairface_fpr': full['audit'][FAIRFACE]['fpr'],
          'fairface_worst_group_fpr': full['audit'][FAIRFACE]['worst_group_fpr'],
          'utkface_fpr': full['audit'][UTK]['fpr'],
          'k140_real_fpr': full['generators'][K140]['real_fpr_at_threshold'],
          'gan_faces_real_fpr': full['generators'][GAN]['real_fpr_at_threshold'],
          'sdfd_tpr': full['sdfd_groups']['tpr'], 'sdfd_max_gap': full['sdfd_groups']['max_gap'],
          'sdfd_race_tpr': {k: g['rate'] for k, g in full['sdfd_groups']['race'].items()},
          'sdfd_gender_tpr': {k: g['rate'] for k, g in full['sdfd_groups']['gender'].items()},
          'sdfd_race_auc': {k: g.get('auc') for k, g in full['sdfd_groups']['race'].items()},
          'sdfd_lowest_group': _lowest_group(full['sdfd_groups']),
          'within_auc': within, 'min_within_auc': min(within.values()),
          'logo_auc': logo, 'min_logo_auc': min(logo.values()),
          'collection_probe_erased': full.get('collection_probe', {}).get('erased')}


def _lowest_group(groups: dict) -> list:
  """[name, caught, n] of the judged prompted race or gender group (not 'unknown') whose SDFD
  TPR is lowest (`sdfd_groups`); [None, 0, 0] when none is judged."""
  judged = [(g['rate'], name, g['n']) for attribute in ('race', 'gender')
            for name, g in groups[attribute].items() if g['judged'] and name != 'unknown']
  if not judged:
    return [None, 0, 0]
  rate, name, n = min(judged)
  return [name, int(round(rate * n)), n]


def _verdict(lever: List[dict], base: List[dict], unseen: str) -> dict:
  """The decision rule: a lever's per-seed numbers against its base's at the same seeds."""
  def drop(key):  # base - lever per seed (positive: the lever is lower)
    return np.array([b[key] - l[key] for l, b in zip(lever, base)], np.float64)

  eps = 1e-9  # the rates are rounded to 4 decimals
  fpr, group = drop('unseen_fpr'), drop('unseen_worst_group_fpr')
  gains = {'unseen_fpr': bool(fpr.mean() >= GAIN_FPR - eps and (fpr > eps).sum() >= GAIN_SEEDS),
           'unseen_worst_group_fpr': bool(group.mean() >= GAIN_GROUP_FPR - eps
                                          and (group >= -eps).all())}
  losses = {'min_within_auc': bool(drop('min_within_auc').mean() > LOSS_AUC + eps),
            'min_logo_auc': bool(drop('min_logo_auc').mean() > LOSS_AUC + eps),
            'sdfd_tpr': bool(drop('sdfd_tpr').mean() > LOSS_SDFD_TPR + eps),
            'k140_real_fpr': bool(-drop('k140_real_fpr').mean() > LOSS_K140_FPR + eps)}
  if unseen != FAIRFACE:
    losses['fairface_fpr'] = bool(-drop('fairface_fpr').mean() > LOSS_FAIRFACE_FPR + eps)
  verdict = 'loses' if any(losses.values()) else 'wins' if any(gains.values()) else 'no evidence'
  return {'verdict': verdict, 'gains': gains, 'losses': losses,
          'mean_drop': {k: round(float(drop(k).mean()), 4) for k in (
              'unseen_fpr', 'unseen_worst_group_fpr', 'fairface_fpr', 'k140_real_fpr',
              'sdfd_tpr', 'min_within_auc', 'min_logo_auc')}}


# The ensemble rule's bands: the worst group's range narrower by one photo of a 22-photo group;
# G3 met at this many more of the five draws.
STEADIER_GROUP_RANGE, MORE_G3_DRAWS = 0.045, 2


def meets_g3(draw: dict) -> bool:
  """G3 at one draw (`_seed_numbers`): the unseen collection's FPR and every judged group's."""
  return (draw['unseen_fpr'] <= AUDIT_FPR
          and (draw['unseen_worst_group_fpr'] or 0) <= AUDIT_GROUP_FPR)


def ensemble_verdict(model: dict, base: dict) -> dict:
  """The ensemble rule: a model's draws (an `erasure_summary` entry) against the single head's.

  Draws are paired in seed order for the losses (the erasure rule's bands, `_verdict`); the
  gains compare the ranges over the draws and the number of draws meeting G3.
  """
  def spread(c, key):
    values = [s[key] for s in c['per_seed']]
    return round(max(values) - min(values), 4)

  def g3(c):
    return sum(map(meets_g3, c['per_seed']))

  eps = 1e-9
  paired = _verdict(model['per_seed'], base['per_seed'], model['unseen'])
  ranges = {k: [spread(model, k), spread(base, k)]
            for k in ('unseen_fpr', 'unseen_worst_group_fpr')}
  g3_draws = [g3(model), g3(base)]
  gains = {'steadier': bool(ranges['unseen_fpr'][0] <= ranges['unseen_fpr'][1] + eps and
                            ranges['unseen_worst_group_fpr'][0]
                            <= ranges['unseen_worst_group_fpr'][1] - STEADIER_GROUP_RANGE + eps),
           'more_g3_draws': g3_draws[0] >= g3_draws[1] + MORE_G3_DRAWS}
  losses = {k: v for k, v in paired['losses'].items() if k != 'fairface_fpr'}
  verdict = 'loses' if any(losses.values()) else 'wins' if all(gains.values()) else 'no evidence'
  return {'verdict': verdict, 'gains': gains, 'losses': losses, 'ranges_model_base': ranges,
          'g3_draws_model_base': g3_draws, 'mean_drop': paired['mean_drop']}


# The confirmatory rule's bands (docs/detection_quality.md, "A head ensemble on fresh seeds:
# confirmatory rule"): G3 at 7 of 8 draws and a share 0.3 above the single head's; the worst
# group's mean FPR lower by one photo of 70; FairFace's mean FPR up by at most 0.005 (the other
# loss bands are the erasure rule's).
CONFIRM_G3_SHARE, CONFIRM_G3_SHARE_GAIN, CONFIRM_GROUP_GAIN = 7 / 8, 0.3, 0.014
CONFIRM_LOSS_FAIRFACE_FPR = 0.005


def confirm_verdict(model: dict, base: dict) -> dict:
  """The confirmatory rule: a model's draws (an `erasure_summary` entry) against the single head's,
  means over the draws unpaired (the two need not have as many draws).

  Returns:
    verdict ('wins', 'no evidence', 'loses'), gains and losses per condition, the draws meeting
    G3 and the draws [model, base], and each number's mean [model, base].
  """
  def mean(c, key):
    return float(np.mean([s[key] or 0 for s in c['per_seed']]))

  eps = 1e-9  # the rates are rounded to 4 decimals
  keys = ('unseen_worst_group_fpr', 'fairface_fpr', 'k140_real_fpr', 'sdfd_tpr',
          'min_within_auc', 'min_logo_auc')
  means = {k: [round(mean(model, k), 4), round(mean(base, k), 4)] for k in keys}
  drop = {k: mean(base, k) - mean(model, k) for k in keys}  # positive: the model lower
  g3 = [sum(map(meets_g3, c['per_seed'])) for c in (model, base)]
  draws = [len(model['per_seed']), len(base['per_seed'])]
  share = [g / n for g, n in zip(g3, draws)]
  gains = {'g3_draws': bool(share[0] >= CONFIRM_G3_SHARE - eps
                            and share[0] - share[1] >= CONFIRM_G3_SHARE_GAIN - eps),
           'worst_group_fpr': bool(drop['unseen_worst_group_fpr'] >= CONFIRM_GROUP_GAIN - eps)}
  losses = {'min_logo_auc': drop['min_logo_auc'] > LOSS_AUC + eps,
            'min_within_auc': drop['min_within_auc'] > LOSS_AUC + eps,
            'sdfd_tpr': drop['sdfd_tpr'] > LOSS_SDFD_TPR + eps,
            'fairface_fpr': -drop['fairface_fpr'] > CONFIRM_LOSS_FAIRFACE_FPR + eps,
            'k140_real_fpr': -drop['k140_real_fpr'] > LOSS_K140_FPR + eps}
  verdict = 'loses' if any(losses.values()) else 'wins' if all(gains.values()) else 'no evidence'
  return {'verdict': verdict, 'gains': gains, 'losses': losses, 'g3_draws_model_base': g3,
          'draws_model_base': draws, 'mean_model_base': means}


# The SDFD parity rule's bands (docs/detection_quality.md, "SDFD's prompted groups caught
# alike: decision rule"): the largest prompted-group gap lower by 0.03 (one photo of ~35), and
# no loss: FairFace's FPR up by at most CONFIRM_LOSS_FAIRFACE_FPR, its worst group's by at most
# one photo of 70, the lowest LOGO and within-source AUC down by at most LOSS_AUC, SDFD's TPR
# at the operating point not down.
PARITY_GAP_GAIN, PARITY_LOSS_GROUP_FPR = 0.03, 0.014
# Each parity lever (a sample weighting) and the lever its rows are judged against: the same
# configuration without the weighting.
PARITY_LEVERS = ('balance_sources', 'sdfd_x3', 'sdfd_groups')


def parity_base(lever: str) -> str:
  """The lever a parity lever's rows are judged against: `lever` without its PARITY_LEVERS parts
  ('' for the single head, 'ensemble5' for 'sdfd_x3+ensemble5'); None when it has none."""
  parts = lever.split('+')
  rest = [p for p in parts if p not in PARITY_LEVERS]
  return None if len(rest) == len(parts) else '+'.join(rest)


def parity_verdict(model: dict, base: dict) -> dict:
  """The SDFD parity rule: a lever's draws (an `erasure_summary` entry) against its base's, means
  over the seeds (`over_seeds`).

  Returns:
    verdict ('wins', 'no evidence', 'loses'), gains and losses per condition, and each number's
    mean [lever, base].
  """
  eps = 1e-9  # the rates are rounded to 4 decimals
  keys = ('sdfd_max_gap', 'sdfd_tpr', 'fairface_fpr', 'fairface_worst_group_fpr', 'min_logo_auc',
          'min_within_auc')
  means = {k: [model['numbers'][k]['mean'], base['numbers'][k]['mean']] for k in keys}
  up = {k: m - b for k, (m, b) in means.items()}  # positive: the model higher
  gains = {'sdfd_max_gap': bool(-up['sdfd_max_gap'] >= PARITY_GAP_GAIN - eps)}
  losses = {'fairface_fpr': bool(up['fairface_fpr'] > CONFIRM_LOSS_FAIRFACE_FPR + eps),
            'fairface_worst_group_fpr': bool(up['fairface_worst_group_fpr']
                                             > PARITY_LOSS_GROUP_FPR + eps),
            'min_logo_auc': bool(-up['min_logo_auc'] > LOSS_AUC + eps),
            'min_within_auc': bool(-up['min_within_auc'] > LOSS_AUC + eps),
            'sdfd_tpr': bool(-up['sdfd_tpr'] > eps)}
  verdict = 'loses' if any(losses.values()) else 'wins' if all(gains.values()) else 'no evidence'
  return {'verdict': verdict, 'gains': gains, 'losses': losses, 'means_lever_base': means}


def seeds_by_configuration(by_key: dict) -> Dict[tuple, List[int]]:
  """Configuration -> its seeds, of rows keyed (configuration..., seed, fakes) trained on all
  three generators."""
  configs = {}
  for key in by_key:
    if key[-1] == GENERATORS:
      configs.setdefault(key[:-2], []).append(key[-2])
  return {config: sorted(seeds) for config, seeds in configs.items()}


def over_seeds(per_seed: List[dict]) -> Dict[str, dict]:
  """Mean, min and max over the seeds of each number (float) of the per-seed dicts."""
  return {k: {'mean': round(float(np.mean([s[k] for s in per_seed])), 4),
              'min': min(s[k] for s in per_seed), 'max': max(s[k] for s in per_seed)}
          for k, v in per_seed[0].items() if isinstance(v, float)}


def erasure_summary(rows: List[dict], ensemble_rule=None) -> List[dict]:
  """Per (reals, lever) of the erasure rows: each seed's numbers, their mean and range, and the
  decision rule's verdict against each of its bases (ERASURE_BASES) at the same seeds; the
  ensemble rows' against the single head by `ensemble_rule` (default `ensemble_verdict`)."""
  by_key = {(r['reals'], r['lever'], r.get('seed', SEED), tuple(r['fakes'])): r for r in rows
            if r['model'] == 'clip' and r['head'] == 'mlp'}
  out = []
  for (reals, lever), seeds in seeds_by_configuration(by_key).items():
    per_seed = [_seed_numbers(by_key, reals, lever, seed) for seed in seeds]
    out.append({'reals': reals, 'lever': lever, 'unseen': UNSEEN[reals][0],
                'seeds': seeds, 'numbers': over_seeds(per_seed), 'per_seed': per_seed})
  by_config = {(c['reals'], c['lever']): c for c in out}
  for c in out:
    c['against'] = {}
    for base in ERASURE_BASES.get(c['lever'], ()):
      other = by_config.get((c['reals'], base))
      if other and other['seeds'] == c['seeds']:
        c['against'][base or 'none'] = _verdict(c['per_seed'], other['per_seed'], c['unseen'])
    if c['lever'] in ENSEMBLE_LEVERS[1:] and (c['reals'], '') in by_config:
      c['against']['none'] = (ensemble_rule or ensemble_verdict)(c, by_config[(c['reals'], '')])
    base = parity_base(c['lever'])
    if base is not None and (c['reals'], base) in by_config:
      c['against'][base or 'none'] = parity_verdict(c, by_config[(c['reals'], base)])
  return out


def print_erasure(summary: List[dict]) -> None:
  keys = ('unseen_fpr', 'unseen_worst_group_fpr', 'fairface_fpr', 'k140_real_fpr',
          'gan_faces_real_fpr', 'sdfd_tpr', 'sdfd_max_gap', 'min_within_auc', 'min_logo_auc')
  print(f'\n{"reals":10} {"lever":16} ' + ' '.join(f'{k[:17]:>17}' for k in keys) + '  verdict')
  for c in summary:
    cells = [f"{c['numbers'][k]['mean']:.3f} [{c['numbers'][k]['min']:.2f}-{c['numbers'][k]['max']:.2f}]"
             for k in keys]
    verdicts = ', '.join(f'{v["verdict"]} vs {b}' for b, v in c['against'].items())
    print(f'{c["reals"]:10} {c["lever"] or "-":16} ' + ' '.join(f'{x:>17}' for x in cells)
          + f'  {verdicts}')


def _most_often(groups: List[tuple]) -> str:
  """The group most often named in `groups` (one (name, rate, n) per seed; of tied groups the
  first named, so the table does not depend on string hashing), its median rate over those
  seeds as k of n with the Wilson 95% interval, and on how many seeds."""
  names = [name for name, _, _ in groups]
  name = max(names, key=names.count)
  n = next(n for g, _, n in groups if g == name)
  k = int(round(float(np.median([rate for g, rate, _ in groups if g == name])) * n))
  low, high = wilson(k, n)
  return f'{name.replace(" x ", " ")} {k}/{n} [{low:.2f}, {high:.2f}] ({names.count(name)} seeds)'


def erasure_markdown(summary: List[dict]) -> str:
  """The docs' tables of `erasure_summary`: means over the seeds with their ranges, and SDFD's
  TPR at the operating point per prompted race."""
  def cell(c, key, digits=3):
    n = c['numbers'][key]
    return f"{n['mean']:.{digits}f} ({n['min']:.{digits}f}-{n['max']:.{digits}f})"

  def worst(c):
    return _most_often([(s['unseen_worst_group'][0], s['unseen_worst_group_fpr'],
                         s['unseen_worst_group'][1]) for s in c['per_seed']])

  def means(c, key):
    return ' / '.join(f"{np.mean([s[key][g] for s in c['per_seed']]):.3f}" for g in GENERATORS)

  lines = ['| training reals | lever | unseen FPR | unseen worst group FPR | most often worst | '
           'FairFace FPR | k140 reals '
           'FPR | gan_faces reals FPR | SDFD TPR at op (largest group gap) | within AUC gan_faces / '
           'k140 / sdfd | LOGO AUC gan_faces / k140 / sdfd | collection probe | verdict |',
           '|' + '---|' * 13]
  for c in summary:
    probe = c['numbers'].get('collection_probe_erased')
    probe = '-' if probe is None else f"{probe['mean']:.2f}"
    verdicts = '; '.join(f"{v['verdict']} vs {b}" + (
        f" ({', '.join(k for k, lost in v['losses'].items() if lost)})"
        if v['verdict'] == 'loses' else '') for b, v in c['against'].items()) or '-'
    lines.append(
        f"| {c['reals']} ({c['unseen']} unseen) | {c['lever'] or '-'} | {cell(c, 'unseen_fpr')} | "
        f"{cell(c, 'unseen_worst_group_fpr')} | {worst(c)} | {cell(c, 'fairface_fpr')} | "
        f"{cell(c, 'k140_real_fpr')} | {cell(c, 'gan_faces_real_fpr')} | "
        f"{cell(c, 'sdfd_tpr')} ({c['numbers']['sdfd_max_gap']['mean']:.3f}) | "
        f"{means(c, 'within_auc')} | {means(c, 'logo_auc')} (min {cell(c, 'min_logo_auc')}) | "
        f"{probe} | "
        f"{verdicts} |")
  races = sorted({r for c in summary for r in c['per_seed'][0]['sdfd_race_tpr']} - {'unknown'})
  lines += ['', '| training reals | lever | ' + ' | '.join(races) + ' |',
            '|' + '---|' * (len(races) + 2)]
  for c in summary:
    lines.append(f"| {c['reals']} | {c['lever'] or '-'} | " + ' | '.join(
        f"{np.mean([s['sdfd_race_tpr'].get(r, np.nan) for s in c['per_seed']]):.2f}"
        for r in races) + ' |')
  return '\n'.join(lines)


def ensemble_markdown(summary: List[dict]) -> str:
  """The ensemble rule's conditions per model against the single head (`ensemble_verdict`)."""
  lines = ['| model | FairFace FPR range (model / single head) | worst group FPR range | '
           'draws meeting G3 | mean drop of min LOGO AUC / min within AUC / SDFD TPR | verdict |',
           '|' + '---|' * 6]
  for c in summary:
    v = c['against'].get('none', {})
    if 'ranges_model_base' not in v:
      continue
    ranges, drop = v['ranges_model_base'], v['mean_drop']
    lines.append(
        f"| {c['lever']} | {ranges['unseen_fpr'][0]:.3f} / {ranges['unseen_fpr'][1]:.3f} | "
        f"{ranges['unseen_worst_group_fpr'][0]:.3f} / {ranges['unseen_worst_group_fpr'][1]:.3f} | "
        f"{v['g3_draws_model_base'][0]} / {v['g3_draws_model_base'][1]} of {len(c['per_seed'])} | "
        f"{drop['min_logo_auc']:.3f} / {drop['min_within_auc']:.3f} / {drop['sdfd_tpr']:.3f} | "
        f"{v['verdict']} |")
  return '\n'.join(lines) if len(lines) > 2 else ''


def confirm_markdown(summary: List[dict]) -> str:
  """The confirmatory rule's conditions per model against the single head (`confirm_verdict`)."""
  keys = ('unseen_worst_group_fpr', 'fairface_fpr', 'k140_real_fpr', 'sdfd_tpr', 'min_logo_auc',
          'min_within_auc')
  lines = ['| model | draws meeting G3 (model / single head) | ' + ' | '.join(
      f'mean {k} (model / single head)' for k in keys) + ' | verdict |', '|' + '---|' * 9]
  for c in summary:
    v = c['against'].get('none', {})
    if 'mean_model_base' not in v:
      continue
    (g, gb), (n, nb) = v['g3_draws_model_base'], v['draws_model_base']
    lines.append(f"| {c['lever']} | {g}/{n} / {gb}/{nb} | " + ' | '.join(
        '{:.3f} / {:.3f}'.format(*v['mean_model_base'][k]) for k in keys) + f" | {v['verdict']}"
        + (f" ({', '.join(k for k, lost in v['losses'].items() if lost)})"
           if v['verdict'] == 'loses' else '') + ' |')
  return '\n'.join(lines) if len(lines) > 2 else ''


def parity_markdown(summary: List[dict]) -> str:
  """The SDFD parity rule's numbers per lever against its base (`parity_verdict`), and SDFD's
  TPR at the operating point per prompted race and gender (means over the seeds)."""
  keys = ('sdfd_max_gap', 'sdfd_tpr', 'fairface_fpr', 'fairface_worst_group_fpr', 'min_logo_auc',
          'min_within_auc')
  lines = ['| lever | against | ' + ' | '.join(f'mean {k} (lever / base)' for k in keys)
           + ' | lowest SDFD group, most often (median k/n, Wilson 95%): lever / base | verdict |',
           '|' + '---|' * (len(keys) + 4)]
  by_lever = {(c['reals'], c['lever']): c for c in summary}

  def lowest(c):
    return _most_often([(s['sdfd_lowest_group'][0], s['sdfd_lowest_group'][1]
                         / max(s['sdfd_lowest_group'][2], 1), s['sdfd_lowest_group'][2])
                        for s in c['per_seed']])

  for c in summary:
    for base, v in c['against'].items():
      if 'means_lever_base' not in v:
        continue
      other = by_lever[(c['reals'], '' if base == 'none' else base)]
      lines.append(f"| {c['lever']} | {base} | " + ' | '.join(
          '{:.3f} / {:.3f}'.format(*v['means_lever_base'][k]) for k in keys)
          + f" | {lowest(c)} / {lowest(other)} | {v['verdict']}"
          + (f" ({', '.join(k for k, lost in v['losses'].items() if lost)})"
             if v['verdict'] == 'loses' else '') + ' |')
  if len(lines) == 2:
    return ''
  groups = {attribute: sorted({g for c in summary
                               for g in c['per_seed'][0][f'sdfd_{attribute}_tpr']} - {'unknown'})
            for attribute in ('race', 'gender')}
  lines += ['', '| lever | ' + ' | '.join(groups['race'] + groups['gender']) + ' |',
            '|' + '---|' * (len(groups['race']) + len(groups['gender']) + 1)]

  def mean(c, key, group):
    return np.mean([s.get(key, {}).get(group) or np.nan for s in c['per_seed']])

  for c in summary:  # TPR at the operating point (a race's AUC against the pooled test reals)
    lines.append(f"| {c['lever'] or '-'} | " + ' | '.join(
        f"{mean(c, f'sdfd_{attribute}_tpr', g):.2f}" + (
            f" ({mean(c, 'sdfd_race_auc', g):.3f})" if attribute == 'race' else '')
        for attribute in ('race', 'gender') for g in groups[attribute]) + ' |')
  return '\n'.join(lines)


def audit_markdown(result: dict, source: str = FAIRFACE) -> str:
  """`source`'s audit per draw and per race x gender group of the erasure / ensemble rows
  trained on all three generators (a results JSON of `rows --erasure` or `--ensemble`).

  Rates as k/n with their Wilson 95% interval; G3 per draw as the ensemble rule counts it
  (`meets_g3`); per group, each draw's count and the highest rate's interval.
  """
  def share(k, n):
    low, high = wilson(k, n)
    return f'{k}/{n} = {k / n:.3f} [{low:.3f}, {high:.3f}]'

  by_config = {c['lever']: c for c in result['erasure']}
  full = {}
  for r in result['rows']:
    if tuple(r['fakes']) == GENERATORS and r['lever'] in by_config:
      full.setdefault(r['lever'], {})[r.get('seed', SEED)] = r['audit'][source]
  lines = ['| lever | draw (first seed) | FPR | worst judged group | its FPR | G3 |',
           '|' + '---|' * 6]
  for lever, c in by_config.items():
    for seed, draw in zip(c['seeds'], c['per_seed']):
      a = full[lever][seed]
      worst = a['per_race_x_gender'][a['worst_group']]
      k = int(round(a['fpr'] * a['n']))
      lines.append(f"| {lever or '-'} | {seed} | "
                   f"{share(k, a['n'])} | {a['worst_group']} | "
                   f"{share(int(round(worst['rate'] * worst['n'])), worst['n'])} | "
                   f"{'meets' if meets_g3(draw) else 'misses'} |")
  groups = sorted({g for audits in full.values() for a in audits.values()
                   for g in a['per_race_x_gender']})
  levers = list(by_config)
  lines += ['', '| group | n | ' + ' | '.join(
      f"{lever or '-'}: photos called fake per draw (highest rate [Wilson 95%])"
      for lever in levers) + ' |', '|' + '---|' * (2 + len(levers))]
  for g in groups:
    cells, n = [], None
    for lever in levers:
      stats = [full[lever][seed]['per_race_x_gender'][g] for seed in by_config[lever]['seeds']]
      n = stats[0]['n']
      counts = [int(round(x['rate'] * x['n'])) for x in stats]
      low, high = wilson(max(counts), n)
      cells.append(f"{', '.join(map(str, counts))} ({max(counts) / n:.3f} [{low:.3f}, {high:.3f}])")
    lines.append(f'| {g} | {n} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


# The decision rule's bands for a views setting against `none` (paired seeds).
VIEW_GAIN_AUC, VIEW_GAIN_SEEDS, VIEW_LOSS_AUC = 0.02, 4, 0.02
VIEW_LOSS_FPR, VIEW_LOSS_GROUP_FPR = 0.01, 0.02


def _view_numbers(by_key: dict, head: str, views: str, seed: int) -> dict:
  """The views rule's numbers of one configuration at one seed (LOGO and single-source rows)."""
  full = by_key[(head, views, seed, GENERATORS)]
  logo = {held_out: by_key[(head, views, seed, tuple(g for g in GENERATORS if g != held_out))]
          ['generators'][held_out]['auc'] for held_out in GENERATORS}
  cross = {'gan_faces->k140': by_key[(head, views, seed, (GAN,))]['generators'][K140]['auc'],
           'k140->gan_faces': by_key[(head, views, seed, (K140,))]['generators'][GAN]['auc']}
  within = {s: full['generators'][s]['auc'] for s in GENERATORS}
  fairface = full['audit'][FAIRFACE]
  return {'min_logo_auc': min(logo.values()), **{f'logo {g}': v for g, v in logo.items()},
          'cross_auc': round(float(np.mean(list(cross.values()))), 4), **cross,
          'fairface_fpr': fairface['fpr'],
          'fairface_worst_group_fpr': fairface['worst_group_fpr'] or 0.0,
          'utkface_fpr': full['audit'][UTK]['fpr'], 'min_within_auc': min(within.values()),
          'sdfd_tpr': full['sdfd_groups']['tpr'], 'sdfd_max_gap': full['sdfd_groups']['max_gap']}


def _views_verdict(setting: List[dict], none: List[dict]) -> dict:
  """The views rule: a setting's per-seed numbers against `none`'s at the same seeds."""
  def gain(key):  # setting - none per seed
    return np.array([v[key] - n[key] for v, n in zip(setting, none)], np.float64)

  def mean(rows, key):
    return float(np.mean([r[key] for r in rows]))

  eps = 1e-9  # the numbers are rounded to 4 decimals
  logo, cross = gain('min_logo_auc'), gain('cross_auc')
  met_g4 = lambda rows: (mean(rows, 'fairface_fpr') <= AUDIT_FPR
                         and mean(rows, 'fairface_worst_group_fpr') <= AUDIT_GROUP_FPR)
  checks = {
      'worst LOGO AUC gains > 0.02 (mean), in >= 4 seeds':
          bool(logo.mean() > VIEW_GAIN_AUC + eps and (logo > eps).sum() >= VIEW_GAIN_SEEDS),
      'cross-source AUC gains > 0.02 (mean), no direction loses > 0.02':
          bool(cross.mean() > VIEW_GAIN_AUC + eps and all(
              gain(k).mean() >= -VIEW_LOSS_AUC - eps for k in ('gan_faces->k140',
                                                               'k140->gan_faces'))),
      'FairFace FPR +<= 0.01, worst group +<= 0.02, G4 kept':
          bool(gain('fairface_fpr').mean() <= VIEW_LOSS_FPR + eps
               and gain('fairface_worst_group_fpr').mean() <= VIEW_LOSS_GROUP_FPR + eps
               and (met_g4(setting) or not met_g4(none))),
  }
  keys = [k for k, v in none[0].items() if isinstance(v, float)]
  return {'verdict': 'wins' if all(checks.values()) else 'does not win', 'checks': checks,
          'mean_gain': {k: round(float(gain(k).mean()), 4) for k in keys},
          'seeds_gaining_worst_logo': int((logo > eps).sum())}


def views_summary(rows: List[dict]) -> List[dict]:
  """Per (head, views setting) of the views rows: each seed's numbers, their mean and range,
  and the decision rule's verdict against `none` at the same seeds."""
  by_key = {(r['head'], r.get('views', 'none'), r.get('seed', SEED), tuple(r['fakes'])): r
            for r in rows if r['model'] == 'clip'}
  out = []
  for (head, views), seeds in seeds_by_configuration(by_key).items():
    per_seed = [_view_numbers(by_key, head, views, seed) for seed in seeds]
    out.append({'head': head, 'views': views, 'seeds': seeds, 'numbers': over_seeds(per_seed),
                'per_seed': per_seed})
  by_config = {(c['head'], c['views']): c for c in out}
  for c in out:
    none = by_config.get((c['head'], 'none'))
    if c['views'] != 'none' and none and none['seeds'] == c['seeds']:
      c['against_none'] = _views_verdict(c['per_seed'], none['per_seed'])
  return out


def print_views(summary: List[dict]) -> None:
  keys = ('min_logo_auc', 'logo gan_faces', 'logo k140', 'logo sdfd', 'gan_faces->k140',
          'k140->gan_faces', 'fairface_fpr', 'fairface_worst_group_fpr', 'utkface_fpr',
          'min_within_auc', 'sdfd_max_gap')
  print('\nover seeds: mean [min-max]')
  print(f'{"head":6} {"views":13} ' + ' '.join(f'{k[-16:]:>16}' for k in keys) + '  verdict')
  for c in summary:
    cells = [f"{c['numbers'][k]['mean']:.3f} [{c['numbers'][k]['min']:.2f}-"
             f"{c['numbers'][k]['max']:.2f}]" for k in keys]
    verdict = c.get('against_none', {}).get('verdict', '')
    print(f'{c["head"]:6} {c["views"]:13} ' + ' '.join(f'{x:>16}' for x in cells)
          + f'  {verdict}')


# The 128 px rule's bands (docs/detection_quality.md, "The tower at the crops' own 128 px:
# decision rule"): falls in AUC and SDFD TPR, rises in FairFace's FPR and its worst judged group's
# (one photo of 70), on the means over the seeds; issue 32's cost goal; a transfer gain.
RES_LOSS_AUC, RES_LOSS_SDFD_TPR = 0.02, 0.03
RES_LOSS_FAIRFACE_FPR, RES_LOSS_GROUP_FPR = 0.005, 0.014
RES_COST_RATIO = 2.5  # total p50 of a photo to its verdict over the CNN's (bench/photo.py)
RES_GAIN_AUC = 0.02
RES_TRANSFER = ('min_logo_auc', 'gan_faces->k140', 'k140->gan_faces')


def res_verdict(small: List[dict], native: List[dict], cost_ratio=None) -> dict:
  """The 128 px rule: per-seed numbers (`_view_numbers`) at the smaller input against 224's, means
  over the seeds, and the smaller model's total p50 over the CNN's in one bench/photo.py run
  (None: not measured, which fails its condition).

  Returns:
    verdict ('kept' or 'loses'), each condition and whether it holds, the conditions failing,
    the transfer metrics gaining >= RES_GAIN_AUC (reported only when kept), and the means
    [small, native].
  """
  def mean(rows, key):
    return float(np.mean([r[key] for r in rows]))

  eps = 1e-9  # the rates are rounded to 4 decimals
  change = {k: mean(small, k) - mean(native, k) for k in (
      RES_TRANSFER + ('min_within_auc', 'sdfd_tpr', 'fairface_fpr', 'fairface_worst_group_fpr'))}
  held = {f'{k} falls <= {RES_LOSS_AUC}': bool(-change[k] <= RES_LOSS_AUC + eps)
          for k in RES_TRANSFER + ('min_within_auc',)}
  held[f'sdfd_tpr falls <= {RES_LOSS_SDFD_TPR}'] = bool(
      -change['sdfd_tpr'] <= RES_LOSS_SDFD_TPR + eps)
  held[f'fairface_fpr rises <= {RES_LOSS_FAIRFACE_FPR}'] = bool(
      change['fairface_fpr'] <= RES_LOSS_FAIRFACE_FPR + eps)
  held[f'fairface_worst_group_fpr rises <= {RES_LOSS_GROUP_FPR}'] = bool(
      change['fairface_worst_group_fpr'] <= RES_LOSS_GROUP_FPR + eps)
  held[f'total p50 <= {RES_COST_RATIO}x the cnn\'s'] = bool(
      cost_ratio is not None and cost_ratio <= RES_COST_RATIO + eps)
  failing = [k for k, v in held.items() if not v]
  kept = not failing
  return {'verdict': 'kept' if kept else 'loses', 'conditions': held, 'failing': failing,
          'gains': [k for k in RES_TRANSFER if kept and change[k] >= RES_GAIN_AUC - eps],
          'change': {k: round(v, 4) for k, v in change.items()},
          'cost_ratio': cost_ratio,
          'means_small_native': {k: [round(mean(small, k), 4), round(mean(native, k), 4)]
                                 for k in change}}


RES_KEYS = ('min_logo_auc', 'gan_faces->k140', 'k140->gan_faces', 'min_within_auc', 'sdfd_tpr',
            'fairface_fpr', 'fairface_worst_group_fpr')


def res_markdown(small: List[dict], native: List[dict], seeds: Sequence[int], verdict: dict,
                 sizes: Sequence[int] = (128, 224)) -> str:
  """The docs' table of the 128 px rule: per seed and mean, each input size, then the change."""
  head = '| input | seed | ' + ' | '.join(RES_KEYS) + ' |'
  lines = [head, '|' + '---|' * (len(RES_KEYS) + 2)]
  for size, rows in zip(sizes, (small, native)):
    for seed, r in zip(seeds, rows):
      lines.append(f'| {size} px | {seed} | ' + ' | '.join(f'{r[k]:.3f}' for k in RES_KEYS) + ' |')
    lines.append(f'| **{size} px** | **mean** | ' + ' | '.join(
        f'**{np.mean([r[k] for r in rows]):.3f}**' for k in RES_KEYS) + ' |')
  lines.append(f'| change | mean | ' + ' | '.join(
      f'{verdict["change"][k]:+.3f}' for k in RES_KEYS) + ' |')
  return '\n'.join(lines)


def _fmt(v, width=6):
  return f'{v:{width}.3f}' if isinstance(v, float) else f'{str(v):>{width}}'


def print_table(rows: List[dict], configs: List[dict]) -> None:
  print(f'{"row":62} ' + ' '.join(f'{s[:5] + " AUC":>9} {"TPR.05":>6}' for s in GENERATORS) +
        f' {"FF FPR":>6} {"worst":>6} {"UTK FPR":>7} {"worst":>6} {"SDFD@op":>7} {"gap":>5}')
  for r in rows:
    g, a = r['generators'], r['audit']
    print(f'{r["name"]:62} ' + ' '.join(
        f'{_fmt(g[s]["auc"], 9)} {_fmt(g[s]["tpr_at_fpr_0.05"])}' for s in GENERATORS) +
          f' {_fmt(a[FAIRFACE]["fpr"])} {_fmt(a[FAIRFACE]["worst_group_fpr"])}'
          f' {_fmt(a[UTK]["fpr"], 7)} {_fmt(a[UTK]["worst_group_fpr"])}'
          f' {_fmt(r["sdfd_groups"]["tpr"], 7)} {_fmt(r["sdfd_groups"]["max_gap"], 5)}')
  print(f'\n{"rank":4} {"configuration (all three generators)":62} {"excess":>6} {"minLOGO":>7} '
        f'{"minWithin":>9} {"goals":>5}')
  for c in configs:
    print(f'{str(c["rank"]):4} {c["name"]:62} {_fmt(c["audit_excess"])} '
          f'{_fmt(c["min_logo_auc"], 7)} {_fmt(c["min_within_auc"], 9)} {c["goals_met"]:5}')


def run_rows(args) -> int:
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(2)
  start = time.time()
  d = load_embedded(args.cache, args.fairface_audit, args.sdfd_all, args.image_size)
  if args.views:
    load_views(d, sorted({k for v in args.views for k in v.split('+') if k != 'none'}),
               args.cache)
  wanted = set(filter(None, args.rows.split(',')))
  models = set(args.models.split(','))
  cnn_reals = set(args.cnn_reals.split(','))
  config = cnn_config(args.cnn_epochs)
  rows, clip_logits, cnn_logits = [], {}, {}

  def part(spec, head):  # the row of `spec`'s fakes and reals that a fused row stacks
    return _named(dict(spec, model='clip' if head != 'cnn' else 'cnn', head=head, lever=''))

  specs = (view_specs(args.views, args.seeds, args.heads.split(',')) if args.views else
           ensemble_specs(args.single_seeds, args.ensemble_seeds) if args.ensemble else
           erasure_specs(args.seeds, args.reals, args.levers) if args.erasure else row_specs())
  # The views rows already in --out are kept, not retrained (a head's row is deterministic
  # given its seed: the none row at seed 42 reproduces generalization.json's), so settings can
  # be added as their views are embedded.
  kept = {}
  if args.views and os.path.exists(args.out):
    with open(args.out) as f:
      kept = {r['name']: r for r in json.load(f)['rows']}
  for spec in specs:
    if spec['name'] in kept:
      rows.append(kept[spec['name']])
      continue
    if (wanted and spec['name'] not in wanted) or spec['model'] not in models or (
        spec['model'] != 'clip' and spec['reals'] not in cnn_reals):
      continue
    if spec['model'] != 'clip' and args.cached_cnn_only and not os.path.exists(
        cnn_logits_file(d, part(spec, 'cnn'), config, args.work)):
      continue
    if spec['model'] == 'fused':
      # Its parts are computed here when not among the rows asked for (then not listed).
      cnn_spec, clip_spec = part(spec, 'cnn'), part(spec, spec['head'].split()[-1])
      if cnn_spec['name'] not in cnn_logits:
        cnn_logits[cnn_spec['name']] = cnn_row(d, cnn_spec, config, args.work)[1]
      if clip_spec['name'] not in clip_logits:
        clip_logits[clip_spec['name']] = clip_row(d, clip_spec, args.epochs)[1]
      rows.append(fused_row(d, spec, cnn_logits[cnn_spec['name']],
                            clip_logits[clip_spec['name']]))
    elif spec['model'] == 'cnn':
      row, cnn_logits[spec['name']] = cnn_row(d, spec, config, args.work)
      rows.append(row)
    else:
      row, clip_logits[spec['name']] = clip_row(d, spec, args.epochs)
      rows.append(row)
    seconds = rows[-1].get('head_train_seconds', rows[-1].get('cnn_train_seconds', 0))
    print(f'{spec["name"]}: {seconds} s', flush=True)
  configs = configurations(rows)
  print_table(rows, configs)
  summary = (erasure_summary(rows, confirm_verdict if args.single_seeds else None)
             if args.erasure or args.ensemble else None)
  if summary:
    print_erasure(summary)
  views = views_summary(rows) if args.views else None
  if views:
    print_views(views)
  prepared = prepare_file(args.fairface_audit, args.sdfd_all, args.image_size)
  import dataclasses
  result = {'command': f'bench/generalization.py rows --epochs {args.epochs}'
                       + (f' --cnn-epochs {args.cnn_epochs}' if args.cnn_epochs else '')
                       + (f' --erasure --seeds {",".join(map(str, args.seeds))}'
                          f' --reals {",".join(args.reals)} --levers {",".join(args.levers)}'
                          if args.erasure else '')
                       + (' --ensemble' if args.ensemble else '')
                       + (f' --single-seeds {_seed_runs(args.single_seeds)} --ensemble-seeds '
                          f'{_seed_runs(args.ensemble_seeds)}' if args.single_seeds else '')
                       + (f' --views {",".join(args.views)} --seeds '
                          f'{",".join(map(str, args.seeds))} --heads {args.heads}'
                          if args.views else '')
                       + (f' --fairface-audit {args.fairface_audit}' if args.fairface_audit
                          else '')
                       + (' --sdfd-all' if args.sdfd_all else '')
                       + (f' --image-size {args.image_size}' if args.image_size != 224 else ''),
            'counts': _counts(d),
            'prepare': json.load(open(prepared)) if os.path.exists(prepared) else None,
            'cnn': {'config_file': os.path.relpath(CNN_CONFIG, ROOT),
                    'train': dataclasses.asdict(config)},
            'load_avg': round(os.getloadavg()[0], 2), 'seconds': round(time.time() - start, 1),
            'rows': rows, 'configurations': configs}
  if summary:
    result['erasure'] = summary
  if views:
    result['views'] = views
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(f'-> {args.out}')
  return 0


def res_table(files: Sequence[str], photo_label: str) -> int:
  """res-table: the views rows (`--views none`) at a smaller input and at 224 (`files`, in that
  order), judged by `res_verdict` with the cost of `photo_label`'s bench/photo.py run; prints the
  docs' table and the verdict."""
  per_size = []
  for path in files:
    with open(path) as f:
      (summary,) = [c for c in json.load(f)['views'] if c['views'] == 'none']
    per_size.append(summary)
  small, native = per_size
  size = int(re.search(r'_(\d+)px\.json$', files[0]).group(1))
  cost = None
  if photo_label:
    with open(os.path.join(ROOT, 'bench', 'results', 'photo_backbone.json')) as f:
      cost = json.load(f)['runs'][photo_label]['models'][f'clip_{size}']['total_p50_over_cnn']
  if small['seeds'] != native['seeds']:
    raise SystemExit(f'res-table: seeds {small["seeds"]} against {native["seeds"]}')
  verdict = res_verdict(small['per_seed'], native['per_seed'], cost)
  print(res_markdown(small['per_seed'], native['per_seed'], small['seeds'], verdict,
                     (size, 224)))
  print(json.dumps(verdict, indent=1))
  return 0


def _counts(d) -> Dict[str, int]:
  keys = [f'{s} {sp} {"fake" if l else "real"}' for s, sp, l in zip(d['source'], d['split'],
                                                                      d['label'])]
  names, counts = np.unique(keys, return_counts=True)
  return dict(zip(names.tolist(), counts.tolist()))


def seed_list(value: str) -> List[int]:
  """Seeds from a comma-separated list of seeds and inclusive ranges: '100-109,120'."""
  seeds = []
  for part in filter(None, value.split(',')):
    first, _, last = part.partition('-')
    seeds += list(range(int(first), int(last or first) + 1))
  return seeds


def _seed_runs(seeds: Sequence[int]) -> str:
  """`seed_list`'s input for consecutive `seeds`: '100-109'."""
  return f'{seeds[0]}-{seeds[-1]}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage', choices=('prepare', 'rows', 'erasure-table', 'audit-table',
                                        'res-table',
                                        'collection-probe'),
                      help='erasure-table: the docs\' tables from the erasure rows\' JSON files; '
                           'audit-table: FairFace\'s audit per draw and group from one such file; '
                           'collection-probe: which training collection the unseen reals resemble')
  parser.add_argument('files', nargs='*', help='erasure-table: the JSON files (default: '
                      'both directions of reals)')
  parser.add_argument('--cache', default=CACHE, help='the Trainer\'s embedding cache folder')
  parser.add_argument('--epochs', type=int, default=40)
  parser.add_argument('--rows', default='', help='comma-separated row names (default: all)')
  parser.add_argument('--models', default='clip,cnn,fused',
                      help='comma-separated models whose rows run: clip, cnn, fused')
  parser.add_argument('--cnn-reals', default=','.join(CNN_REALS),
                      help='comma-separated training reals of the CNN and fused rows')
  parser.add_argument('--cnn-epochs', type=int, default=0,
                      help='the CNN rows\' epochs; 0: the config\'s (early stopping as there)')
  parser.add_argument('--cached-cnn-only', action='store_true',
                      help='only the CNN and fused rows whose CNN logits are stored (no training)')
  parser.add_argument('--work', default=WORK,
                      help='where the CNN rows keep their logits and training runs')
  parser.add_argument('--erasure', action='store_true',
                      help='the concept-erasure rows (erasure_specs) instead of row_specs; '
                           f'default --out {os.path.relpath(ERASURE_OUT, ROOT)}')
  parser.add_argument('--ensemble', action='store_true',
                      help='the ensemble rows (ensemble_specs): the committed configuration\'s '
                           'head single, early-stopped and as ensembles; default --out '
                           f'{os.path.relpath(ENSEMBLE_OUT, ROOT)}')
  parser.add_argument('--single-seeds', default=[], type=seed_list,
                      help='rows --ensemble: the confirmatory rows (confirm_verdict), the single '
                           'head at these seeds (e.g. 100-109), no early stopping; default --out '
                           f'{os.path.relpath(CONFIRM_OUT, ROOT)}')
  parser.add_argument('--ensemble-seeds', default=[], type=seed_list,
                      help='with --single-seeds: an ensemble of each '
                           f'{ENSEMBLE_SIZE} consecutive seeds (e.g. 200-239)')
  parser.add_argument('--seeds', default=None, type=lambda v: [int(s) for s in v.split(',')],
                      help='the erasure and views rows\' head seeds (default: '
                           f'{",".join(map(str, ERASURE_SEEDS))} and '
                           f'{",".join(map(str, VIEW_SEEDS))})')
  parser.add_argument('--reals', default=','.join(ERASURE_REALS), type=lambda v: v.split(','),
                      help='the erasure rows\' training reals')
  parser.add_argument('--levers', default=','.join(ERASURE_LEVERS), type=lambda v: v.split(','),
                      help='the erasure rows\' levers (\'\' for none)')
  parser.add_argument('--fairface-audit', type=int, default=0,
                      help='prepare / rows: the FairFace audit enlarged to N faces per race x '
                           'gender group (inputs); 0: the sample as it is')
  parser.add_argument('--sdfd-all', action='store_true',
                      help='prepare / rows: SDFD\'s other 300 fakes added to its test split '
                           '(inputs); results beside the sample\'s (_sdfd_all)')
  parser.add_argument('--views', default='', type=lambda v: [s for s in v.split(',') if s],
                      help='prepare: comma-separated views of the training crops to embed '
                           f'({", ".join(VIEW_INDEX)}); rows: the views rows (view_specs) of '
                           f'these settings (e.g. {",".join(VIEW_SETTINGS)}) instead of '
                           f'row_specs, default --out {os.path.relpath(VIEWS_OUT, ROOT)}')
  parser.add_argument('--heads', default='mlp', help='the views rows\' heads (linear, mlp)')
  parser.add_argument('--photo-label', default='',
                      help='res-table: the bench/results/photo_backbone.json run whose clip_<size> '
                      'total p50 over the cnn\'s is the cost condition')
  parser.add_argument('--image-size', type=int, default=224,
                      help='the CLIP tower\'s input side, px (train.image_size; 128: the crops as '
                      'they are); embeddings in that size\'s cache folder, results in '
                      '_<size>px files')
  parser.add_argument('--out', default=None)
  args = parser.parse_args(argv)
  args.seeds = args.seeds or list(VIEW_SEEDS if args.views else ERASURE_SEEDS)
  if not args.out:
    if args.erasure and tuple(args.reals) != ERASURE_REALS:
      # One direction of reals per run (each under 10 minutes of CPU): a file each.
      args.out = ERASURE_OUT.replace('.json', '_' + '_'.join(r.strip('+') for r in args.reals)
                                     + '.json')
    else:
      args.out = (VIEWS_OUT if args.views else
                  CONFIRM_OUT if args.ensemble and args.single_seeds else
                  ENSEMBLE_OUT if args.ensemble else
                  ERASURE_OUT if args.erasure else OUT)
    if args.fairface_audit:  # never over the committed sample's results
      args.out = args.out.replace('.json', f'_audit{args.fairface_audit}.json')
    if args.sdfd_all:
      args.out = args.out.replace('.json', '_sdfd_all.json')
    if args.image_size != 224:
      args.out = args.out.replace('.json', f'_{args.image_size}px.json')
  if set(args.views) - {'none'} and args.image_size != 224:
    parser.error('--views: the views are embedded at 224 px only (--views none at any size)')
  if args.stage == 'prepare':
    return prepare(args.cache, args.fairface_audit, args.views, args.sdfd_all, args.image_size)
  if args.stage == 'collection-probe':
    d = load_embedded(args.cache, args.fairface_audit, args.sdfd_all)
    for reals in ERASURE_REALS:
      print(f'{reals}: {UNSEEN[reals][0]} test reals named as {unseen_named_as(d, reals)}')
    return 0
  if args.stage == 'res-table':
    return res_table(args.files, args.photo_label)
  if args.stage == 'audit-table':
    for path in args.files:
      with open(path) as f:
        print(audit_markdown(json.load(f)))
    return 0
  if args.stage == 'erasure-table':
    summary = {}
    for path in args.files or [ERASURE_OUT.replace('.json', f'_{name}.json')
                               for name in ('utkface', 'fairface', 'ffhq')]:
      with open(path) as f:
        for c in json.load(f)['erasure']:  # a configuration in two files: the same rows
          summary.setdefault((c['reals'], c['lever']), c)
    levers = ERASURE_LEVERS + ('erase_ffhq',) + ENSEMBLE_LEVERS[1:] + PARITY_LEVERS
    ordered = sorted(summary.values(), key=lambda c: (
        ERASURE_REALS.index(c['reals']),
        levers.index(c['lever']) if c['lever'] in levers else len(levers), c['lever']))
    print(erasure_markdown(ordered))
    for rule in (ensemble_markdown(ordered), confirm_markdown(ordered), parity_markdown(ordered)):
      if rule:
        print('\n' + rule)
    return 0
  return run_rows(args)


if __name__ == '__main__':
  sys.exit(main())
