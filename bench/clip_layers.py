"""Intermediate class tokens bench: does a head on CLIP's per-block class tokens transfer better?

The detector's head reads the final 512-d embedding (ln_post and the projection of
the last block's class token). Koutlis and Papadopoulos (ECCV 2024, "RINE") find
that the class tokens of the *intermediate* blocks keep the low-level generation
traces the projection discards and transfer better across generators. The tower
computes them anyway: the class token after each of its 12 blocks, [12, 768].

Same crops, splits, rows and columns as bench/generalization.py (imported, not
copied: inputs, row specs, selection, score_row, rank); only the features differ.

Two stages:

* `extract`: for every crop of /work/cache/generalization/crops.pkl (generalization.py
  `prepare`), the class token after each block [12, 768] and the final embedding
  [512], from one float32 tf_keras model built of clip.build_encoder's own layers
  with the blocks' outputs added, on the serving signatures' decode
  (preprocess.decode_batch), as the Embedder. Cached in /work/cache/clip-layers
  (the embedding cache's format, npz per batch, keyed by the crop's bytes:
  resumable). Checks that the final embedding equals the Embedder's cached one.
* `rows`: linear and mlp heads (backbone.build_head) per feature set (FEATURES),
  prints the table, writes bench/results/clip_layers.json.

  nice -n 10 .venv/bin/python bench/clip_layers.py extract
  nice -n 10 .venv/bin/python bench/clip_layers.py rows [--features final,'blocks 1-12',...] \\
      [--reals +utkface,...] [--levers ''] [--training fixed,stop] [--merge]
  .venv/bin/python bench/clip_layers.py markdown   # the ranked configurations for the docs
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

import generalization as gen  # noqa: E402  pylint: disable=wrong-import-position

CACHE = '/work/cache/clip-layers'
OUT = os.path.join(ROOT, 'bench', 'results', 'clip_layers.json')
BLOCKS = 12
TOKEN = 768
EMBEDDING = 512


# ------------------------------------------------------------------ extract

def layers_encoder(encoder):
  """float32 model: image [b, 224, 224, 3] in [0, 1] -> [b, 12 * 768 + 512].

  The class token after each block (before ln_post), flattened block-major, then
  the final embedding: both outputs of `encoder` (clip.build_encoder's one pass).
  """
  import tf_keras as keras
  from fakefaces.components.image_encoder import clip, precision
  with precision.policy('float32'):
    tokens = keras.layers.Flatten(name='block_class_tokens')(encoder.output[clip.CLASS_TOKENS])
    out = keras.layers.Concatenate(name='block_class_tokens_and_embedding')(
        [tokens, encoder.output[clip.EMBEDDING]])
    return keras.Model(encoder.input, out, name='clip_layers')


def extract(cache: str, batch_size: int) -> int:
  import pickle
  import tensorflow as tf
  from fakefaces.components.image_encoder import clip, clip_weights, embedding_cache, preprocess
  tf.config.threading.set_intra_op_parallelism_threads(2)
  with open(gen.CROPS, 'rb') as f:
    rows = pickle.load(f)
  images = [r['image'] for r in rows]
  model = layers_encoder(clip.build_encoder())

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def run(image_bytes):
    # The serving signatures' decode, as Embedder._embed.
    return model(preprocess.decode_batch(image_bytes, clip.IMAGE_SIZE, 'rgb'), training=False)

  store = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256)
  start = time.time()
  done = [0]

  def compute(batch):
    out = run(tf.constant(batch)).numpy()
    done[0] += len(batch)
    print(f'{done[0]} computed, {time.time() - start:.0f} s, '
          f'{(time.time() - start) / done[0]:.2f} s a crop, load {os.getloadavg()[0]:.1f}',
          flush=True)
    return out

  vectors = store.embed(images, compute, batch_size)
  check = compare_final(vectors[:, BLOCKS * TOKEN:], images)
  summary = {'crops': len(images), 'computed': store.computed, 'reused': store.reused,
             'seconds': round(time.time() - start), 'cache': store.folder,
             'final_embedding_vs_embedder': check}
  print(json.dumps(summary), flush=True)
  with open(os.path.join(cache, 'extract.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  return 0


def compare_final(final: np.ndarray, images: List[bytes]) -> dict:
  """The final embeddings [n, 512] against the Embedder's in generalization.CACHE."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache

  def not_cached(batch):
    raise SystemExit(f'{len(batch)} crops without an Embedder embedding in {gen.CACHE}')

  reference = embedding_cache.EmbeddingCache(gen.CACHE, clip_weights.SHA256).embed(
      images, not_cached, batch_size=len(images))
  diff = np.abs(final - reference)
  cosine = (final * reference).sum(1) / (np.linalg.norm(final, axis=1) *
                                          np.linalg.norm(reference, axis=1))
  return {'n': len(images), 'max_abs_diff': float(diff.max()),
          'max_abs_value': float(np.abs(reference).max()), 'min_cosine': float(cosine.min())}



# ------------------------------------------------------------------ rows

def ln_post(tokens: np.ndarray, weights: Dict[str, np.ndarray]) -> np.ndarray:
  """The tower's ln_post (clip.LAYER_NORM_EPSILON) applied to every block's class token [n, k, 768]."""
  from fakefaces.components.image_encoder import clip
  mean = tokens.mean(-1, keepdims=True)
  variance = tokens.var(-1, keepdims=True)
  normalised = (tokens - mean) / np.sqrt(variance + clip.LAYER_NORM_EPSILON)
  return (normalised * weights['vision_model.post_layernorm.weight']
          + weights['vision_model.post_layernorm.bias']).astype(np.float32)


def _blocks(first: int, last: int, then: str = ''):
  """Features: the class tokens of blocks first..last (1-based), concatenated [n, k * 768].

  `then` 'ln': the tower's ln_post applied to each; 'proj': ln_post and the 768 -> 512
  projection applied to each (each block's token as the final embedding is made), [n, k * 512].
  """
  def features(tokens, final, weights):
    chosen = tokens[:, first - 1:last]
    if then:
      chosen = ln_post(chosen, weights)
    if then == 'proj':
      chosen = chosen @ weights['visual_projection.weight_t']
    return chosen.reshape(len(chosen), -1)
  return features


# name -> features(tokens [n, 12, 768], final [n, 512], weights) -> [n, width]. The head
# standardises every input dimension on the row's train split (backbone.build_head), so
# each block's token enters standardised; 'ln' and 'proj': see _blocks.
FEATURES = {'final': lambda tokens, final, weights: final,
            'blocks 1-12': _blocks(1, 12), 'blocks 4-12': _blocks(4, 12),
            'blocks 7-12': _blocks(7, 12), 'blocks 10-12': _blocks(10, 12),
            'ln blocks 1-12': _blocks(1, 12, 'ln'), 'proj blocks 1-12': _blocks(1, 12, 'proj')}
FEATURES.update({f'block {i}': _blocks(i, i) for i in range(1, BLOCKS + 1)})


def load_tokens(cache: str, images: List[bytes]) -> np.ndarray:
  """Class tokens [n, 12, 768] of the crops, from `extract`'s cache."""
  from fakefaces.components.image_encoder import clip_weights, embedding_cache

  def not_cached(batch):
    raise SystemExit(f'{len(batch)} crops have no class tokens in {cache}: run '
                     '`bench/clip_layers.py extract` first')

  vectors = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256).embed(
      images, not_cached, batch_size=len(images))
  return vectors[:, :BLOCKS * TOKEN].reshape(len(images), BLOCKS, TOKEN)


