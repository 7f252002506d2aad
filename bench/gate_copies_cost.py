"""Gate copies cost: seconds of the DataGate's source-shortcut check with and without copies.

The one-class rule (components/data_gate/shortcut.py) probes a one-class row above
`max_probe_auc` again on processing-matched copies (`matched_copy`) of the same
samples of both sides. This bench times `check_source_shortcut` on a realistic
train split, as the gate runs it (default config: copies on) and with
`max_copies_drop` 1 (no copies), `--repeats` times each, alternating, and reports
the median seconds, the rows that made copies and their AUC and drop. Splits:

* `--examples DIR`: a train split FaceExampleGen wrote (`.../examples/N`, read
  as bench/processing_match.py reads it), e.g. the 600-per-source run;
* `--treatment NAME`: bench/processing_match.py's cached aligned train faces
  under one of its treatments (q88: the committed one; none: untreated, where
  the copies stop SDFD).

  nice -n 15 .venv/bin/python bench/gate_copies_cost.py --examples /tmp/s12run/pipeline_root/FaceExampleGen/examples/1 --treatment none

Prints the table and writes bench/results/gate_copies_cost.json.
"""

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))

import processing_match as pm  # noqa: E402  (its inputs, cache, treatment, reader; sets TF env)
from fakefaces.components.data_gate import shortcut  # noqa: E402


def time_check(examples: List[Dict[str, Any]], config, repeats: int) -> Dict[str, Any]:
  """Median seconds of check_source_shortcut with copies (config) and without (drop 1)."""
  configs = {'with copies': config, 'without': dataclasses.replace(config, max_copies_drop=1.0)}
  seconds: Dict[str, List[float]] = {name: [] for name in configs}
  rows = {}
  for repeat in range(repeats):
    # Alternating which runs first, so neither gets the warm caches (or the load) more often.
    for name, judged in sorted(configs.items(), reverse=bool(repeat % 2)):
      start = time.perf_counter()
      report = shortcut.check_source_shortcut(examples, judged)
      seconds[name].append(time.perf_counter() - start)
      rows[name] = {row['source']: {'auc': row['auc'], 'status': row['status'],
                                    'copies': row['copies'] and {
                                        k: row['copies'].get(k) for k in ('auc', 'drop')}}
                    for row in report['single_class_sources']}
  return {'seconds': {name: round(statistics.median(s), 2) for name, s in seconds.items()},
          'all_seconds': {name: [round(x, 2) for x in s] for name, s in seconds.items()},
          'rows': rows}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--examples', action='append', default=[],
                      help='a FaceExampleGen output (.../examples/N); repeatable')
  parser.add_argument('--treatment', action='append', default=[],
                      help="processing_match's cached train faces under this treatment")
  parser.add_argument('--config', default=pm.CONFIG)
  parser.add_argument('--limit-per-source', type=int, default=600)
  parser.add_argument('--cache', default=pm.CACHE)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results',
                                                    'gate_copies_cost.json'))
  args = parser.parse_args(argv)
  config, records = pm.train_inputs(args.config, args.limit_per_source)
  gate_config = config.validation.source_shortcut
  splits = {f'examples {path}': (lambda path=path: pm.read_ingested(path))
            for path in args.examples}
  for name in args.treatment:
    splits[f'cached faces, treatment {name}'] = lambda name=name: pm.treat(
        pm.load_aligned(records, args.cache),
        dataclasses.replace(config.ingest.face, **pm.CANDIDATES[name]))
  results = {}
  for split, load in splits.items():
    examples = load()
    results[split] = dict(time_check(examples, gate_config, args.repeats),
                          examples=len(examples))
  print(f"| split | examples | s with copies | s without | added | rows with copies (AUC -> "
        f"copies, drop, status) |\n|---|---|---|---|---|---|")
  for split, r in results.items():
    with_copies, without = r['seconds']['with copies'], r['seconds']['without']
    copied = '; '.join(f"{source} {row['auc']:.3f} -> {row['copies']['auc']:.3f} "
                       f"({row['copies']['drop']:+.3f}, {row['status']})"
                       for source, row in r['rows']['with copies'].items() if row['copies'])
    print(f"| {split} | {r['examples']} | {with_copies:.1f} | {without:.1f} | "
          f"{with_copies - without:+.1f} | {copied or 'none'} |")
  summary = {'gate_config': dataclasses.asdict(gate_config), 'repeats': args.repeats,
             'load_average': os.getloadavg(), 'cpus': os.cpu_count(), 'results': results}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(summary, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
