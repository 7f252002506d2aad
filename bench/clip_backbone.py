"""The CLIP ViT-B/16 backbone (train.architecture clip_vit_b16): fidelity, quality, cost.

1. Fidelity on `--reference` face crops (half gan_faces test, half k140 test,
   real and fake): the Keras tower (components/image_encoder/clip.py) against
   onnxruntime on the float reference graph (the ONNX file with its quantised
   MatMuls replaced by float MatMuls on the dequantised weights), same pixels
   (CLIP's own preprocessing: PIL bicubic, centre crop): largest |difference|
   and cosine; the same for the class token after each block (the tower's
   CLASS_TOKENS output against token 0 of each block's output in that graph).
   For information: cosine against the INT8 graph itself (dynamic
   activation quantisation) and between the Trainer's decode (the serving
   signatures' `preprocess.decode_batch`: bilinear antialiased resize) and
   CLIP's bicubic preprocessing, both through the Keras tower.
2. Quality: heads (backbone.build_head, linear and mlp) on the frozen features
   (`--features`: the final embedding, it L2-normalised, or the class tokens of
   blocks 7-12 or 1-12, backbone.head_features as the Trainer reads them) of
   `--per-class` train images per class of one source, trained by the Trainer's
   loop (training.train: class weights; with `--patience`, early stopping on the
   source's valid split by val_loss, best epoch restored), one row per seed
   (`--seeds`); scored on `--test-per-class` test images per class of both
   sources: within- and cross-source AUC and TPR at FPR 0.05
   (operating_point.tpr_at_fpr), and their mean, min and max over the seeds.
   `--weight-decay` adds rows whose L2 decay of the head's kernels (0 or one of
   the list) is chosen by AUC on the source's own valid split. Images are the
   shared data's own files (both sources are FFHQ-aligned already), decoded as
   the Trainer does. Features go through the Trainer's cache (`--cache`), so a
   rerun embeds nothing.
3. Cost: the tower's seconds per face in float32 at batch 16 (decode included) on this CPU
   (bfloat16 only where the CPU computes it natively: precision.cpu_bf16_flags).

  nice -n 10 .venv/bin/python bench/clip_backbone.py [--per-class 100] [--reference 100]
  nice -n 10 .venv/bin/python bench/clip_backbone.py --reference 48 --fidelity-only --out FILE
  nice -n 10 .venv/bin/python bench/clip_backbone.py --quality-only --per-class 1000 \\
      --test-per-class 300 --features final,'blocks 7-12','blocks 1-12' --patience 3 \\
      --epochs 40 --seeds 42,1,2 --out bench/results/clip_cross_source.json

Prints a table and writes bench/results/clip_backbone.json.
"""

import argparse
import glob
import json
import os
import itertools
import random
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from fakefaces.components.image_encoder import clip, clip_weights, precision  # noqa: E402
from fakefaces.components.image_encoder.embedder import Embedder  # noqa: E402
from fakefaces.components.image_encoder.feature_kinds import CLASS_TOKENS, EMBEDDING  # noqa: E402
from fakefaces.components.trainer import backbone, operating_point, training  # noqa: E402
from fakefaces.components.trainer.config import TrainConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get('FACES_DATA', os.path.join(ROOT, '..', 'shared', 'data'))
SOURCES = {
    'gan_faces': os.path.join(DATA, 'gan_faces', '{split}', '{label}', '*.jpg'),
    'k140': os.path.join(DATA, 'k140', 'real_vs_fake', 'real-vs-fake', '{split}', '{label}',
                         '*.jpg'),
}


def _files(source, split, per_class, seed):
  rows = []
  for label, name in ((0, 'real'), (1, 'fake')):
    paths = sorted(glob.glob(SOURCES[source].format(split=split, label=name)))
    random.Random(seed).shuffle(paths)
    rows += [(p, label) for p in paths[:per_class]]
  return rows