def stopped_row(d, spec: dict, epochs: int, patience: int, seed: int = 42) -> dict:
  """A head as gen.clip_row trains it, but stopped early on the row's eval split.

  Up to `epochs` epochs; the weights of the epoch with the lowest weighted eval
  loss (the Trainer's early_stopping_monitor 'val_loss', its sample weights as
  the train split's) are restored after `patience` epochs without improvement.
  `seed`: the head's initialisation and shuffling (gen.clip_row's is 42).
  """
  import tensorflow as tf
  import tf_keras as keras
  from fakefaces.components.trainer import backbone
  from fakefaces.components.trainer.config import TrainConfig
  config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                       head=spec['head'], epochs=epochs, batch_size=32, seed=seed)
  train, evaluation = gen.selection(d, spec, gen.TRAIN), gen.selection(d, spec, gen.EVAL)
  tf.keras.utils.set_random_seed(config.seed)
  head = backbone.build_head(config, d['x'][train])
  stop = keras.callbacks.EarlyStopping(monitor='val_loss', patience=patience,
                                       restore_best_weights=True)
  start = time.perf_counter()
  fit = head.fit(d['x'][train], d['label'][train].astype(np.float32),
                 sample_weight=gen.sample_weights(d, train, spec['lever']),
                 validation_data=(d['x'][evaluation], d['label'][evaluation].astype(np.float32),
                                  gen.sample_weights(d, evaluation, spec['lever'])),
                 batch_size=config.batch_size, epochs=epochs, shuffle=True, verbose=0,
                 callbacks=[stop])
  seconds = time.perf_counter() - start
  losses = fit.history['val_loss']
  scores = head.predict(d['x'], batch_size=1024, verbose=0)[:, 0]
  return gen.score_row(d, spec, scores, head_train_seconds=round(seconds, 1),
                       epochs_run=len(losses), best_epoch=int(np.argmin(losses)) + 1)



