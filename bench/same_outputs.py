"""Do two runs of one configuration have the same outputs? Faces, records, and the trained model.

A faster run must give the same outputs: the same faces found,
and a model of the same quality given the same seed. This compares two
finished runs through their MLMD stores:

* the ingest reports (outcome counts, faces per detector, every input not written);
* FaceExampleGen's examples, per split: the same shard files holding the same
  records in the same order (`same_order`), or only the same set of records;
* the Trainer's exported weights: the largest absolute difference over every
  variable (0.0: the same model).

    python bench/same_outputs.py runs/shared_c/metadata.sqlite runs/shared_d/metadata.sqlite
    python bench/same_outputs.py runs/shared_c/metadata.sqlite OUT  # OUT of `fakefaces ingest`

A folder written by `fakefaces ingest --out OUT` stands for a run with only
FaceExampleGen (no model to compare).

Prints the comparison and writes `bench/results/same_outputs.json`; exits 1
when the faces or the records differ.
"""

import argparse
import hashlib
import json
import os
import sys
from typing import Any, Dict, List

from fakefaces.components.shared import reports
from fakefaces.pipeline import run_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(ROOT, 'bench', 'results', 'same_outputs.json')


def _record_digests(path: str) -> List[str]:
  """SHA-256 of each record of a gzipped TFRecord file, in file order."""
  from fakefaces.components.shared import example_files  # pylint: disable=g-import-not-at-top
  return [hashlib.sha256(r.numpy()).hexdigest() for r in example_files.records(path)]


def examples_by_split(examples_uri: str) -> Dict[str, Dict[str, List[str]]]:
  """{split: {shard file name: [record digests in order]}} of an Examples artifact."""
  out: Dict[str, Dict[str, List[str]]] = {}
  for split_dir in sorted(os.listdir(examples_uri)):
    if split_dir.startswith('Split-'):
      folder = os.path.join(examples_uri, split_dir)
      out[split_dir[len('Split-'):]] = {name: _record_digests(os.path.join(folder, name))
                                        for name in sorted(os.listdir(folder))}
  return out


def compare_examples(a: Dict[str, Dict[str, List[str]]],
                     b: Dict[str, Dict[str, List[str]]]) -> Dict[str, Any]:
  splits = {}
  for split in sorted(set(a) | set(b)):
    files_a, files_b = a.get(split, {}), b.get(split, {})
    records_a = [d for name in sorted(files_a) for d in files_a[name]]
    records_b = [d for name in sorted(files_b) for d in files_b[name]]
    splits[split] = {'records': [len(records_a), len(records_b)],
                     'same_records': sorted(records_a) == sorted(records_b),
                     'same_order': files_a == files_b}
  return splits


def ingest_summary(report_uri: str) -> Dict[str, Any]:
  report = reports.read_report(report_uri, missing_ok=False)
  return {'counts': report['counts'], 'faces_found_by_detector': report['faces_found_by_detector'],
          'not_written': sorted((r['path'], r['outcome']) for r in report.get('not_written', []))}


def largest_weight_difference(model_a: str, model_b: str) -> float:
  """Max |a - b| over every variable of two exported SavedModels (inf if they differ in shape)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  readers = [tf.train.load_checkpoint(os.path.join(m, 'Format-Serving', 'variables', 'variables'))
             for m in (model_a, model_b)]
  shapes = [r.get_variable_to_shape_map() for r in readers]
  if shapes[0] != shapes[1]:
    return float('inf')
  largest = 0.0
  for name in shapes[0]:
    a, b = (r.get_tensor(name) for r in readers)
    if np.issubdtype(np.asarray(a).dtype, np.floating):
      largest = max(largest, float(np.max(np.abs(a - b))) if np.size(a) else 0.0)
    elif not np.array_equal(a, b):
      return float('inf')
  return largest


def ingestion_outputs(path: str) -> Dict[str, List[str]]:
  """{'examples': [uri], 'ingest_report': [uri]} of a run's metadata.sqlite or an ingest folder."""
  if os.path.isdir(path):
    return {'examples': [os.path.join(path, 'examples')],
            'ingest_report': [os.path.join(path, 'ingest_report')]}
  return run_metadata.output_uris(run_metadata.open_store(path), 'FaceExampleGen')


def main(argv: List[str] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('first', help='metadata.sqlite of one run (or a `fakefaces ingest` folder)')
  parser.add_argument('second', help='the same of the other run')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  paths = [os.path.abspath(p) for p in (args.first, args.second)]
  ingest = [ingestion_outputs(p) for p in paths]
  reports = [ingest_summary(i['ingest_report'][0]) for i in ingest]
  examples = compare_examples(*(examples_by_split(i['examples'][0]) for i in ingest))
  result: Dict[str, Any] = {
      'runs': paths,
      'same_faces': reports[0] == reports[1],
      'faces': [r['counts'] for r in reports],
      'faces_found_by_detector': [r['faces_found_by_detector'] for r in reports],
      'examples': examples,
  }
  try:
    if any(os.path.isdir(p) for p in paths):
      raise ValueError('a `fakefaces ingest` folder has no model')
    models = [run_metadata.output_uris(run_metadata.open_store(p), 'Trainer')['model'][0]
              for p in paths]
    result['largest_weight_difference'] = largest_weight_difference(*models)
  except ValueError as e:  # a run without a completed Trainer
    result['largest_weight_difference'] = None
    result['model_note'] = str(e)

  print(f'same faces (outcomes, detectors, every input not written): {result["same_faces"]}')
  for split, row in examples.items():
    print(f'  {split:5} records {row["records"][0]:>6} / {row["records"][1]:<6} '
          f'same records: {row["same_records"]}  same files and order: {row["same_order"]}')
  print(f'largest weight difference: {result["largest_weight_difference"]}')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {args.out}')
  same = result['same_faces'] and all(r['same_records'] for r in examples.values())
  return 0 if same else 1


if __name__ == '__main__':
  sys.exit(main())
