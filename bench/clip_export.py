"""A CLIP ViT-B/16 model's build, export and load: seconds, and what the export serves.

Each measurement is a fresh child process that times `backbone.compose` (building
the tower with the package's weights and a seeded linear head, the model the
Trainer exports), then `export.export_saved_model` (the Trainer's export),
then `tf.saved_model.load` of the result and the first call of each image
signature on two demo crops (which pays what the load left to do). The children
write P(fake) and the `explain` heatmaps, so the table also gives the largest
difference of the served outputs against the first checkout's: an export that
serves something else shows there.

`--before ROOT` adds another checkout's package (a folder holding
`fakefaces/`, e.g. main's) and alternates the two, round by round, so load
from other processes hits both alike. Prints a table; results go under
`--label` in bench/results/clip_export.json.

    nice -n 10 .venv/bin/python bench/clip_export.py --before /tmp/main_pkg --rounds 2
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import photo_memory  # bench/, this script's folder: the children's environment and the results file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'clip_export.json')

CHILD = r'''
import inspect, json, os, sys, time
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np
import tensorflow as tf
import tf_keras as keras
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.trainer import backbone, export
try:
  from fakefaces.components.image_encoder import clip
except ImportError:  # a --before checkout with the tower in components/trainer/
  from fakefaces.components.trainer import clip
from fakefaces.components.trainer.config import TrainConfig
from fakefaces.pipeline import demo_data
out, arrays = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
config = TrainConfig(architecture='clip_vit_b16', image_size=224, color_mode='rgb')
head = backbone.build_head(config, np.random.RandomState(0).randn(64, clip.EMBEDDING_SIZE))
# --before checkouts' compose takes no config.
compose_args = (config,) if 'config' in inspect.signature(backbone.compose).parameters else ()
weights = clip.read_weights()
t = time.perf_counter()
model = backbone.compose(head, weights, *compose_args)
t0 = time.perf_counter()
export.export_saved_model(model, out, clip.IMAGE_SIZE, 'rgb')
t1 = time.perf_counter()
loaded = tf.saved_model.load(out)
t2 = time.perf_counter()
images = tf.constant([demo_data.encode_jpeg(demo_data.render_image(i, fake=i % 2 == 1, seed=5)[0])
                      for i in range(2)])
served = loaded.signatures[contract.SERVING_SIGNATURE](image_bytes=images)
explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=images)
t3 = time.perf_counter()
np.savez(arrays, probability=served[contract.PROBABILITY_KEY].numpy(),
         heatmap=explained[contract.HEATMAP_KEY].numpy())
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(out) for f in files)
print(json.dumps({'compose_s': t0 - t, 'export_s': t1 - t0, 'load_s': t2 - t1,
                  'first_calls_s': t3 - t2, 'saved_model_mb': size / 2**20}))
'''


def measure(package_root: str, folder: str, name: str) -> dict:
  """One child on `package_root` ('' = this checkout): its timings and output arrays."""
  env = photo_memory.child_env(package_root)
  export_dir = os.path.join(folder, name)
  arrays = os.path.join(folder, name + '.npz')
  out = subprocess.run([sys.executable, '-c', CHILD, export_dir, arrays], check=True,
                       capture_output=True, text=True, timeout=1800, env=env)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  with np.load(arrays) as saved:
    result['arrays'] = {k: saved[k] for k in saved.files}
  return result


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--before', default='',
                      help='folder holding another checkout as fakefaces/ (e.g. main) to measure')
  parser.add_argument('--rounds', type=int, default=1)
  parser.add_argument('--label', default='now')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()
  checkouts = ([('before', args.before)] if args.before else []) + [('this', '')]
  rows, reference, load_start = [], None, os.getloadavg()
  print(f'{"checkout":9} {"round":>5} {"compose s":>9} {"export s":>9} {"load s":>7} '
        f'{"1st calls s":>11} {"MB":>6} {"max |dP|":>9} {"max |dheatmap|":>14}')
  with tempfile.TemporaryDirectory() as folder:
    for round_ in range(args.rounds):
      for name, package_root in checkouts:
        result = measure(package_root, folder, f'{name}{round_}')
        arrays = result.pop('arrays')
        reference = reference or arrays
        result.update(checkout=name, round=round_,
                      max_probability_difference=float(
                          np.abs(arrays['probability'] - reference['probability']).max()),
                      max_heatmap_difference=float(
                          np.abs(arrays['heatmap'] - reference['heatmap']).max()))
        rows.append(result)
        print(f'{name:9} {round_:5} {result["compose_s"]:9.1f} {result["export_s"]:9.1f} '
              f'{result["load_s"]:7.1f} {result["first_calls_s"]:11.1f} '
              f'{result["saved_model_mb"]:6.0f} '
              f'{result["max_probability_difference"]:9.2g} '
              f'{result["max_heatmap_difference"]:14.2g}', flush=True)
  photo_memory.store(args.out, args.label, {'load_average_start': load_start,
                                            'load_average_end': os.getloadavg(), 'rows': rows})
  return 0


if __name__ == '__main__':
  sys.exit(main())
