"""`fakefaces label`: label or correct the demographics of faces by hand, in the terminal.

Starts from the DemographicAnnotator's proposals: for each face without a
human label (the annotator's predictions.csv says which), it shows the image path and, per
attribute, the proposed value and its confidence; Enter accepts it. The answers
go to a CSV in the `manifest` layout (`path,label,gender,race,age,split,image_id`),
one row per face, written as you go, so a session can stop (`q`) and resume.
Add it to the config as a manifest source and re-run: each row relabels the
image it names, and human labels are never replaced by predictions.
"""

import csv
import os
import sys
from typing import Dict, List, Optional, TextIO

from fakefaces.pipeline.cli import arguments
from fakefaces.pipeline.cli.commands.run import add_config_flags, config_from_args

OUT_COLUMNS = ('path', 'label', 'gender', 'race', 'age', 'split', 'image_id')
PREDICTIONS_FILE = 'predictions.csv'  # components/demographic_annotator/executor.py writes it
HELP = ('Enter: accept the proposal; a number or a value: choose it; u: unknown; '
        's: skip this face; q: save and quit')


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'label', help='label or correct demographics by hand, from the annotator\'s proposals',
      description=__doc__.split('\n\n', 1)[1])
  add_config_flags(p, overrides=False)
  p.add_argument('--annotations', required=True,
                 help='the DemographicAnnotator\'s output folder (holding predictions.csv), or a '
                      'folder above it (the newest predictions.csv below is used), e.g. '
                      'runs/shared/pipeline_root/DemographicAnnotator/annotations')
  p.add_argument('--out', required=True, help='CSV to write (appended to; labelled faces are '
                                              'skipped when resuming)')
  p.add_argument('--split', default='test',
                 help='only faces of this split (default test: what the fairness gate judges); '
                      '"all" for every split')
  p.add_argument('--include-predicted', action='store_true',
                 help='also faces whose demographics are already confidently predicted '
                      '(default: only faces still unknown in some attribute)')
  p.add_argument('--limit', type=arguments.at_least(0), default=0, help='stop after this many faces (0: all)')
  p.set_defaults(func=_run)


def find_predictions(path: str) -> str:
  if os.path.isfile(path):
    return path
  direct = os.path.join(path, PREDICTIONS_FILE)
  if os.path.isfile(direct):
    return direct
  found = [os.path.join(d, PREDICTIONS_FILE) for d, _, files in os.walk(path)
           if PREDICTIONS_FILE in files]
  if not found:
    raise ValueError(f'no {PREDICTIONS_FILE} under {path}: run the pipeline (its '
                     'DemographicAnnotator writes it) or point --annotations at its output')
  return max(found, key=os.path.getmtime)


def _ask(attribute: str, proposal: str, confidence: str, vocabulary, stdin: TextIO,
         stdout: TextIO) -> Optional[str]:
  """The chosen value, or None for skip ('s'); raises EOFError/KeyboardInterrupt for quit."""
  from fakefaces.components.shared import features  # pylint: disable=g-import-not-at-top
  choices = '  '.join(f'{i}:{v}' for i, v in enumerate(vocabulary, start=1))
  while True:
    stdout.write(f'  {attribute} [{proposal} {confidence}] ({choices}): ')
    stdout.flush()
    answer = stdin.readline()
    if not answer:
      raise EOFError
    answer = answer.strip()
    if answer == '':
      return proposal
    if answer.lower() == 'q':
      raise EOFError
    if answer.lower() == 's':
      return None
    if answer.lower() in ('u', features.UNKNOWN):
      return features.UNKNOWN
    if answer.isdigit() and 1 <= int(answer) <= len(vocabulary):
      return vocabulary[int(answer) - 1]
    matches = [v for v in vocabulary if v.lower() == answer.lower()]
    if matches:
      return matches[0]
    stdout.write(f'  not understood: {answer!r}. {HELP}\n')


def label_faces(config, predictions_path: str, out_path: str, split: str,
                include_predicted: bool, limit: int, stdin: TextIO, stdout: TextIO) -> int:
  """The interactive loop; returns the number of faces written in this session."""
  # pylint: disable=g-import-not-at-top
  from fakefaces.components.shared import features
  from fakefaces.components.face_example_gen import sources
  # pylint: enable=g-import-not-at-top
  records = {r.image_id: r for r in sources.list_inputs(config.ingest) if not r.problem}
  with open(predictions_path, newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  done = set()
  if os.path.exists(out_path):
    with open(out_path, newline='', encoding='utf-8') as f:
      done = {r['image_id'] for r in csv.DictReader(f)}
  todo: List[Dict[str, str]] = []
  for row in rows:
    if split != 'all' and row['split'] != split:
      continue
    if row['image_id'] in done or row['image_id'] not in records:
      continue
    if row['demographics_source'] in features.LABELLED_ORIGINS:
      continue  # a human or prompted label came with the data; correct the dataset's CSV instead
    if not include_predicted and all(row[f'{a}_value'] != features.UNKNOWN
                                     for a in features.DEMOGRAPHIC_FEATURES):
      continue
    todo.append(row)
  if limit:
    todo = todo[:limit]
  stdout.write(f'{len(todo)} faces to label ({len(done)} already in {out_path}). {HELP}\n')
  new_file = not os.path.exists(out_path)
  written = 0
  with open(out_path, 'a', newline='', encoding='utf-8') as out:
    writer = csv.DictWriter(out, fieldnames=OUT_COLUMNS)
    if new_file:
      writer.writeheader()
    for i, row in enumerate(todo, start=1):
      record = records[row['image_id']]
      stdout.write(f"[{i}/{len(todo)}] {record.path}  ({features.LABEL_NAMES[record.label]}, "
                   f"split {row['split']}, id {row['image_id']})\n")
      answers = {}
      try:
        for attribute in features.DEMOGRAPHIC_FEATURES:
          proposal = row[f'{attribute}_proposal'] or features.UNKNOWN
          answer = _ask(attribute, proposal, row[f'{attribute}_confidence'],
                        features.VOCABULARIES[attribute], stdin, stdout)
          if answer is None:
            break
          answers[attribute] = answer
      except EOFError:
        stdout.write('\nstopped; answers so far are saved\n')
        break
      if len(answers) < len(features.DEMOGRAPHIC_FEATURES):
        continue  # skipped
      writer.writerow({'path': os.path.abspath(record.path),
                       'label': features.LABEL_NAMES[record.label], 'split': record.split,
                       'image_id': record.image_id, **answers})
      out.flush()
      written += 1
  stdout.write(f'wrote {written} faces to {out_path}. Use them: add\n'
               f'  - {{kind: manifest, path: {out_path}, name: labels}}\n'
               'to ingest.sources and re-run; each row relabels the image it names.\n')
  return written


def _run(args) -> int:
  config = config_from_args(args)
  try:
    predictions = find_predictions(args.annotations)
    label_faces(config, predictions, args.out, args.split, args.include_predicted, args.limit,
                sys.stdin, sys.stdout)
  except ValueError as e:
    print(f'fakefaces label: {e}', file=sys.stderr)
    return 2
  return 0