def seed_summary(configs: List[dict]) -> List[dict]:
  """Per configuration trained with several seeds: mean, min and max over the seeds of the
  rule's keys (audit excess, worst LOGO AUC, worst within AUC) and of each LOGO AUC."""
  import re
  groups: Dict[str, List[dict]] = {}
  for c in configs:
    if len(c['logo']) == 3:
      groups.setdefault(re.sub(r', seed \d+\]$', ']', c['name']), []).append(c)
  out = []
  for name, group in groups.items():
    if len(group) < 2:
      continue
    values = {'audit_excess': [c['audit_excess'] for c in group],
              'min_logo_auc': [c['min_logo_auc'] for c in group],
              'min_within_auc': [c['min_within_auc'] for c in group]}
    values.update({f'logo_{g}': [c['logo'][g]['auc'] for c in group] for g in gen.GENERATORS})
    out.append({'name': name, 'seeds': len(group),
                **{k: {'mean': round(float(np.mean(v)), 4), 'min': min(v), 'max': max(v)}
                   for k, v in values.items()}})
  return out


def run_rows(args) -> int:
  import tensorflow as tf
  from fakefaces.components.image_encoder import clip
  tf.config.threading.set_intra_op_parallelism_threads(2)
  start = time.time()
  command = 'bench/clip_layers.py ' + ' '.join(repr(a) if not a or ' ' in a else a
                                               for a in sys.argv[1:])
  d = gen.load_embedded(gen.CACHE)
  names = [n for n in args.features.split(',') if n]  # none: --merge only ranks again
  # The final embedding alone needs no extract stage (it is generalization.py's cache).
  tokens = (load_tokens(args.cache, d['image'].tolist()) if set(names) - {'final'} else None)
  weights = clip.read_weights()
  # ln_post and the projection on block 12's token is the final embedding: checks ln_post here.
  block12 = (float(np.abs(_blocks(12, 12, 'proj')(tokens, None, weights) - d['x']).max())
             if tokens is not None else None)
  reals = set(args.reals.split(','))
  levers = set(args.levers.split(','))
  heads = set(args.heads.split(','))
  rows = []
  for name in names:
    x = FEATURES[name](tokens, d['x'], weights)
    features = dict(d, x=x)
    for training in args.training.split(','):
      for spec in gen.row_specs():
        if (spec['model'] != 'clip' or spec['reals'] not in reals
            or spec['lever'] not in levers or spec['head'] not in heads):
          continue
        if training == 'fixed' and args.seed != 42:
          raise SystemExit("--seed applies to --training stop only (gen.clip_row's seed is 42)")
        spec = dict(spec, features=name, training=training, seed=args.seed)
        # Feature set and training in the name, so configurations() finds each one's LOGO rows.
        suffix = (', stop' if training == 'stop' else '') + (
            f', seed {args.seed}' if args.seed != 42 else '')
        spec['name'] = f"{spec['name']} [{name}{suffix}]"
        if training == 'stop':
          row = stopped_row(features, spec, args.epochs, args.patience, args.seed)
        else:
          row = gen.clip_row(features, spec, args.epochs)[0]
        rows.append(dict(row, width=int(x.shape[1]), command=command,
                         load_avg=round(os.getloadavg()[0], 2)))
        print(f"{spec['name']}: {row['head_train_seconds']} s", flush=True)
  if args.merge and os.path.exists(args.out):
    # Rows of earlier runs (other feature sets or reals) kept unless recomputed now.
    with open(args.out) as f:
      earlier = json.load(f)
    new = {r['name'] for r in rows}
    rows = [r for r in earlier['rows'] if r['name'] not in new] + rows
    if block12 is None:
      block12 = earlier.get('block12_projected_vs_final_max_abs_diff')
  # The decision rule ranks the protocol's rows (seed 42); other seeds' configurations are
  # listed apart, to show how far a head's numbers move with its seed.
  configs = gen.configurations([r for r in rows if r.get('seed', 42) == 42])
  other_seeds = gen.configurations([r for r in rows if r.get('seed', 42) != 42])
  gen.print_table(rows, configs)
  seeds = seed_summary(configs + other_seeds)
  print(f'\n{"over seeds: mean [min, max]":70} {"excess":>19} {"minLOGO":>19} '
        + ' '.join(f'{"LOGO " + g:>19}' for g in gen.GENERATORS) + f' {"minWithin":>19}')
  for c in seeds:
    print(f'{c["name"] + " x" + str(c["seeds"]):70} ' + ' '.join(
        f'{c[k]["mean"]:.3f} [{c[k]["min"]:.3f}, {c[k]["max"]:.3f}]'
        for k in ['audit_excess', 'min_logo_auc'] + [f'logo_{g}' for g in gen.GENERATORS]
        + ['min_within_auc']))
  extracted = os.path.join(args.cache, 'extract.json')
  result = {'commands': sorted({r['command'] for r in rows}), 'epochs': args.epochs,
            'patience': args.patience, 'block12_projected_vs_final_max_abs_diff': block12,
            'extract': json.load(open(extracted)) if os.path.exists(extracted) else None,
            'seconds': round(time.time() - start, 1), 'rows': rows, 'configurations': configs,
            'other_seeds': [dict(c, rank=None) for c in other_seeds], 'seed_summary': seeds}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f)  # one line: 356 rows of per-group counts (2.5 MB indented)
  print(f'-> {args.out}')
  return 0



