"""What the data validation gate costs, side by side in one run on the same TFRecords.

  (a) stats-plain     TFDV statistics as the stock StatisticsGen computed them before
                      (no schema, no semantic domain stats)
  (b) stats-gate      the gate's StatisticsGen options: schema + semantic domain stats
                      (image format histogram, BYTES stats for the image size check)
  (c) coverage-pass   the DataGate's slice-coverage pass: tf.data over the split,
                      parsing label/gender/race/age only, counting every judged group
  (d) image-pass      the DataGate's image fallback: reading every image value and
                      checking its format (runs only where TFDV has no image stats)

Data: `--examples` generated demo faces (128 px JPEG, half fake) written as
gzipped tf.Examples with the ingestion's make_example. The table gives wall and
CPU seconds and the ratio of wall time to (a).

  .venv/bin/python bench/data_gate.py [--examples 2000]
"""

import argparse
import json
import os
import resource
import tempfile
import time


import fakefaces.pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf  # noqa: E402
import tensorflow_data_validation as tfdv  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.data_gate import coverage, examples_io, executor  # noqa: E402
from fakefaces.components.data_gate.component import statistics_options  # noqa: E402
from fakefaces.pipeline import config as config_lib  # noqa: E402
from fakefaces.pipeline.fixtures import demo_models  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'data_gate.json')


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _coverage_pass(path: str) -> int:
  thresholds = config_lib.load_thresholds(config_lib.DEFAULT_THRESHOLDS)
  names = coverage.needed_features(thresholds)
  dtypes = dict({name: tf.string for name in names}, **{features.LABEL: tf.int64})
  counts = coverage.count_examples(examples_io.read_features([path], dtypes), names)
  rows = coverage.check_coverage(counts, coverage.thresholds_groups(thresholds, counts), 30)
  return len(rows)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--examples', type=int, default=2000)
  args = parser.parse_args()
  work = tempfile.mkdtemp(prefix='bench_data_gate_')
  path = demo_models.write_demo_examples(os.path.join(work, 'test.tfrecord.gz'), args.examples, 1)
  schema = tfdv.load_schema_text(config_lib.DEFAULT_SCHEMA)
  gate_options = statistics_options()
  gate_options.schema = schema
  paths = {
      'stats-plain': lambda: tfdv.generate_statistics_from_tfrecord(path),
      'stats-gate': lambda: tfdv.generate_statistics_from_tfrecord(
          path, stats_options=gate_options),
      'coverage-pass': lambda: _coverage_pass(path),
      'image-pass': lambda: executor.unsupported_images([path]),
  }
  paths['stats-plain']()  # warm-up: Beam and TFDV's first-use costs would land on (a)
  rows = []
  for name, run in paths.items():
    wall, cpu = time.time(), _cpu_seconds()
    run()
    rows.append({'path': name, 'examples': args.examples,
                 'wall_s': round(time.time() - wall, 2), 'cpu_s': round(_cpu_seconds() - cpu, 2)})
  base = rows[0]['wall_s']
  print(f"{'path':<15}{'examples':>9}{'wall s':>9}{'cpu s':>9}{'x (a)':>8}")
  for row in rows:
    row['ratio_to_plain'] = round(row['wall_s'] / base, 2)
    print(f"{row['path']:<15}{row['examples']:>9}{row['wall_s']:>9}{row['cpu_s']:>9}"
          f"{row['ratio_to_plain']:>8}")
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, 'w') as f:
    json.dump({'rows': rows, 'file_mb': round(os.path.getsize(path) / 1e6, 2)}, f, indent=2)
  print(f'wrote {RESULTS}')


if __name__ == '__main__':
  main()
