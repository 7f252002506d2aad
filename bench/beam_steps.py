"""StatisticsGen (TFDV) and the Evaluator (TFMA) at 1 and at N Beam workers, on a real run's inputs.

Statistics and evaluation should use every core. Both are Beam
pipelines, so a local run gives them what `beam_workers` sets: one in-memory
worker, or the multi-process DirectRunner with N workers (`pipeline/beam_workers.py`).
Whether N workers pay depends on the data size against each worker's start-up
(each imports TensorFlow and TFX; TFMA's also loads the SavedModel).

This bench re-runs the two executors exactly as the pipeline ran them: same
input artifacts and execution properties, read from the run's MLMD. Each
(component, workers) measurement runs in a fresh process, in ABBA order
(1, N, N, 1, ...) so that drift on a noisy machine falls on both sides. It
reports seconds and `speedup` = time at 1 worker / time at N, and writes
`bench/results/beam_steps.json`.

    python bench/beam_steps.py runs/shared/metadata.sqlite            # N = cores
    python bench/beam_steps.py runs/demo/metadata.sqlite --repeats 1  # quick look
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

from fakefaces.pipeline import run_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(ROOT, 'bench', 'results', 'beam_steps.json')
# Node name in the pipeline -> the executor class it ran (standard TFX components).
EXECUTORS = {
    'StatisticsGen': 'tfx.components.statistics_gen.executor.Executor',
    'Evaluator': 'tfx.components.evaluator.executor.Executor',
}


def run_once(metadata_path: str, node: str, workers: int, out_dir: str) -> float:
  """Runs `node`'s executor on the inputs of its newest run; returns the Do() seconds."""
  # pylint: disable=g-import-not-at-top
  import importlib
  from tfx.dsl.components.base import base_beam_executor
  from tfx.orchestration import data_types_utils, metadata
  from tfx.orchestration.portable.mlmd import execution_lib
  from fakefaces.components.shared.direct_runner import direct_runner_args
  # pylint: enable=g-import-not-at-top
  with metadata.Metadata(metadata.sqlite_metadata_connection_config(metadata_path)) as m:
    execution = run_metadata.newest_execution(m.store, node)
    inputs = execution_lib.get_input_artifacts(m, execution.id)
    outputs = execution_lib.get_output_artifacts(m, execution.id)
    exec_properties = execution_lib.remove_internal_keys(
        data_types_utils.build_value_dict(execution.custom_properties))
  for key, artifacts in outputs.items():  # same types, fresh places
    for i, artifact in enumerate(artifacts):
      artifact.uri = os.path.join(out_dir, key, str(i))
      os.makedirs(artifact.uri, exist_ok=True)
  module, name = EXECUTORS[node].rsplit('.', 1)
  executor_class = getattr(importlib.import_module(module), name)
  context = base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=direct_runner_args(workers), tmp_dir=os.path.join(out_dir, 'tmp'))
  start = time.perf_counter()
  executor_class(context).Do(inputs, outputs, exec_properties)
  return time.perf_counter() - start


def _measure(metadata_path: str, node: str, workers: int) -> float:
  """run_once in a fresh process (no warm caches, as in the pipeline's own process)."""
  with tempfile.TemporaryDirectory() as out_dir:
    code = ('import json, sys; sys.path.insert(0, %r); import beam_steps; '
            'print("SECONDS", json.dumps(beam_steps.run_once(%r, %r, %d, %r)))'
            % (os.path.dirname(os.path.abspath(__file__)), metadata_path, node, workers, out_dir))
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    lines = [l for l in done.stdout.splitlines() if l.startswith('SECONDS ')]
    if done.returncode or not lines:
      raise RuntimeError(f'{node} at {workers} worker(s) failed:\n{done.stderr[-3000:]}')
    return float(lines[-1].split(' ', 1)[1])


def main(argv: List[str] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('metadata', help='metadata.sqlite of a finished run')
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                      help='N, the multi-process worker count (default: cores)')
  parser.add_argument('--repeats', type=int, default=2,
                      help='measurements per (component, workers), in ABBA order')
  parser.add_argument('--components', nargs='+', default=list(EXECUTORS), choices=list(EXECUTORS))
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  metadata_path = os.path.abspath(args.metadata)
  if args.workers < 2:
    parser.error('--workers must be at least 2 to compare with 1')

  rows: List[Dict[str, Any]] = []
  for node in args.components:
    seconds: Dict[int, List[float]] = {1: [], args.workers: []}
    for repeat in range(args.repeats):
      order = (1, args.workers) if repeat % 2 == 0 else (args.workers, 1)
      for workers in order:
        seconds[workers].append(_measure(metadata_path, node, workers))
        print(f'{node:14} workers={workers}: {seconds[workers][-1]:.1f} s', flush=True)
    one, many = statistics.median(seconds[1]), statistics.median(seconds[args.workers])
    rows.append({'component': node, 'seconds_1_worker': seconds[1],
                 f'seconds_{args.workers}_workers': seconds[args.workers],
                 'median_1': round(one, 2), 'median_n': round(many, 2),
                 'speedup': round(one / many, 3)})

  print(f'\n{"component":14} {"1 worker s":>11} {f"{args.workers} workers s":>12} {"speedup":>8}')
  for r in rows:
    print(f'{r["component"]:14} {r["median_1"]:>11.1f} {r["median_n"]:>12.1f} {r["speedup"]:>8.2f}')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump({'benchmark': 'beam_steps', 'metadata': metadata_path, 'workers': args.workers,
               'cpus': os.cpu_count(), 'repeats': args.repeats, 'rows': rows}, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
