"""The pipeline's Evaluator on a finished CLIP run: the tower on the test split, or the cache.

Each measurement is a fresh child process that runs the Evaluator's executor
(`fairness_gate/evaluator_executor.py`, TFX's with real TFMA) on the inputs of
the run's own Evaluator execution, read from its MLMD (annotated examples,
the Trainer's model, the EvalConfig, the splits; no baseline), into a folder of
its own, and times it (wall seconds, and the process's CPU seconds). `--before
ROOT` runs another checkout's package (a folder holding `fakefaces/`, e.g.
main's, whose Evaluator scores `from_examples`: the tower on every test crop)
on the same inputs, alternating with this checkout's round by round, so load
from other processes hits both alike. The table also gives the largest
difference between the two evaluations' overall metrics (AUC, confusion
counts, rates): the same numbers, or the cache is not the served model.
Results go under `--label` in bench/results/evaluator_cache.json.

    nice -n 10 .venv/bin/python bench/evaluator_cache.py --metadata RUN/metadata.sqlite \
        --before /tmp/main_pkg --label cpu_2cores_sample100
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import photo_memory  # bench/, this script's folder: the children's environment and the results file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'evaluator_cache.json')

CHILD = r'''
import json, os, resource, sys, time
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow_model_analysis as tfma
from tfx.types import standard_artifacts, standard_component_specs as keys
from fakefaces.pipeline import run_metadata
from fakefaces.components.fairness_gate import evaluator_executor
metadata, out = sys.argv[1], sys.argv[2]
store = run_metadata.open_store(metadata)
types = {t.id: t.name for t in store.get_execution_types()}
(execution,) = [e for e in store.get_executions() if types[e.type_id].endswith('.Evaluator')]
kinds = {keys.EXAMPLES_KEY: standard_artifacts.Examples, keys.MODEL_KEY: standard_artifacts.Model}
inputs = {}
for event in store.get_events_by_execution_ids([execution.id]):
  key = event.path.steps[0].key
  if event.type == event.INPUT and key in kinds:
    made = kinds[key]()
    made.set_mlmd_artifact(store.get_artifacts_by_id([event.artifact_id])[0])
    inputs[key] = [made]
properties = {k: v.string_value for k, v in execution.custom_properties.items()
              if k in (keys.EVAL_CONFIG_KEY, keys.EXAMPLE_SPLITS_KEY)}
outputs = {}
for key, kind in ((keys.EVALUATION_KEY, standard_artifacts.ModelEvaluation),
                  (keys.BLESSING_KEY, standard_artifacts.ModelBlessing)):
  outputs[key] = [kind()]
  outputs[key][0].uri = os.path.join(out, key)
before = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
evaluator_executor.Executor().Do(inputs, outputs, properties)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF)
metrics = {}
for per_slice in tfma.load_metrics(outputs[keys.EVALUATION_KEY][0].uri):
  if per_slice.slice_key.single_slice_keys:
    continue
  for entry in per_slice.metric_keys_and_values:
    value = entry.value
    if entry.key.is_diff:
      continue
    if value.HasField('double_value'):
      metrics[entry.key.name] = value.double_value.value
    elif value.HasField('confusion_matrix_at_thresholds'):
      for m in value.confusion_matrix_at_thresholds.matrices:
        for field in ('true_positives', 'false_positives', 'true_negatives', 'false_negatives'):
          metrics[f'{field}@{m.threshold:.6f}'] = getattr(m, field)
report = os.path.join(outputs[keys.EVALUATION_KEY][0].uri, 'backbone_features.json')
cache = json.load(open(report)) if os.path.exists(report) else {}
print(json.dumps({'seconds': seconds, 'cpu_seconds': after.ru_utime + after.ru_stime
                  - before.ru_utime - before.ru_stime, 'metrics': metrics,
                  'signatures': cache.get('signatures', {'candidate': 'from_examples'}),
                  'computed': cache.get('computed'), 'reused': cache.get('reused'),
                  'examples': cache.get('examples')}))
'''


def measure(metadata: str, package_root: str = '') -> dict:
  with tempfile.TemporaryDirectory() as out:
    done = subprocess.run([sys.executable, '-c', CHILD, metadata, out], capture_output=True,
                          text=True, env=photo_memory.child_env(package_root), check=False)
  if done.returncode:
    raise RuntimeError(f'the Evaluator child failed ({package_root or "this checkout"}):\n'
                       + done.stderr[-3000:])
  return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--metadata', required=True, help="a finished CLIP run's metadata.sqlite")
  parser.add_argument('--before', default='', help='a folder holding another fakefaces/ (main)')
  parser.add_argument('--rounds', type=int, default=1)
  parser.add_argument('--label', default='cpu_2cores')
  args = parser.parse_args()
  checkouts = ([('before', args.before)] if args.before else []) + [('now', '')]
  runs = {name: [] for name, _ in checkouts}
  load = [os.getloadavg()[0]]
  for _ in range(args.rounds):
    for name, root in checkouts:
      runs[name].append(measure(args.metadata, root))
      load.append(os.getloadavg()[0])
  now = runs['now'][-1]
  print('| Evaluator | seconds | CPU seconds | signature | crops through the tower |')
  print('|---|---|---|---|---|')
  for name, rows in runs.items():
    last = rows[-1]
    computed = last['computed'] if last['computed'] is not None else last['metrics'].get(
        'example_count')
    seconds = ', '.join('%.1f' % r['seconds'] for r in rows)
    cpu = ', '.join('%.1f' % r['cpu_seconds'] for r in rows)
    print(f"| {name} | {seconds} | {cpu} | {last['signatures'].get('candidate')} | "
          f'{computed:.0f} |')
  result = {'metadata': args.metadata, 'before': args.before, 'load_1min': load, 'runs': runs}
  if args.before:
    before = runs['before'][-1]['metrics']
    shared = sorted(set(before) & set(now['metrics']))
    result['largest_metric_difference'] = max(abs(before[k] - now['metrics'][k]) for k in shared)
    print(f"largest difference of {len(shared)} overall metrics: "
          f"{result['largest_metric_difference']:.3g}")
  print(f'1-min load: {", ".join(f"{x:.1f}" for x in load)}')
  photo_memory.store(RESULTS, args.label, result)
  return 0


if __name__ == '__main__':
  sys.exit(main())
