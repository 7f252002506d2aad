"""Wall time of each component of a pipeline run, from MLMD, and "before vs after" in one table.

Each TFX execution is created in ML Metadata when its component starts and
updated when it completes (or is served from cache), so
`last_update_time - create_time` is the component's wall time, driver and
publishing included. The run's total is from the first start to the last end
(components that run one after another: this is the pipeline's wall time).

Inputs are metadata.sqlite files of runs (`metadata_path` of the config), or
JSON files of per-component seconds for runs whose metadata is gone:

    {"source": "how it was measured", "seconds": {"FaceExampleGen": 653, ...}}

`bench/pipeline_before_speedup.json` holds the figures reported for
`shared_data.yaml` on 2 cores before the ingestion and training speed work
(docs/performance.md, "The shared-data run, per component").

    python bench/pipeline.py runs/shared/metadata.sqlite           # one run, printed only
    python bench/pipeline.py --before bench/pipeline_before_speedup.json \
        --after runs/shared/metadata.sqlite                          # side by side
"""

import argparse
import json
import os
import sys
from typing import Dict, Optional

from fakefaces.pipeline import run_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'pipeline.json')
TOTAL = 'total (wall)'


def run_times(metadata_path: str, run_id: Optional[str] = None) -> Dict[str, object]:
  """{'run': id, 'seconds': {component: s}, 'states': {component: state}} of one pipeline run.

  `run_id` is a `pipeline_run` context name; default: the newest run.
  """
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  store = run_metadata.open_store(metadata_path)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    raise ValueError(f'{metadata_path} holds no pipeline run')
  if run_id:
    matching = [r for r in runs if r.name == run_id]
    if not matching:
      raise ValueError(f'{metadata_path} has no run {run_id!r}; runs: {[r.name for r in runs]}')
    run = matching[0]
  else:
    run = max(runs, key=lambda r: (r.create_time_since_epoch, r.id))
  node_of = {}
  for node in store.get_contexts_by_type('node'):
    for execution in store.get_executions_by_context(node.id):
      node_of[execution.id] = run_metadata.node_name(node)
  executions = sorted(store.get_executions_by_context(run.id),
                      key=lambda e: e.create_time_since_epoch)
  seconds, states = {}, {}
  for e in executions:
    name = node_of.get(e.id) or e.type.rsplit('.', 1)[-1]
    seconds[name] = (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0
    states[name] = metadata_store_pb2.Execution.State.Name(e.last_known_state)
  if executions:
    seconds[TOTAL] = (max(e.last_update_time_since_epoch for e in executions) -
                      min(e.create_time_since_epoch for e in executions)) / 1000.0
  return {'run': run.name, 'metadata': os.path.abspath(metadata_path), 'seconds': seconds,
          'states': states}


def load_times(path: str, run_id: Optional[str] = None) -> Dict[str, object]:
  """A metadata.sqlite or a JSON of per-component seconds, as run_times returns."""
  if path.endswith('.json'):
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
    if not isinstance(data.get('seconds'), dict):
      raise ValueError(f'{path}: expected {{"seconds": {{component: seconds}}}}')
    return {'run': data.get('source', path), 'metadata': os.path.abspath(path),
            'seconds': {k: float(v) for k, v in data['seconds'].items()}, 'states': {}}
  return run_times(path, run_id)


def compare(before: Optional[Dict[str, object]], after: Dict[str, object]):
  """Rows (component, before s, after s, after/before) in the after run's order."""
  names = list(after['seconds'])
  if before:
    names += [n for n in before['seconds'] if n not in after['seconds']]
  names = [n for n in names if n != TOTAL] + [TOTAL]
  rows = []
  for name in names:
    b = before['seconds'].get(name) if before else None
    a = after['seconds'].get(name)
    rows.append({'component': name, 'before_s': b, 'after_s': a,
                 'after_over_before': round(a / b, 3) if a is not None and b else None,
                 'after_state': after['states'].get(name, '')})
  return rows


def _fmt(value) -> str:
  return '-' if value is None else f'{value:.1f}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('metadata', nargs='?', help='metadata.sqlite (or JSON) of the run to show')
  parser.add_argument('--after', help='the run after the change (same as the positional)')
  parser.add_argument('--before', help='the run before: metadata.sqlite or JSON of seconds')
  parser.add_argument('--run', help='pipeline_run id in the after file (default: newest)')
  parser.add_argument('--before-run', help='pipeline_run id in the before file (default: newest)')
  parser.add_argument('--out', help=f'where to write the JSON (default with --before: {RESULTS}; '
                      'one run alone is only printed unless --out is given)')
  args = parser.parse_args(argv)
  after_path = args.after or args.metadata
  if not after_path:
    parser.error('give the metadata.sqlite of a run (positional or --after)')
  after = load_times(after_path, args.run)
  before = load_times(args.before, args.before_run) if args.before else None
  rows = compare(before, after)

  print(f'\nafter:  {after["run"]} ({after["metadata"]})')
  if before:
    print(f'before: {before["run"]} ({before["metadata"]})')
  header = f'{"component":24} {"before s":>10} {"after s":>10} {"after/before":>13}  state'
  print(header)
  print('-' * len(header))
  for r in rows:
    ratio = '-' if r['after_over_before'] is None else f'{r["after_over_before"]:.2f}'
    print(f'{r["component"]:24} {_fmt(r["before_s"]):>10} {_fmt(r["after_s"]):>10} '
          f'{ratio:>13}  {r["after_state"]}')
  # Looking at one run must not replace the recorded before/after comparison.
  out = args.out or (RESULTS if before else None)
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
      json.dump({'benchmark': 'pipeline', 'before': before, 'after': after, 'rows': rows}, f,
                indent=2)
    print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
