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
projection 196 x 768^2), 35.1 GFLOP. Results under `--label` in
bench/results/clip_tower.json.

    nice -n 10 .venv/bin/python bench/clip_tower.py --calls 10
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
MULTIPLY_ADDS = (12 * (4 * 197 * 768**2 + 2 * 197**2 * 768 + 2 * 197 * 768 * 3072)
                 + 196 * 768**2)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--calls', type=int, default=10, help='timed calls per route')
  parser.add_argument('--label', default='cpu')
  args = parser.parse_args()

  import onnxruntime  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fakefaces.components.image_encoder import clip, clip_weights  # pylint: disable=g-import-not-at-top

  encoder = clip.build_encoder()
  image = np.random.default_rng(0).random((1, clip.IMAGE_SIZE, clip.IMAGE_SIZE, 3), np.float32)
  session = onnxruntime.InferenceSession(clip_weights.locate(), providers=['CPUExecutionProvider'])
  onnx_input = session.get_inputs()[0].name
  routes = {
      'keras': tf.function(lambda x: encoder(x, training=False)),
      'keras_xla': tf.function(lambda x: encoder(x, training=False), jit_compile=True),
      'onnx_int8': lambda x: session.run(None, {onnx_input: np.transpose(x, (0, 3, 1, 2))}),
  }
  for call in routes.values():  # trace / compile / warm up
    call(image)
  wall = {name: [] for name in routes}
  cpu = {name: [] for name in routes}
  for _ in range(args.calls):
    for name, call in routes.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      result = call(image)
      if hasattr(result, 'numpy'):
        result.numpy()
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)

  rows = {}
  print(f'{"route":10} {"p50 ms":>8} {"cpu s":>7} {"GFLOP/s":>8}  (load {os.getloadavg()[0]:.1f})')
  for name in routes:
    p50 = float(np.median(wall[name]))
    rows[name] = {'p50_ms': 1000 * p50, 'cpu_s_per_call': float(np.median(cpu[name])),
                  'gflop_per_s': 2 * MULTIPLY_ADDS / p50 / 1e9 if name != 'onnx_int8' else None}
    rate = rows[name]['gflop_per_s']
    print(f'{name:10} {1000 * p50:8.0f} {rows[name]["cpu_s_per_call"]:7.2f} '
          f'{rate if rate is not None else float("nan"):8.0f}')
  photo_memory.store(RESULTS, args.label, {
      'calls': args.calls, 'multiply_adds_per_face': MULTIPLY_ADDS, 'cpu_count': os.cpu_count(),
      'load_avg_1min_at_end': os.getloadavg()[0], 'precision': 'float32 (keras routes)',
      'routes': rows})


if __name__ == '__main__':
  main()
