"""What confidence intervals cost the fairness evaluation, side by side in one run.

  (a) off        TFMA without intervals; the gate's own seeded parametric
                 bootstrap over the confusion counts (the default)
  (b) jackknife  TFMA's jackknife intervals on every metric and slice
  (c) poisson    TFMA's Poisson bootstrap intervals

Every path evaluates the same SavedModel (pipeline/fixtures/demo_models.py,
the biased one) on the same generated examples with the EvalConfig the
pipeline uses (6 slicing specs, ~34 slices), DirectRunner in_memory with one
worker, then judges with the gate. The table gives wall seconds, CPU seconds,
the ratio to (a), and the judging time (the gate's own bootstrap included).

  .venv/bin/python bench/fairness_intervals.py [--examples 280] [--methods off jackknife]
"""

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time


import fakefaces.pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from fakefaces.components.fairness_gate import evaluation  # noqa: E402
from fakefaces.components.shared import serving_contract  # noqa: E402
from fakefaces.pipeline.fixtures import demo_models  # noqa: E402
from fakefaces.pipeline import config as config_lib  # noqa: E402
from fakefaces.pipeline.cli.commands import gate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'fairness_intervals.json')
METHODS = {'off': 'off', 'jackknife': 'jackknife', 'poisson': 'poisson_bootstrap'}


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--examples', type=int, default=280)
  parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS))
  args = parser.parse_args()
  work = tempfile.mkdtemp(prefix='bench_fairness_')
  data = demo_models.write_demo_examples(os.path.join(work, 'test.tfrecord.gz'), args.examples, 1)
  model = demo_models.dark_face_model(os.path.join(work, 'model'))
  base = config_lib.load_thresholds(config_lib.DEFAULT_THRESHOLDS)
  base = dataclasses.replace(base, min_group_size=5)
  rows = []
  for name in args.methods:
    thresholds = dataclasses.replace(base, tfma_confidence_intervals=METHODS[name])
    out = os.path.join(work, name)
    wall, cpu = time.time(), _cpu_seconds()
    report = gate.run_gate(model, data, thresholds, out, list(gate.DEFAULT_BEAM_ARGS))
    wall, cpu = time.time() - wall, _cpu_seconds() - cpu
    judge = time.time()
    evaluation.build_report(os.path.join(out, gate.EVALUATION_DIR), thresholds, True, model,
                            serving_contract.read_decision_threshold(model))
    rows.append({'method': name, 'wall_s': round(wall, 1), 'cpu_s': round(cpu, 1),
                 'judge_s': round(time.time() - judge, 2), 'slices': len(report['slices']),
                 'verdict': report['verdict'], 'load_avg_1m': round(os.getloadavg()[0], 2)})
  reference = rows[0]['wall_s']
  print(f'{"method":<10} {"wall s":>8} {"cpu s":>8} {"x (a)":>7} {"judge s":>8} {"slices":>7}'
        f' {"load":>6}')
  for row in rows:
    row['ratio_to_first'] = round(row['wall_s'] / reference, 2)
    print(f'{row["method"]:<10} {row["wall_s"]:>8} {row["cpu_s"]:>8} {row["ratio_to_first"]:>7}'
          f' {row["judge_s"]:>8} {row["slices"]:>7} {row["load_avg_1m"]:>6}')
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, 'w', encoding='utf-8') as f:
    json.dump({'examples': args.examples, 'cpus': os.cpu_count(), 'rows': rows}, f, indent=2)
  print(f'wrote {RESULTS}')


if __name__ == '__main__':
  main()
