"""Quality bench: what detects GAN faces across sources, on the shared data.

Every row trains the Trainer's own code (data.py, mitigation.py, augment.py,
training.py, model.py) and is scored within source and across sources:

* train `gan_faces` -> score `gan_faces` test (within) and `k140` test (cross);
* train `k140` -> score `k140` test (within) and `gan_faces` test (cross);
* train both (balanced over source x label) -> score each test split;

with AUC, TPR at FPR 0.05 (threshold chosen on the row's own eval reals), and
FairFace val reals called fake at that threshold (overall and per race x
gender), beside the radial-spectrum floor (spectral.py) trained and scored on
the same crops.

Protocol (differs from the pipeline's where said):
* crops: the ingestion's own FacePreparer (dlib alignment, HOG only -- the
  pipeline also runs the CNN detector where HOG finds no face, ~1.3 CPU-s each)
  at 128 px, prepared once and cached in runs/quality/crops.npz
  (`python bench/quality.py prepare`); gan_faces train/valid subsampled
  (`--per-class`), k140 and FairFace val whole;
* treatments (components/face_preparation/treatment.py) applied to the cached
  crops, then encoded at JPEG q95 like ingestion;
* model input 64 px (the native-resolution crop: the centre half of the 128 px
  alignment), a few CPU epochs, one seed; the pipeline trains at its config's
  size for more epochs.

Decision rule, written before the runs: the cross-source rows (mean of the
two cross AUCs, then the both-trained per-source AUCs) and the FairFace FPR
(overall <= 0.05, worst race x gender group <= 0.08) decide; within-source AUC
breaks ties.

  nice -n 10 .venv/bin/python bench/quality.py prepare
  nice -n 10 .venv/bin/python bench/quality.py rows [--rows a,b] [--epochs 4] [--out F]

A row already in the output file is skipped, so an interrupted run resumes;
rows can be split over two processes with different --out files and merged
(`python bench/quality.py merge F1 F2`, into bench/results/quality.json).

Prints the table and writes bench/results/quality.json.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DATA = os.environ.get('FACES_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
WORK = os.path.join(ROOT, 'runs', 'quality')
CROPS = os.path.join(WORK, 'crops.npz')
CROPS_PREALIGNED = os.path.join(WORK, 'crops_prealigned.npz')
OUT = os.path.join(ROOT, 'bench', 'results', 'quality.json')
GAN, K140, FAIRFACE = 'gan_faces', 'k140', 'fairface'


def prepare(per_class: int) -> int:
  """128 px crops of every bench input, through the ingestion's FacePreparer, two ways.

  crops.npz: every image detected and FFHQ-aligned by dlib (what ingestion does
  with `align: dlib`, and what any uploaded photo goes through);
  crops_prealigned.npz: the same records, but the GAN sources' images -- which
  are FFHQ-aligned already -- only as `align: none` takes them (the centred
  square, resized to 128 px only where larger: k140's 256 px), FairFace still
  through dlib. Records where HOG finds no face are left out of both.
  """
  from fakefaces.components.shared import features
  from fakefaces.components.face_example_gen import sources
  from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig
  from fakefaces.components.face_preparation.faces import FacePreparation, FacePreparer

  config = IngestConfig(sources=[
      SourceConfig(kind='fairface', path=os.path.join(DATA, 'fairface'), role='audit'),
      SourceConfig(kind='kaggle140k', path=os.path.join(DATA, 'gan_faces'), name=GAN),
      SourceConfig(kind='kaggle140k', path=os.path.join(DATA, 'k140'), name=K140)])
  records = [r for r in sources.list_inputs(config) if not r.problem and
             (r.source != FAIRFACE or '/val/' in r.image_id)]
  # gan_faces is 6x k140: a deterministic per (split, label) subset keeps the bench small.
  kept, seen = [], {}
  for r in records:
    key = (r.source, r.split, r.label)
    limit = per_class if (r.source == GAN and r.split != features.TEST) else 0
    seen[key] = seen.get(key, 0) + 1
    if not limit or seen[key] <= limit:
      kept.append(r)
  preparer = FacePreparer(FacePreparation(align='dlib', detector='hog', output_size=128))
  prealigned = FacePreparer(FacePreparation(align='none', output_size=128))
  crops, crops_prealigned, meta, missed = [], [], [], 0
  start = time.time()
  for i, r in enumerate(kept):
    with open(r.path, 'rb') as f:
      data = f.read()
    photo = preparer.prepare(data, all_faces=False)
    if not photo.faces:
      missed += 1
      continue
    aligned = np.asarray(photo.faces[0].aligned.convert('RGB'), np.uint8)
    crops.append(aligned)
    crops_prealigned.append(aligned if r.source == FAIRFACE else np.asarray(
        prealigned.prepare(data, all_faces=False).faces[0].aligned.convert('RGB'), np.uint8))
    meta.append((r.source, r.split, r.label, r.race, r.gender, r.image_id))
    if i % 500 == 0:
      print(f'{i}/{len(kept)} prepared, {missed} without a face, {time.time() - start:.0f} s',
            flush=True)
  os.makedirs(WORK, exist_ok=True)
  columns = list(zip(*meta))
  for path, images in ((CROPS, crops), (CROPS_PREALIGNED, crops_prealigned)):
    np.savez_compressed(path, images=np.stack(images), source=np.array(columns[0]),
                        split=np.array(columns[1]), label=np.array(columns[2], np.int64),
                        race=np.array(columns[3]), gender=np.array(columns[4]),
                        image_id=np.array(columns[5]))
  print(f'{len(crops)} crops ({missed} without a HOG face) -> {CROPS}, {CROPS_PREALIGNED}, '
        f'{time.time() - start:.0f} s')
  return 0


# ------------------------------------------------------------------ rows

TREATMENTS = {
    # the centre half of the 128 px alignment, its own 64 px: the model sees no upsampled region
    'native': dict(output_size=128, crop_fraction=0.5, native_crop=True),
    # the same, through a 48 px bottleneck and a shared q75 generation
    'native+resample': dict(output_size=128, crop_fraction=0.5, native_crop=True,
                            resample_size=48, shared_jpeg_quality=75),
    # the shipped shared_data.yaml treatment (centre half upsampled to 128, 64 px, q75)
    'shipped': dict(output_size=128, crop_fraction=0.5, resample_size=64,
                    shared_jpeg_quality=75),
    # the whole 128 px alignment, no crop: every face re-aligned by dlib (model input 128 px)
    'aligned128': dict(output_size=128),
    # the GAN sources' own FFHQ alignment, untouched at 128 px (k140 reduced from 256);
    # FairFace through dlib (crops_prealigned.npz)
    'prealigned128': dict(output_size=128),
}
# Which cached crops each treatment starts from.
TREATMENT_CROPS = {'prealigned128': CROPS_PREALIGNED}
# Rows trained on prealigned crops are also scored on the same test images re-aligned
# by dlib: what an uploaded copy of that image becomes in `predict` and the web page.
PHOTO_PATH_TREATMENT = {'prealigned128': 'aligned128'}
AUGMENT_ALL = dict(augment_min_scale=0.5, augment_blur_sigma=1.2, augment_jpeg_quality=[40, 95],
                   augment_jpeg_twice=True, augment_noise_sigma=0.02, augment_probability=0.5)
AUGMENT_RESAMPLE = dict(augment_min_scale=0.5, augment_probability=0.5)
AUGMENT_JPEG = dict(augment_jpeg_quality=[40, 95], augment_jpeg_twice=True,
                    augment_probability=0.5)
AUGMENT_BLUR_NOISE = dict(augment_blur_sigma=1.2, augment_noise_sigma=0.02,
                          augment_probability=0.5)
HP = dict(input_filter='highpass')
# name -> (treatment, training sources, TrainConfig changes). In the order they run:
# the rows the decision needs first.
ROWS = {
    'highpass': ('native', 'gan', HP),
    'highpass+augment': ('native', 'gan', dict(HP, **AUGMENT_ALL)),
    'k140:highpass+augment': ('native', 'k140', dict(HP, **AUGMENT_ALL)),
    'both:highpass+augment+balanced': ('native', 'both',
                                       dict(HP, balance_sources=True, **AUGMENT_ALL)),
    'pixels': ('native', 'gan', {}),
    'highpass+augment @shipped treatment': ('shipped', 'gan', dict(HP, **AUGMENT_ALL)),
    'highpass+augment @native+resample': ('native+resample', 'gan', dict(HP, **AUGMENT_ALL)),
    'highpass+augment grayscale': ('native', 'gan', dict(HP, color_mode='grayscale',
                                                          **AUGMENT_ALL)),
    'highpass+augment +full-resolution stem': ('native', 'gan', dict(
        HP, full_resolution_convs=2, **AUGMENT_ALL)),
    'highpass+augment resample only': ('native', 'gan', dict(HP, **AUGMENT_RESAMPLE)),
    'highpass+augment jpeg only': ('native', 'gan', dict(HP, **AUGMENT_JPEG)),
    'highpass+augment blur+noise only': ('native', 'gan', dict(HP, **AUGMENT_BLUR_NOISE)),
    'both:+cosine +early stopping': ('native', 'both', dict(
        HP, balance_sources=True, learning_rate_schedule='cosine', epochs=8,
        early_stopping_patience=2, early_stopping_monitor='val_auc', **AUGMENT_ALL)),
    # 128 px rows (`prepare --per-class 1000`; --out bench/results/quality_128.json)
    '128 realigned:highpass+augment': ('aligned128', 'gan', dict(HP, image_size=128,
                                                                  **AUGMENT_ALL)),
    '128 prealigned:highpass+augment': ('prealigned128', 'gan', dict(HP, image_size=128,
                                                                      **AUGMENT_ALL)),
    '128 prealigned k140:highpass+augment': ('prealigned128', 'k140', dict(
        HP, image_size=128, **AUGMENT_ALL)),
    '128 prealigned both:highpass+augment+balanced': ('prealigned128', 'both', dict(
        HP, image_size=128, balance_sources=True, **AUGMENT_ALL)),
}
TRAIN_SOURCES = {'gan': (GAN,), 'k140': (K140,), 'both': (GAN, K140)}
TARGET_FPR = 0.05
# The architecture of every row that does not name one (the shipped configuration's).
DEFAULT_ARCHITECTURE = 'baseline'


def treated_records(crops, name: str, work: str) -> Dict[str, str]:
  """TFRecords (train/eval/test/audit) of the cached crops after treatment `name`; cached."""
  import tensorflow as tf
  from fakefaces.components.shared import features
  from fakefaces.components.face_preparation import images, treatment
  from fakefaces.components.face_preparation.faces import FacePreparation

  config = FacePreparation(**TREATMENTS[name])  # checked as it is built
  folder = os.path.join(work, 'records', name.replace('+', '_'))
  paths = {split: os.path.join(folder, f'{split}.tfrecord.gz')
           for split in (features.TRAIN, features.EVAL, features.TEST)}
  if all(os.path.exists(p) for p in paths.values()):
    return paths
  os.makedirs(folder, exist_ok=True)
  writers = {split: tf.io.TFRecordWriter(p + '.tmp', options='GZIP') for split, p in paths.items()}
  for k in range(len(crops['label'])):
    image = treatment.equalize(Image.fromarray(crops['images'][k]), config)
    feature = {features.IMAGE: _bytes(images.encode_jpeg(image, config.jpeg_quality)),
               features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(
                   value=[int(crops['label'][k])])),
               features.SOURCE: _bytes(str(crops['source'][k]).encode()),
               features.IMAGE_ID: _bytes(str(crops['image_id'][k]).encode())}
    writers[str(crops['split'][k])].write(
        tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  for split, writer in writers.items():
    writer.close()
    os.replace(paths[split] + '.tmp', paths[split])
  return paths


def _bytes(value: bytes):
  import tensorflow as tf
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _filtered(path: str, keep_sources, out: str) -> str:
  """The records of `path` whose source is in `keep_sources`, written to `out` (cached)."""
  import tensorflow as tf
  from fakefaces.components.shared import features
  if os.path.exists(out):
    return out
  with tf.io.TFRecordWriter(out + '.tmp', options='GZIP') as writer:
    for raw in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      example = tf.train.Example.FromString(raw.numpy())
      if example.features.feature[features.SOURCE].bytes_list.value[0].decode() in keep_sources:
        writer.write(raw.numpy())
  os.replace(out + '.tmp', out)
  return out


def _images(path: str, config) -> Any:
  """(images [n, s, s, c] as the model sees them, labels, sources, image ids) of a records file."""
  import tensorflow as tf
  from fakefaces.components.shared import features
  from fakefaces.components.trainer import data
  batches = list(data.tfrecord_dataset([path], config, training=False))
  images = np.concatenate([b[0].numpy() for b in batches])
  labels = np.concatenate([b[1].numpy() for b in batches]).astype(int)
  spec = {features.SOURCE: tf.io.FixedLenFeature([], tf.string),
          features.IMAGE_ID: tf.io.FixedLenFeature([], tf.string)}
  meta = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(
      path, compression_type='GZIP')]
  return (images, labels, np.array([m[features.SOURCE].numpy().decode() for m in meta]),
          np.array([m[features.IMAGE_ID].numpy().decode() for m in meta]))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float):
  """The Trainer's TPR at FPR `target` (`operating_point.tpr_at_fpr`), rounded as the
  bench's tables are; None without both classes."""
  from fakefaces.components.trainer import operating_point
  tpr = operating_point.tpr_at_fpr(labels, scores, target)
  return None if tpr is None else round(tpr, 4)


def score_sources(labels, scores, sources, threshold, floor=None) -> Dict[str, Any]:
  """Per source: AUC, TPR at FPR 0.05 (its own ROC), FPR/TPR at `threshold`, the floor's AUC."""
  from fakefaces.components.trainer import spectral
  out = {}
  for source in sorted(set(sources.tolist())):
    m = sources == source
    y, s = labels[m], scores[m]
    auc = spectral.auc_or_none(y, s)
    row = {'n': int(m.sum()), 'auc': None if auc is None else round(auc, 4),
           'tpr_at_fpr_0.05': tpr_at_fpr(y, s, TARGET_FPR),
           'fpr_at_threshold': round(float(np.mean(s[y == 0] >= threshold)), 4) if (y == 0).any()
           else None,
           'tpr_at_threshold': round(float(np.mean(s[y == 1] >= threshold)), 4) if (y == 1).any()
           else None}
    if floor is not None:
      floor_auc = spectral.auc_or_none(y, floor[m])
      row['floor_auc'] = None if floor_auc is None else round(floor_auc, 4)
      row['beats_floor'] = spectral.compare(auc, floor_auc)['beats_floor']
    out[source] = row
  return out


def fairface_fpr(scores, image_ids, threshold, demographics) -> Dict[str, Any]:
  """FairFace val reals called fake at `threshold`: overall and per race x gender."""
  called = scores >= threshold
  groups: Dict[str, List[bool]] = {}
  for image_id, c in zip(image_ids, called):
    race, gender = demographics[image_id]
    groups.setdefault(f'{race} x {gender}', []).append(bool(c))
  per_group = {g: round(float(np.mean(v)), 4) for g, v in sorted(groups.items())}
  return {'n': int(len(scores)), 'fpr': round(float(np.mean(called)), 4),
          'worst_group_fpr': max(per_group.values()) if per_group else None,
          'per_race_x_gender': per_group}


def run_rows(names: List[str], epochs: int, architectures: List[str], out: str,
             figures: str = '') -> int:
  """Trains and scores every row x architecture not yet in `out`; rewrites `out` after each.

  Each result also holds the architecture's size and training speed
  (`size_and_speed`) and its learning curves (`curve_summary`; the PNG is
  copied to `figures`/<architecture>.png when `figures` is given).
  """
  import shutil
  import tensorflow as tf
  from fakefaces.components.shared import features
  from fakefaces.components.data_gate import shortcut
  from fakefaces.components.data_gate.config import SourceShortcutConfig
  from fakefaces.components.trainer import (curves, data, mitigation, operating_point, spectral,
                                            training)
  from fakefaces.components.trainer.config import TrainConfig

  tf.config.threading.set_intra_op_parallelism_threads(2)
  loaded = {}

  def crops_for(treatment_name):
    path = TREATMENT_CROPS.get(treatment_name, CROPS)
    if path not in loaded:
      loaded[path] = dict(np.load(path))
    return loaded[path]

  crops = crops_for('native')
  demographics = {str(i): (str(r), str(g)) for i, r, g, s in zip(
      crops['image_id'], crops['race'], crops['gender'], crops['source']) if s == FAIRFACE}
  results = json.load(open(out))['rows'] if os.path.exists(out) else []
  # Rows written before rows named their architecture were all trained with the default one.
  done = {(r['row'], r.get('architecture', DEFAULT_ARCHITECTURE)) for r in results}
  for name, architecture in [(n, a) for n in names for a in architectures]:
    if (name, architecture) in done:
      continue
    treatment_name, train_key, changes = ROWS[name]
    start = time.time()
    paths = treated_records(crops_for(treatment_name), treatment_name, WORK)
    keep = TRAIN_SOURCES[train_key]
    row_dir = os.path.join(WORK, 'rows', ''.join(c if c.isalnum() else '_' for c in name))
    if architecture != DEFAULT_ARCHITECTURE:
      row_dir = os.path.join(row_dir, architecture)
    os.makedirs(row_dir, exist_ok=True)
    train_file = _filtered(paths[features.TRAIN], keep, os.path.join(row_dir, 'train.tfrecord.gz'))
    eval_file = _filtered(paths[features.EVAL], keep, os.path.join(row_dir, 'eval.tfrecord.gz'))
    config = TrainConfig(architecture=architecture, image_size=64, color_mode='rgb',
                         epochs=epochs, early_stopping_patience=0, seed=42)
    config = dataclasses.replace(config, **changes)
    training.seed_everything(config)
    train_config, train_ds, wrapper = mitigation.training_inputs([train_file], config)
    eval_ds = data.tfrecord_dataset([eval_file], train_config, training=False)
    counts = data.count_labels([train_file])
    model, history = training.train(train_config, train_ds, eval_ds, counts,
                                    os.path.join(row_dir, 'run'), model_wrapper=wrapper)
    # Scores of the eval reals set the threshold (FPR 0.05 on the training sources' reals).
    eval_x, eval_y, _, _ = _images(eval_file, config)
    test_x, test_y, test_src, test_ids = _images(paths[features.TEST], config)
    eval_scores = model.predict(eval_x, batch_size=128, verbose=0).reshape(-1)
    test_scores = model.predict(test_x, batch_size=128, verbose=0).reshape(-1)
    threshold = operating_point.threshold_for_fpr(eval_y, eval_scores, TARGET_FPR)
    train_x, train_y, train_src, train_ids = _images(train_file, config)
    floor = spectral.fit_floor(train_x, train_y)
    floor_scores = spectral.floor_scores(floor, test_x)
    floor_eval = spectral.floor_scores(floor, eval_x)
    floor_threshold = operating_point.threshold_for_fpr(eval_y, floor_eval, TARGET_FPR)
    is_ff = test_src == FAIRFACE
    photo_path = None
    if treatment_name in PHOTO_PATH_TREATMENT:
      other = PHOTO_PATH_TREATMENT[treatment_name]
      photo_x, photo_y, photo_src, _ = _images(
          treated_records(crops_for(other), other, WORK)[features.TEST], config)
      photo_scores = model.predict(photo_x, batch_size=128, verbose=0).reshape(-1)
      keep_gan = photo_src != FAIRFACE
      photo_path = {'treatment': other, 'sources': score_sources(
          photo_y[keep_gan], photo_scores[keep_gan], photo_src[keep_gan], threshold)}
    # The DataGate's source-shortcut check on what this row trains on.
    gate_rows = [{features.IMAGE: r[features.IMAGE].numpy(), features.LABEL: int(r[features.LABEL]),
                  features.SOURCE: r[features.SOURCE].numpy().decode(),
                  features.IMAGE_ID: r[features.IMAGE_ID].numpy().decode()}
                 for r in tf.data.TFRecordDataset(train_file, compression_type='GZIP').map(
                     lambda s: tf.io.parse_single_example(s, {
                         features.IMAGE: tf.io.FixedLenFeature([], tf.string),
                         features.LABEL: tf.io.FixedLenFeature([], tf.int64),
                         features.SOURCE: tf.io.FixedLenFeature([], tf.string),
                         features.IMAGE_ID: tf.io.FixedLenFeature([], tf.string)}))]
    gate = shortcut.check_source_shortcut(iter(gate_rows), SourceShortcutConfig(on_shortcut='warn'))
    run_dir = os.path.join(row_dir, 'run')
    if figures:
      os.makedirs(figures, exist_ok=True)
      shutil.copyfile(os.path.join(run_dir, curves.LEARNING_CURVES_FILE),
                      os.path.join(figures, f'{architecture}.png'))
    row = {
        'row': name, 'architecture': architecture, 'treatment': treatment_name,
        'trained_on': list(keep),
        'config_changes': changes, 'train_examples': int(sum(counts.values())),
        'epochs_run': history['epochs_run'], 'seconds': round(time.time() - start, 1),
        **size_and_speed(model, history, int(sum(counts.values()))),
        'curves': curve_summary(history),
        'threshold': round(threshold, 6),
        'sources': score_sources(test_y[~is_ff], test_scores[~is_ff], test_src[~is_ff],
                                 threshold, floor_scores[~is_ff]),
        'fairface': fairface_fpr(test_scores[is_ff], test_ids[is_ff], threshold, demographics),
        'floor_fairface_fpr': round(float(np.mean(floor_scores[is_ff] >= floor_threshold)), 4),
        'photo_path': photo_path,
        'data_gate': {'passed': gate['passed'], 'findings': gate['findings'],
                      'pairs': [{k: p.get(k) for k in ('class', 'sources', 'auc', 'status',
                                                       'fake_share')} for p in gate['pairs']]},
    }
    results.append(row)
    print(summary_line(row), flush=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
      json.dump({'protocol': protocol(epochs), 'rows': results}, f, indent=2)
  print_table(results)
  return 0


def size_and_speed(net, summary: Dict[str, Any], train_images: int) -> Dict[str, Any]:
  """Parameters, GFLOP per image, and training images/s from the run's epoch times.

  Epochs after the first (which also traces the step) count. An epoch's time
  includes the augmentation of the input pipeline, which competes for the same
  CPU cores, and the validation pass (forward only), so this is the Trainer's
  own throughput on this protocol, not the bare training step's
  (bench/train.py measures that). The load average beside it says how busy
  the machine was.
  """
  from fakefaces.components.trainer import flops
  seconds = summary['history'].get('epoch_seconds', [])[1:]
  return {**flops.model_size(net),
          'train_images_per_sec': (round(train_images * len(seconds) / sum(seconds), 2)
                                   if seconds else None),
          'load_avg': round(os.getloadavg()[0], 2)}


def curve_summary(summary: Dict[str, Any]) -> Dict[str, Any]:
  """The learning curves of a training summary: per-epoch loss/AUC, best and last epoch.

  Over- and under-fitting are read from these (the paper's Figures 1-3): the
  validation loss rising while the training loss falls is overfitting; both
  staying high is underfitting.
  """
  history = summary['history']
  keys = ('loss', 'val_loss', 'auc', 'val_auc')
  return {'epochs_run': summary['epochs_run'], 'best_epoch_val_auc': summary['best_epoch'],
          'last_epoch': {k: round(history[k][-1], 4) for k in keys if history.get(k)},
          'min_val_loss_epoch': int(np.argmin(history['val_loss'])) + 1,
          'history': {k: [round(x, 4) for x in history[k]] for k in keys if history.get(k)}}


def protocol(epochs: int) -> Dict[str, Any]:
  return {'crops': 'FacePreparer, dlib HOG alignment at 128 px (cached runs/quality/crops.npz); '
                   'treatment prealigned128: the GAN sources as align none takes them '
                   '(crops_prealigned.npz)',
          'model_input': "64 px RGB unless the row's config_changes say otherwise",
          'epochs': epochs, 'seed': 42, 'treatments': TREATMENTS, 'target_fpr': TARGET_FPR,
          'threshold': 'FPR 0.05 on the eval reals of the training sources',
          'decision_rule': 'cross-source AUC (mean of both directions; both-trained per-source '
                           'AUC) and FairFace FPR (<= 0.05 overall, <= 0.08 worst race x gender) '
                           'decide; within-source AUC breaks ties'}


def summary_line(row: Dict[str, Any]) -> str:
  cells = [row['row']]
  for source in (GAN, K140):
    r = row['sources'].get(source, {})
    cells.append(f"{source} AUC {r.get('auc')} (floor {r.get('floor_auc')}) "
                 f"TPR@.05 {r.get('tpr_at_fpr_0.05')}")
  cells.append(f"FairFace FPR {row['fairface']['fpr']} (worst group "
               f"{row['fairface']['worst_group_fpr']}; floor {row['floor_fairface_fpr']})")
  if row.get('photo_path'):
    cells.append('re-aligned by dlib: ' + ', '.join(
        f"{k} AUC {v.get('auc')}" for k, v in row['photo_path']['sources'].items()))
  cells.append(f"DataGate {'pass' if row['data_gate']['passed'] else 'stop'}")
  cells.append(f"{row['seconds']} s")
  return ' | '.join(cells)


def print_table(results: List[Dict[str, Any]]) -> None:
  print('\n| row | trained on | gan_faces AUC (floor) | gan_faces TPR@FPR.05 | k140 AUC (floor) | '
        'k140 TPR@FPR.05 | FairFace FPR | worst race x gender FPR | DataGate |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in results:
    g, k = r['sources'].get(GAN, {}), r['sources'].get(K140, {})
    print(f"| {r['row']} | {'+'.join(r['trained_on'])} | {g.get('auc')} ({g.get('floor_auc')}) | "
          f"{g.get('tpr_at_fpr_0.05')} | {k.get('auc')} ({k.get('floor_auc')}) | "
          f"{k.get('tpr_at_fpr_0.05')} | {r['fairface']['fpr']} | "
          f"{r['fairface']['worst_group_fpr']} | "
          f"{'pass' if r['data_gate']['passed'] else 'stop'} |")


def merge(files: List[str], out: str) -> int:
  """Rows of several result files (same protocol), in ROWS order, into `out`."""
  loaded = [json.load(open(f)) for f in files]
  by_name = {r['row']: r for result in loaded for r in result['rows']}
  rows = [by_name[n] for n in ROWS if n in by_name]
  with open(out, 'w') as f:
    json.dump({'protocol': loaded[0]['protocol'], 'rows': rows}, f, indent=2)
  print_table(rows)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage', choices=['prepare', 'rows', 'merge'])
  parser.add_argument('files', nargs='*', help='merge: result files whose rows to combine')
  parser.add_argument('--per-class', type=int, default=500,
                      help='gan_faces train/valid images per class (prepare)')
  parser.add_argument('--rows', default=','.join(ROWS), help='comma-separated row names')
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--architecture', default=DEFAULT_ARCHITECTURE,
                      help='comma-separated: every row is trained with each')
  parser.add_argument('--figures', default='',
                      help='copy each learning-curve PNG here as <architecture>.png')
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args(argv)
  if args.stage == 'prepare':
    return prepare(args.per_class)
  if args.stage == 'merge':
    return merge(args.files, args.out)
  names = [n for n in args.rows.split(',') if n]
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    parser.error(f'unknown row(s) {unknown}; known: {list(ROWS)}')
  return run_rows(names, args.epochs, args.architecture.split(','), args.out, args.figures)


if __name__ == '__main__':
  sys.exit(main())