def _cosine(a, b):
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def fidelity(embedder, count):
  rows = _files('gan_faces', 'test', count // 4, 1) + _files('k140', 'test', count // 4, 1)
  pixels = np.concatenate([clip.preprocess_like_clip(Image.open(p)) for p, _ in rows])
  images = pixels.transpose(0, 2, 3, 1) * np.float32(clip.STD) + np.float32(clip.MEAN)
  towers = [embedder.encoder(images[i:i + 16], training=False)
            for i in range(0, len(images), 16)]
  ours = np.concatenate([t[EMBEDDING].numpy() for t in towers])
  tokens = np.concatenate([t[CLASS_TOKENS].numpy() for t in towers])
  graph = clip.float_reference_graph(with_blocks=True)
  blocks = clip.block_outputs(graph.graph)
  reference = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
  int8 = onnxruntime.InferenceSession(clip_weights.locate(), providers=['CPUExecutionProvider'])
  float_ref, int8_ref, tokens_ref = [], [], []
  for i in range(0, len(pixels), 16):
    embeds, *hidden = reference.run(['image_embeds'] + blocks, {'pixel_values': pixels[i:i + 16]})
    float_ref.append(embeds)
    tokens_ref.append(np.stack([h[:, 0] for h in hidden], axis=1))  # [b, 12, 768]
    int8_ref.append(int8.run(['image_embeds'], {'pixel_values': pixels[i:i + 16]})[0])
  float_ref, int8_ref = np.concatenate(float_ref), np.concatenate(int8_ref)
  tokens_ref = np.concatenate(tokens_ref)
  cos_tokens = _cosine(tokens, tokens_ref)  # [n, 12]
  trainer = embedder.compute([open(p, 'rb').read() for p, _ in rows])[EMBEDDING]
  cos_float, cos_int8, cos_decode = (_cosine(ours, float_ref), _cosine(ours, int8_ref),
                                     _cosine(trainer, ours))
  return {
      'images': len(rows),
      'embedding_norm_mean': float(np.linalg.norm(float_ref, axis=1).mean()),
      'vs_float_reference': {'max_abs_difference': float(np.abs(ours - float_ref).max()),
                             'cosine_min': float(cos_float.min()),
                             'cosine_mean': float(cos_float.mean())},
      'class_tokens_vs_float_reference': {
          'max_abs_difference': float(np.abs(tokens - tokens_ref).max()),
          'max_abs_difference_per_block': np.abs(tokens - tokens_ref).max(axis=(0, 2)).tolist(),
          'norm_mean_per_block': np.linalg.norm(tokens_ref, axis=2).mean(0).tolist(),
          'cosine_min': float(cos_tokens.min()), 'cosine_mean': float(cos_tokens.mean())},
      'vs_int8_graph': {'max_abs_difference': float(np.abs(ours - int8_ref).max()),
                        'cosine_min': float(cos_int8.min()), 'cosine_mean': float(cos_int8.mean())},
      'trainer_decode_vs_clip_preprocessing': {'cosine_min': float(cos_decode.min()),
                                               'cosine_mean': float(cos_decode.mean())},
  }


# name -> (TrainConfig fields of the head's input, transform of backbone.head_features' [n, d]).
# 'l2 final': each embedding divided by its L2 norm before the head's standardisation
# (CLIP's own zero-shot head compares unit vectors: Radford et al. 2021); bench only.
FEATURES = {
    'final': ({}, None),
    'l2 final': ({}, lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)),
    'blocks 7-12': ({'clip_features': CLASS_TOKENS, 'clip_blocks': list(range(7, 13))}, None),
    'blocks 1-12': ({'clip_features': CLASS_TOKENS, 'clip_blocks': []}, None),
}
GOAL_CROSS, GOAL_WITHIN = 0.90, 0.97  # issue 32's goals: AUC on the other source, on the own one
TARGET_FPR = 0.05


def _decayed(head, weight_decay):
  """`head` with weight_decay x the squared L2 norm of each Dense kernel added to its loss."""
  for layer in head.layers:
    if isinstance(layer, keras.layers.Dense) and weight_decay:
      head.add_loss(lambda kernel=layer.kernel: weight_decay * tf.reduce_sum(tf.square(kernel)))
  return head


def _fit(config, train, valid, weight_decay=0.0):
  """The Trainer's loop (training.train: class weights, early stopping on `valid`'s val_loss
  when config.early_stopping_patience) on features [n, d]; returns (head, summary)."""
  (x, y), (vx, vy) = train, valid
  counts = {0: int((y == 0).sum()), 1: int((y == 1).sum())}
  # Before the datasets: their shuffle order depends on the global seed (training.seed_everything).
  training.seed_everything(config)
  with tempfile.TemporaryDirectory() as run_dir:
    return training.train(
        config, backbone.embedding_dataset(x, y, config, training=True),
        backbone.embedding_dataset(vx, vy, config, training=False), counts, run_dir,
        build_fn=lambda rate: _decayed(backbone.build_head(config, x, rate), weight_decay))


def _scores(head, x):
  return head.predict(x, batch_size=1024, verbose=0)[:, 0]


