"""The CLIP ViT-B/16 tower alone, one face per call: what bounds a photo's CLIP score on this CPU.

Three routes over the same random [1, 224, 224, 3] input, called in turn
(round by round, so load from other processes hits all alike):

  keras        the served tower (`clip.build_encoder`, float32), in a tf.function
  keras_xla    the same with `jit_compile=True` (XLA:CPU; TF Serving runs XLA
               only behind its experimental --xla_cpu_compilation_enabled flag)
  onnx_int8    onnxruntime on the package's INT8 graph (not servable by TF
               Serving; its embedding differs from the float tower's,
               docs/clip_backbone.md)

p50 milliseconds, CPU seconds of this process per call, and the float32
rate the keras route reaches: the tower is 17.6 G multiply-adds per face
(12 blocks of 197 tokens: q, k, v and output projections 4 x 197 x 768^2,
attention 2 x 197^2 x 768, MLP 2 x 197 x 768 x 3072; plus the 16x16 patch
projection 196 x 768^2), 35.1 GFLOP (`multiply_adds`). Results under `--label` in
bench/results/clip_tower.json.

`--image-sizes 224,128` adds, for each size but 224, `keras_<size>`: the
served tower at train.image_size <size> ((size/16)^2 patches; 128: 64 patches,
5.6 G multiply-adds), called in the same rounds.

    nice -n 10 .venv/bin/python bench/clip_tower.py --calls 10
    nice -n 10 .venv/bin/python bench/clip_tower.py --calls 10 --image-sizes 224,128 \
        --label cpu_2cores_loaded_128px
"""

import argparse
import os
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

import photo_memory  # noqa: E402  bench/: the labelled results file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'clip_tower.json')


def multiply_adds(image_size: int = 224) -> int:
  """The tower's multiply-adds per face at `image_size` px (module doc): 17.6 G at 224, 5.6 G at 128."""
  patches = (image_size // 16)**2
  tokens = patches + 1
  return (12 * (4 * tokens * 768**2 + 2 * tokens**2 * 768 + 2 * tokens * 768 * 3072)
          + patches * 768**2)


MULTIPLY_ADDS = multiply_adds()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--calls', type=int, default=10, help='timed calls per route')
  parser.add_argument('--label', default='cpu')
  parser.add_argument('--image-sizes', default='224', type=lambda v: [int(s) for s in v.split(',')],
                      help='224 (the three routes) and other train.image_size values (keras_<size>)')
  args = parser.parse_args()

  import onnxruntime  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fakefaces.components.image_encoder import clip, clip_weights  # pylint: disable=g-import-not-at-top

  weights = clip.read_weights()
  encoder = clip.build_encoder(weights)
  image = np.random.default_rng(0).random((1, clip.IMAGE_SIZE, clip.IMAGE_SIZE, 3), np.float32)
  session = onnxruntime.InferenceSession(clip_weights.locate(), providers=['CPUExecutionProvider'])
  onnx_input = session.get_inputs()[0].name
  routes = {
      'keras': tf.function(lambda x: encoder(x, training=False)),
      'keras_xla': tf.function(lambda x: encoder(x, training=False), jit_compile=True),
      'onnx_int8': lambda x: session.run(None, {onnx_input: np.transpose(x, (0, 3, 1, 2))}),
  }
  images = {name: image for name in routes}
  sizes = {name: clip.IMAGE_SIZE for name in routes}
  for size in args.image_sizes:
    if size == clip.IMAGE_SIZE:
      continue
    sized = clip.build_encoder(weights, size)
    name = f'keras_{size}'
    routes[name] = tf.function(lambda x, sized=sized: sized(x, training=False))
    images[name], sizes[name] = image[:, :size, :size], size
  for name, call in routes.items():  # trace / compile / warm up
    call(images[name])
  wall = {name: [] for name in routes}
  cpu = {name: [] for name in routes}
  for _ in range(args.calls):
    for name, call in routes.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      result = call(images[name])
      if hasattr(result, 'numpy'):
        result.numpy()
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)

  rows = {}
  print(f'{"route":10} {"p50 ms":>8} {"cpu s":>7} {"GFLOP/s":>8} {"p50 / keras":>12}'
        f'  (load {os.getloadavg()[0]:.1f})')
  for name in routes:
    p50 = float(np.median(wall[name]))
    flop = 2 * multiply_adds(sizes[name])
    rows[name] = {'image_size': sizes[name], 'p50_ms': 1000 * p50,
                  'cpu_s_per_call': float(np.median(cpu[name])),
                  'gflop_per_s': flop / p50 / 1e9 if name != 'onnx_int8' else None,
                  'p50_over_keras': p50 / float(np.median(wall['keras']))}
    rate = rows[name]['gflop_per_s']
    print(f'{name:10} {1000 * p50:8.0f} {rows[name]["cpu_s_per_call"]:7.2f} '
          f'{rate if rate is not None else float("nan"):8.0f} {rows[name]["p50_over_keras"]:12.2f}')
  photo_memory.store(RESULTS, args.label, {
      'calls': args.calls, 'multiply_adds_per_face': MULTIPLY_ADDS,
      'multiply_adds_per_face_by_size': {s: multiply_adds(s) for s in sorted(set(sizes.values()))},
      'cpu_count': os.cpu_count(),
      'load_avg_1min_at_end': os.getloadavg()[0], 'precision': 'float32 (keras routes)',
      'routes': rows})


if __name__ == '__main__':
  main()
