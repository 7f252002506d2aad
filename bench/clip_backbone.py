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
2. Quality: a head (backbone.build_head, linear and mlp) on the frozen
   embeddings of `--per-class` train images per class and source, scored on
   as many test images per class of both sources: within- and cross-source AUC.
   Images are the shared data's own files (both sources are FFHQ-aligned
   already), decoded as the Trainer does. Embeddings go through the Trainer's
   cache (`--cache`), so a rerun embeds nothing.
3. Cost: the tower's seconds per face in float32 at batch 16 (decode included) on this CPU
   (bfloat16 only where the CPU computes it natively: precision.cpu_bf16_flags).

  nice -n 10 .venv/bin/python bench/clip_backbone.py [--per-class 100] [--reference 100]
  nice -n 10 .venv/bin/python bench/clip_backbone.py --reference 48 --fidelity-only --out FILE

Prints a table and writes bench/results/clip_backbone.json.
"""

import argparse
import glob
import json
import os
import random
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from fakefaces.components.image_encoder import clip, clip_weights, precision  # noqa: E402
from fakefaces.components.image_encoder.embedder import Embedder  # noqa: E402
from fakefaces.components.image_encoder.feature_kinds import CLASS_TOKENS, EMBEDDING  # noqa: E402
from fakefaces.components.trainer import backbone  # noqa: E402
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


def quality(embedder, per_class, heads, epochs):
  embedded = {}
  for source in SOURCES:
    for split in ('train', 'test'):
      rows = _files(source, split, per_class, 0)
      vectors = embedder([open(p, 'rb').read() for p, _ in rows])
      embedded[source, split] = (vectors, np.asarray([l for _, l in rows]))
  results = []
  for head in heads:
    config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                         head=head, epochs=epochs, batch_size=32, seed=42)
    for trained_on in SOURCES:
      x, y = embedded[trained_on, 'train']
      tf.keras.utils.set_random_seed(config.seed)
      model = backbone.build_head(config, x)
      start = time.perf_counter()
      model.fit(backbone.embedding_dataset(x, y, config, training=True), epochs=epochs, verbose=0)
      seconds = time.perf_counter() - start
      row = {'head': head, 'trained_on': trained_on, 'train_images': len(y),
             'head_train_seconds': round(seconds, 2)}
      for source in SOURCES:
        tx, ty = embedded[source, 'test']
        row[f'auc_{source}'] = round(float(roc_auc_score(ty, model.predict(tx, verbose=0)[:, 0])),
                                     4)
      results.append(row)
  return results


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
  parser.add_argument('--per-class', type=int, default=100)
  parser.add_argument('--reference', type=int, default=100)
  parser.add_argument('--heads', default='linear,mlp')
  parser.add_argument('--epochs', type=int, default=30)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--fidelity-only', action='store_true',
                      help='step 1 alone (write it to another --out: the file is replaced)')
  parser.add_argument('--cache', default='', help='embedding cache folder (default: the Trainer\'s)')
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results', 'clip_backbone.json'))
  args = parser.parse_args()
  config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb',
                       embedding_cache_dir=args.cache)
  start = time.perf_counter()
  embedder = Embedder(config)
  result = {'command': 'bench/clip_backbone.py ' + ' '.join(
      f'--{k.replace("_", "-")}' + ('' if isinstance(v, bool) else f' {v}')
      for k, v in vars(args).items() if k not in ('out', 'cache') and v is not False),
            'load_avg_start': round(os.getloadavg()[0], 2)}
  result['fidelity'] = fidelity(embedder, args.reference)
  print(json.dumps(result['fidelity'], indent=1), flush=True)
  if args.fidelity_only:
    _write(result, args.out)
    return
  result['quality'] = quality(embedder, args.per_class, args.heads.split(','), args.epochs)
  result['embeddings'] = {'computed': embedder.cache.computed, 'reused': embedder.cache.reused}
  result['cost'] = cost(embedder, args.repeats)
  result['load_avg_end'] = round(os.getloadavg()[0], 2)
  result['seconds'] = round(time.perf_counter() - start, 1)
  print(f'{"head":7} {"trained on":10} ' + ' '.join(f'{"AUC " + s:>14}' for s in SOURCES))
  for row in result['quality']:
    print(f'{row["head"]:7} {row["trained_on"]:10} ' +
          ' '.join(f'{row["auc_" + s]:14.4f}' for s in SOURCES))
  print(json.dumps(result['cost']), json.dumps(result['embeddings']))
  _write(result, args.out)


def _write(result, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