def quality(embedder, args):
  """Heads trained on one source's train split, scored on each source's test split.

  Rows: one per feature set, head, patience, seed and source trained on (and,
  with `--weight-decay`, one more whose decay is chosen on the source's valid
  split by AUC). With a patience, the Trainer's early stopping on the source's
  valid split (val_loss) restores the best epoch; patience 0 trains `--epochs`.
  """
  splits = {'train': args.per_class, 'valid': args.valid_per_class,
            'test': args.test_per_class or args.per_class}
  files = {(source, split): _files(source, split, count or 100_000, 0)
           for source in SOURCES for split, count in splits.items()}
  images = {key: [open(p, 'rb').read() for p, _ in rows] for key, rows in files.items()}
  labels = {key: np.asarray([l for _, l in rows]) for key, rows in files.items()}
  rows = []
  for name in args.features.split(','):
    fields, transform = FEATURES[name]
    config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                         **fields)
    data = {}
    for key in files:
      x = backbone.head_features(embedder, images[key], config)
      data[key] = (transform(x) if transform else x, labels[key])
    for head, patience, seed, trained_on in itertools.product(
        args.heads.split(','), [int(p) for p in args.patience.split(',')],
        [int(s) for s in args.seeds.split(',')], SOURCES):
      config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                           head=head, epochs=args.epochs, batch_size=32, seed=seed,
                           early_stopping_patience=patience, **fields)
      train, valid = data[trained_on, 'train'], data[trained_on, 'valid']
      decays = [0.0] + ([float(w) for w in args.weight_decay.split(',')]
                        if args.weight_decay else [])
      fits = {}
      for decay in decays:
        start = time.perf_counter()
        model, summary = _fit(config, train, valid, decay)
        fits[decay] = (model, summary, time.perf_counter() - start,
                       float(roc_auc_score(valid[1], _scores(model, valid[0]))))
      # The decay (0 among them) with the best AUC on the source's own valid split, never a
      # test split; ties go to the smaller.
      chosen = max(decays, key=lambda d: (fits[d][3], -d))
      for variant, decay in [('plain', 0.0)] + ([('decay on valid', chosen)]
                                                if len(decays) > 1 else []):
        model, summary, seconds, valid_auc = fits[decay]
        row = {'features': name, 'head': head, 'patience': patience, 'seed': seed,
               'variant': variant, 'weight_decay': decay, 'trained_on': trained_on,
               'train_images': len(train[1]), 'valid_images': len(valid[1]),
               'epochs_run': summary['epochs_run'],
               'weights_from_epoch': summary['weights_from_epoch'],
               'head_train_seconds': round(seconds, 2), 'auc_valid': round(valid_auc, 4)}
        if variant != 'plain':
          row['valid_auc_by_decay'] = {str(d): round(fits[d][3], 4) for d in decays}
        for source in SOURCES:
          tx, ty = data[source, 'test']
          s = _scores(model, tx)
          row[f'auc_{source}'] = round(float(roc_auc_score(ty, s)), 4)
          row[f'tpr_at_fpr_0.05_{source}'] = round(operating_point.tpr_at_fpr(ty, s, TARGET_FPR),
                                                   4)
          row[f'test_images_{source}'] = len(ty)
        rows.append(row)
        print(json.dumps(row), flush=True)
  return rows


def seed_summary(rows):
  """Per configuration and source trained on: mean, min and max over seeds of each test metric."""
  groups = {}
  for r in rows:
    key = (r['features'], r['head'], r['patience'], r['variant'], r['trained_on'])
    groups.setdefault(key, []).append(r)
  out = []
  for (features, head, patience, variant, trained_on), group in groups.items():
    entry = {'features': features, 'head': head, 'patience': patience, 'variant': variant,
             'trained_on': trained_on, 'seeds': [r['seed'] for r in group]}
    for source in SOURCES:
      for metric in ('auc', 'tpr_at_fpr_0.05'):
        values = [r[f'{metric}_{source}'] for r in group]
        entry[f'{metric}_{source}'] = {'mean': round(float(np.mean(values)), 4),
                                       'min': min(values), 'max': max(values)}
    other = [s for s in SOURCES if s != trained_on][0]
    entry['within'] = entry[f'auc_{trained_on}']['mean'] >= GOAL_WITHIN
    entry['cross'] = entry[f'auc_{other}']['mean'] >= GOAL_CROSS
    out.append(entry)
  return out