def markdown(path: str, features: List[str], reals: List[str], trainings: List[str],
             heads: List[str]) -> int:
  """The ranked configurations of `path` (a `rows` result) of those features, reals,
  trainings and heads (seed 42) as the markdown table of the docs."""
  with open(path) as f:
    result = json.load(f)
  by_name = {r['name']: r for r in result['rows']}
  print('| rank | features | head | training | reals | within AUC gan_faces / k140 / sdfd | '
        'LOGO AUC gan_faces / k140 / sdfd | LOGO TPR@FPR.05 | FairFace FPR (worst group) | '
        'UTKFace FPR (worst group) | SDFD TPR at op (largest gap) | audit excess |')
  print('|' + '---|' * 12)
  for c in result['configurations']:
    r = by_name[c['name']]
    if (r['features'] not in features or r['reals'] not in reals
        or r['training'] not in trainings or r['head'] not in heads or r.get('seed', 42) != 42):
      continue
    g, a = r['generators'], r['audit']

    def rate(source):
      seen = '' if source in c['unseen'] else ' in-distr.'
      worst = a[source]['worst_group_fpr']
      return f"{a[source]['fpr']:.3f} ({'-' if worst is None else f'{worst:.3f}'}){seen}"
    logo = c['logo']
    print(f"| {c['rank'] or 'not ranked'} | {r['features']} | {r['head']} | {r['training']} | "
          f"{r['reals']} | " + ' / '.join(f"{g[s]['auc']:.3f}" for s in gen.GENERATORS) + ' | '
          + (' / '.join(f"{logo[s]['auc']:.3f}" for s in gen.GENERATORS) if len(logo) == 3
             else 'no LOGO rows') + ' | '
          + (' / '.join(f"{logo[s]['tpr_at_fpr_0.05']:.2f}" for s in gen.GENERATORS)
             if len(logo) == 3 else '-')
          + f" | {rate(gen.FAIRFACE)} | {rate(gen.UTK)} | {r['sdfd_groups']['tpr']:.3f} "
          f"({r['sdfd_groups']['max_gap']:.3f}) | {c['audit_excess']:.3f} |")
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage', choices=('extract', 'rows', 'markdown'))
  parser.add_argument('--cache', default=CACHE)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--features', default=','.join(FEATURES),
                      help=f'comma-separated feature sets: {", ".join(FEATURES)}')
  parser.add_argument('--reals', default=','.join(gen.REALS),
                      help='comma-separated training reals of the rows')
  parser.add_argument('--levers', default=',reweight',
                      help="comma-separated levers of the rows ('' none, 'reweight')")
  parser.add_argument('--heads', default=','.join(gen.CLIP_HEADS),
                      help='comma-separated heads of the rows: linear, mlp')
  parser.add_argument('--training', default='fixed,stop',
                      help="comma-separated: 'fixed' (generalization.py's clip_row, --epochs "
                      "epochs), 'stop' (early stopping on the row's eval loss)")
  parser.add_argument('--merge', action='store_true',
                      help='keep the rows of --out that this run does not recompute')
  parser.add_argument('--epochs', type=int, default=40)
  parser.add_argument('--patience', type=int, default=3)
  parser.add_argument('--seed', type=int, default=42,
                      help="the 'stop' heads' seed (the 'fixed' rows are gen.clip_row's, seed 42)")
  parser.add_argument('--out', default=OUT)
  args = parser.parse_args(argv)
  if args.stage == 'extract':
    return extract(args.cache, args.batch_size)
  if args.stage == 'markdown':
    return markdown(args.out, args.features.split(','), args.reals.split(','),
                    args.training.split(','), args.heads.split(','))
  return run_rows(args)


if __name__ == '__main__':
  sys.exit(main())
