"""Lists the input images of each configured source as `InputRecord`s.

Listing happens once, on the launcher, so every input file is known before any
work starts and can be accounted for at the end.
"""

import csv
import dataclasses
import hashlib
import os
from typing import Dict, List, Optional

import tensorflow as tf

from components import features
from pipeline.config import IngestConfig, SourceConfig

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
_LABELS = {'real': features.REAL, 'fake': features.FAKE, '0': features.REAL, '1': features.FAKE}
_SPLIT_ALIASES = {'train': features.TRAIN, 'eval': features.EVAL, 'valid': features.EVAL,
                  'val': features.EVAL, 'validation': features.EVAL, 'test': features.TEST}


@dataclasses.dataclass(frozen=True)
class InputRecord:
  path: str
  source: str
  image_id: str
  label: Optional[int]  # None when the label is missing or invalid (then `problem` says why)
  split: str  # '' means: assign by hash of image_id
  gender: str = features.UNKNOWN
  race: str = features.UNKNOWN
  age: str = features.UNKNOWN
  problem: str = ''  # set when the record is filtered before reading the image


def hash_split(image_id: str, eval_fraction: float, test_fraction: float) -> str:
  """Deterministic split from the image id, stable across runs and machines."""
  bucket = int(hashlib.sha256(image_id.encode('utf-8')).hexdigest()[:8], 16) / 0xFFFFFFFF
  if bucket < test_fraction:
    return features.TEST
  if bucket < test_fraction + eval_fraction:
    return features.EVAL
  return features.TRAIN


def _read_manifest(source: SourceConfig) -> List[InputRecord]:
  base = os.path.dirname(source.path)
  name = source.name or 'manifest'
  records = []
  with tf.io.gfile.GFile(source.path, 'r') as f:
    reader = csv.DictReader(f)
    missing = {'path', 'label'} - set(reader.fieldnames or [])
    if missing:
      raise ValueError(f'{source.path}: manifest lacks column(s) {sorted(missing)}')
    for row in reader:
      rel = row['path']
      problems = []
      label = _LABELS.get((row.get('label') or '').strip().lower())
      if label is None:
        problems.append(f"label {row.get('label')!r} is not real/fake/0/1")
      demo: Dict[str, str] = {}
      for key in features.DEMOGRAPHIC_FEATURES:
        value = (row.get(key) or '').strip() or features.UNKNOWN
        if value != features.UNKNOWN and value not in features.VOCABULARIES[key]:
          problems.append(f'{key} {value!r} is not in the FairFace vocabulary')
        demo[key] = value
      raw_split = (row.get('split') or '').strip().lower()
      split = _SPLIT_ALIASES.get(raw_split, '')
      if raw_split and not split:
        problems.append(f'split {raw_split!r} is not one of {sorted(_SPLIT_ALIASES)}')
      records.append(
          InputRecord(path=os.path.join(base, rel), source=name,
                      image_id=f'{name}/{os.path.splitext(rel)[0]}', label=label, split=split,
                      problem='; '.join(problems), **demo))
  return records


def _read_folders(source: SourceConfig) -> List[InputRecord]:
  """A plain tree: <path>/real/**/*.jpg and <path>/fake/**/*.jpg."""
  name = source.name or 'folders'
  records = []
  for label_name in ('real', 'fake'):
    root = os.path.join(source.path, label_name)
    for dirpath, _, filenames in tf.io.gfile.walk(root):
      for filename in sorted(filenames):
        if not filename.lower().endswith(IMAGE_EXTENSIONS):
          continue
        path = os.path.join(dirpath, filename)
        rel = os.path.relpath(path, source.path)
        records.append(InputRecord(path=path, source=name,
                                   image_id=f'{name}/{os.path.splitext(rel)[0]}',
                                   label=_LABELS[label_name], split=''))
  return records


READERS = {
    'manifest': _read_manifest,
    'folders': _read_folders,
}


def list_inputs(config: IngestConfig) -> List[InputRecord]:
  """Every input of every source, with its split resolved."""
  if not config.sources:
    raise ValueError('ingest.sources is empty: configure at least one source')
  records = []
  for source in config.sources:
    if source.kind not in READERS:
      raise ValueError(f'source kind {source.kind!r} is not one of {sorted(READERS)}')
    if not tf.io.gfile.exists(source.path):
      raise ValueError(f'source {source.kind} path does not exist: {source.path}')
    for record in READERS[source.kind](source):
      if not record.split:
        record = dataclasses.replace(
            record, split=hash_split(record.image_id, config.eval_fraction, config.test_fraction))
      records.append(record)
  return records