def _print_summary(summary):
  def cell(v):
    return f'{v["mean"]:.3f} [{v["min"]:.3f}, {v["max"]:.3f}]'
  print('| features | head | training | trained on | ' + ' | '.join(
      f'AUC {s} | TPR@FPR.05 {s}' for s in SOURCES) + ' | within >= 0.97 | cross >= 0.90 |')
  print('|' + '---|' * (6 + 2 * len(SOURCES)))
  for e in summary:
    training_name = (f'stop (patience {e["patience"]})' if e['patience'] else 'fixed') + (
        '' if e['variant'] == 'plain' else f', {e["variant"]}')
    print(f'| {e["features"]} | {e["head"]} | {training_name} | {e["trained_on"]} | ' + ' | '.join(
        f'{cell(e["auc_" + s])} | {cell(e["tpr_at_fpr_0.05_" + s])}' for s in SOURCES)
          + f' | {"met" if e["within"] else "not met"} | {"met" if e["cross"] else "not met"} |')


def cost(embedder, repeats):
  rows = _files('gan_faces', 'test', 8, 2)
  batch = [open(p, 'rb').read() for p, _ in rows]
  embedder.compute(batch)  # warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    embedder.compute(batch)  # uncached: the backbone's cost as the SavedModel pays it
    times.append((time.perf_counter() - start) / len(rows))
  return {'precision': 'float32', 'batch': len(rows),
          'seconds_per_face_median': round(float(np.median(times)), 4),
          'seconds_per_face_min': round(float(np.min(times)), 4),
          'repeats': repeats, 'includes': 'JPEG decode, resize to 224, tower',
          'cpu_bf16_flags': precision.cpu_bf16_flags(),
          'bfloat16': ('not measured: this CPU has no native bfloat16 (oneDNN would emulate it)'
                       if not precision.cpu_bf16_flags() else 'not measured')}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--per-class', type=int, default=100,
                      help='train images per class and source (all where fewer)')
  parser.add_argument('--valid-per-class', type=int, default=0,
                      help='valid images per class and source, for early stopping (0: all)')
  parser.add_argument('--test-per-class', type=int, default=0,
                      help='test images per class and source (0: --per-class)')
  parser.add_argument('--reference', type=int, default=100)
  parser.add_argument('--heads', default='linear,mlp')
  parser.add_argument('--features', default='final',
                      help=f'comma-separated head inputs: {", ".join(FEATURES)}')
  parser.add_argument('--epochs', type=int, default=30)
  parser.add_argument('--patience', default='0',
                      help='comma-separated early-stopping patiences on the valid split '
                      '(0: --epochs epochs)')
  parser.add_argument('--seeds', default='42', help='comma-separated seeds of the heads')
  parser.add_argument('--weight-decay', default='',
                      help='comma-separated L2 decays: adds rows whose decay is chosen on the '
                      'valid split')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--fidelity-only', action='store_true',
                      help='step 1 alone (write it to another --out: the file is replaced)')
  parser.add_argument('--quality-only', action='store_true', help='step 2 alone')
  parser.add_argument('--cache', default='', help='embedding cache folder (default: the Trainer\'s)')
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results', 'clip_backbone.json'))
  args = parser.parse_args()
  config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                       embedding_cache_dir=args.cache)
  start = time.perf_counter()
  embedder = Embedder(config)
  result = {'command': 'bench/clip_backbone.py ' + ' '.join(
      f'--{k.replace("_", "-")}' + ('' if isinstance(v, bool) else f' {v!r}' if ' ' in str(v)
                                    else f' {v}')
      for k, v in vars(args).items() if k not in ('out', 'cache') and v is not False),
            'load_avg_start': round(os.getloadavg()[0], 2)}
  if not args.quality_only:
    result['fidelity'] = fidelity(embedder, args.reference)
    print(json.dumps(result['fidelity'], indent=1), flush=True)
  if args.fidelity_only:
    _write(result, args.out)
    return
  result['quality'] = quality(embedder, args)
  result['seed_summary'] = seed_summary(result['quality'])
  result['embeddings'] = {'computed': embedder.cache.computed, 'reused': embedder.cache.reused}
  if not args.quality_only:
    result['cost'] = cost(embedder, args.repeats)
    print(json.dumps(result['cost']))
  result['load_avg_end'] = round(os.getloadavg()[0], 2)
  result['seconds'] = round(time.perf_counter() - start, 1)
  _print_summary(result['seed_summary'])
  print(json.dumps(result['embeddings']))
  _write(result, args.out)


def _write(result, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
