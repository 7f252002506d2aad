"""Lists the input images of each configured source as `InputRecord`s.

Listing happens once, on the launcher, so every input file is known before any
work starts and can be accounted for at the end. A row or file that cannot be
used (bad label, value outside the FairFace vocabulary, duplicate id, ...) is
still listed, with `problem` saying why; the executor reports it as filtered.

Source kinds (`SourceConfig.kind`):
  fairface    folder with `fairface_label_train.csv` / `fairface_label_val.csv`
              (`file,age,gender,race,service_test`, file like `train/1.jpg`);
              train rows are hash-split into train/eval, val rows are test.
  kaggle140k  Kaggle "140k Real and Fake Faces": `real_vs_fake/real-vs-fake/
              {train,valid,test}/{real,fake}/*.jpg`; the path may be the
              dataset root, the `real-vs-fake` folder or any folder holding
              `{train,valid,test}/{real,fake}` directly.
  folders     `<path>/real/**` and `<path>/fake/**`, hash-split.
  manifest    CSV `path,label[,gender,race,age,split,image_id]`, paths relative to
              it. A row whose `image_id` names an image another source lists
              (same file) relabels that image: its known gender/race/age replace
              the other source's, as human labels (what `fakefaces label` writes).

A source with `demographics: prompted` (SDFD: the gender and race a generator was
asked for) lists its demographics as prompted: the examples carry
`demographics_source: prompted`. A manifest row relabelling such an image gives
it human labels instead: the prompt's values it does not confirm are dropped.

A source with `role: audit` is judged but never trained on: all its inputs go
to the test split, whatever their own split says, so the Trainer (train and
eval splits) never sees them and the Evaluator and fairness gate judge them.
"""

import csv
import dataclasses
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from fakefaces.components.shared import features
from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig
from fakefaces.components.face_preparation import faces
from fakefaces.components.shared.split_hash import unit_hash

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.heic',
                    '.heif', '.avif')
_LABELS = {'real': features.REAL, 'fake': features.FAKE, '0': features.REAL, '1': features.FAKE}
_SPLIT_ALIASES = {'train': features.TRAIN, 'eval': features.EVAL, 'valid': features.EVAL,
                  'val': features.EVAL, 'validation': features.EVAL, 'test': features.TEST}
FAIRFACE_CSVS = (('fairface_label_train.csv', features.TRAIN), ('fairface_label_val.csv',
                                                                 features.TEST))
FAIRFACE_COLUMNS = ('file', 'age', 'gender', 'race')
KAGGLE_SPLITS = (('train', features.TRAIN), ('valid', features.EVAL), ('test', features.TEST))
# Spreadsheets turn FairFace's '3-9' into '9-Mar' and '10-19' into 'Oct-19'.
_MANGLED_AGE = re.compile(r'^(\d{1,2}-[A-Za-z]{3}|[A-Za-z]{3}-\d{1,2})$')
DUPLICATE_ID = 'duplicate image_id'
ROLES = ('train', 'audit')  # SourceConfig.role
DEMOGRAPHICS = (features.HUMAN, features.PROMPTED)  # SourceConfig.demographics


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
  relabel: bool = False  # a manifest row naming an existing image_id: human labels for it
  align: str = ''  # the source's `align` when it differs from ingest.face.align ('' otherwise)
  prompted: bool = False  # gender/race/age are a generator's prompt, not human labels


def hash_split(image_id: str, eval_fraction: float, test_fraction: float) -> str:
  """Deterministic split from the image id, stable across runs and machines.

  Nested: test is the hash below `test_fraction`, so an image in test stays in test at
  any larger test_fraction; a larger share takes its extra images from eval and train.
  """
  bucket = unit_hash(image_id)
  if bucket < test_fraction:
    return features.TEST
  if bucket < test_fraction + eval_fraction:
    return features.EVAL
  return features.TRAIN


def parse_demographics(row: Dict[str, Optional[str]]) -> Tuple[Dict[str, str], List[str]]:
  """FairFace-vocabulary gender/race/age from a CSV row, and what is wrong with them."""
  demo: Dict[str, str] = {}
  problems = []
  for key in features.DEMOGRAPHIC_FEATURES:
    value = (row.get(key) or '').strip() or features.UNKNOWN
    if value != features.UNKNOWN and value not in features.VOCABULARIES[key]:
      if key == features.AGE and _MANGLED_AGE.match(value):
        problems.append(f'age {value!r} looks mangled by a spreadsheet (date format); '
                        f'FairFace ages are {list(features.AGES)}')
      else:
        problems.append(f'{key} {value!r} is not in the FairFace vocabulary '
                        f'{list(features.VOCABULARIES[key])}')
    demo[key] = value
  return demo, problems


def _open_csv(path: str, required: Tuple[str, ...]):
  """Yields (row number, row) of a CSV file, after checking its header."""
  with tf.io.gfile.GFile(path, 'r') as f:
    reader = csv.DictReader(f)
    missing = set(required) - set(reader.fieldnames or [])
    if missing:
      raise ConfigError(f'{path}: CSV lacks column(s) {sorted(missing)} '
                        f'(has {reader.fieldnames})')
    for line, row in enumerate(reader, start=2):
      yield line, row


def _read_manifest(source: SourceConfig, config: IngestConfig) -> List[InputRecord]:
  del config  # manifest rows carry their own split, or get hash-split later
  base = os.path.dirname(source.path)
  name = source.name or 'manifest'
  records = []
  for line, row in _open_csv(source.path, ('path', 'label')):
    rel = (row['path'] or '').strip()
    label = _LABELS.get((row.get('label') or '').strip().lower())
    demo, problems = parse_demographics(row)
    if label is None:
      problems.insert(0, f"label {row.get('label')!r} is not real/fake/0/1")
    raw_split = (row.get('split') or '').strip().lower()
    split = _SPLIT_ALIASES.get(raw_split, '')
    if raw_split and not split:
      problems.append(f'split {raw_split!r} is not one of {sorted(_SPLIT_ALIASES)}')
    if not rel:
      problems.append(f'{source.path} line {line}: empty path')
    explicit_id = (row.get('image_id') or '').strip()
    records.append(
        InputRecord(path=os.path.join(base, rel), source=name,
                    image_id=explicit_id or f'{name}/{os.path.splitext(rel)[0]}', label=label,
                    split=split, problem='; '.join(problems), relabel=bool(explicit_id),
                    **demo))
  return records


def _read_fairface(source: SourceConfig, config: IngestConfig) -> List[InputRecord]:
  """FairFace: real photos with demographics; val is the held-out test split."""
  name = source.name or 'fairface'
  present = [(f, s) for f, s in FAIRFACE_CSVS if tf.io.gfile.exists(os.path.join(source.path, f))]
  if not present:
    raise ConfigError(f'fairface source {source.path}: neither of '
                      f'{[f for f, _ in FAIRFACE_CSVS]} is there; put the label CSVs next '
                      'to the train/ and val/ image folders')
  records = []
  for csv_name, split in present:
    for _, row in _open_csv(os.path.join(source.path, csv_name), FAIRFACE_COLUMNS):
      rel = (row['file'] or '').strip()
      demo, problems = parse_demographics(row)
      image_id = f'{name}/{os.path.splitext(rel)[0]}'
      # Only the official val set is test; train is cut into train/eval by id.
      row_split = split if split == features.TEST else hash_split(
          image_id, config.eval_fraction, 0.0)
      records.append(InputRecord(path=os.path.join(source.path, rel), source=name,
                                 image_id=image_id, label=features.REAL, split=row_split,
                                 problem='; '.join(problems), **demo))
  return records


def _list_label_folder(root: str, base: str, name: str, label: int,
                       split: str) -> List[InputRecord]:
  """Every (non-hidden) file under `root`; non-image extensions are listed as filtered."""
  records = []
  for dirpath, _, filenames in sorted(tf.io.gfile.walk(root)):
    for filename in sorted(filenames):
      if filename.startswith('.'):
        continue
      path = os.path.join(dirpath, filename)
      rel = os.path.relpath(path, base)
      problem = '' if filename.lower().endswith(IMAGE_EXTENSIONS) else (
          f'extension is not one of {list(IMAGE_EXTENSIONS)}')
      records.append(InputRecord(path=path, source=name,
                                 image_id=f'{name}/{os.path.splitext(rel)[0]}', label=label,
                                 split=split, problem=problem))
  return records


def _read_folders(source: SourceConfig, config: IngestConfig) -> List[InputRecord]:
  """A plain tree: <path>/real/** and <path>/fake/**."""
  del config
  name = source.name or 'folders'
  records = []
  for label_name in ('real', 'fake'):
    records += _list_label_folder(os.path.join(source.path, label_name), source.path, name,
                                  _LABELS[label_name], '')
  return records


def kaggle140k_root(path: str) -> str:
  """The folder holding {train,valid,test}/{real,fake} for any accepted 140k path."""
  for candidate in (os.path.join(path, 'real_vs_fake', 'real-vs-fake'),
                    os.path.join(path, 'real-vs-fake'), path):
    if any(tf.io.gfile.isdir(os.path.join(candidate, d, 'real')) for d, _ in KAGGLE_SPLITS):
      return candidate
  raise ConfigError(f'kaggle140k source {path}: expected real_vs_fake/real-vs-fake/'
                    '{train,valid,test}/{real,fake}/ (or those folders directly) under it')


def _read_kaggle140k(source: SourceConfig, config: IngestConfig) -> List[InputRecord]:
  del config
  name = source.name or 'kaggle140k'
  root = kaggle140k_root(source.path)
  records = []
  for folder, split in KAGGLE_SPLITS:
    for label_name in ('real', 'fake'):
      label_dir = os.path.join(root, folder, label_name)
      if tf.io.gfile.isdir(label_dir):
        records += _list_label_folder(label_dir, root, name, _LABELS[label_name], split)
  return records


READERS: Dict[str, Callable[[SourceConfig, IngestConfig], List[InputRecord]]] = {
    'fairface': _read_fairface,
    'kaggle140k': _read_kaggle140k,
    'folders': _read_folders,
    'manifest': _read_manifest,
}


def _sample(records: List[InputRecord], limit: int) -> List[InputRecord]:
  """A deterministic pseudo-random subset of `limit` records, in listing order."""
  if limit <= 0 or len(records) <= limit:
    return records
  # Salted, so the sample is independent of the hash that assigns splits.
  order = sorted(range(len(records)), key=lambda i: unit_hash('sample/' + records[i].image_id))
  keep = set(order[:limit])
  return [r for i, r in enumerate(records) if i in keep]


def _check_source(index: int, source: SourceConfig) -> bool:
  if source.kind not in READERS:
    raise ConfigError(f'ingest.sources[{index}].kind {source.kind!r} is not one of '
                      f'{sorted(READERS)}')
  if source.role not in ROLES:
    raise ConfigError(f'ingest.sources[{index}].role {source.role!r} is not one of {list(ROLES)}')
  if source.demographics not in DEMOGRAPHICS:
    raise ConfigError(f'ingest.sources[{index}].demographics {source.demographics!r} is not one '
                      f'of {list(DEMOGRAPHICS)}')
  if source.align and source.align not in faces.ALIGN_MODES:
    raise ConfigError(f'ingest.sources[{index}].align {source.align!r} is not one of '
                      f'{list(faces.ALIGN_MODES)} (or empty: ingest.face.align)')
  if not tf.io.gfile.exists(source.path):
    raise ConfigError(f'ingest.sources[{index}] ({source.kind}) path does not exist: '
                      f'{source.path}')
  return True


def _relabels(listed: List[List[InputRecord]]) -> Dict[str, Dict[str, str]]:
  """{image_id: known demographics} from manifest rows naming another source's image (same file)."""
  by_id = {r.image_id: r for rs in listed for r in rs if not r.relabel}
  relabels: Dict[str, Dict[str, str]] = {}
  for source_records in listed:
    for record in source_records:
      target = by_id.get(record.image_id)
      if not record.relabel or record.problem or target is None or (
          os.path.normpath(target.path) != os.path.normpath(record.path)):
        continue
      relabels[record.image_id] = {k: getattr(record, k) for k in features.DEMOGRAPHIC_FEATURES
                                   if getattr(record, k) != features.UNKNOWN}
  return relabels


def listing_files(source: SourceConfig) -> List[str]:
  """The files a source's listing reads besides the inputs it lists: a manifest itself,
  FairFace's label CSVs (folders and kaggle140k list by walking, which reads no file)."""
  if source.kind == 'manifest':
    return [source.path]
  if source.kind == 'fairface':
    return [os.path.join(source.path, name) for name, _ in FAIRFACE_CSVS
            if tf.io.gfile.exists(os.path.join(source.path, name))]
  return []


def list_inputs(config: IngestConfig) -> List[InputRecord]:
  """Every input of every source, with its split resolved and duplicates marked."""
  if not config.sources:
    raise ConfigError('ingest.sources is empty: configure at least one source')
  records = []
  seen: Dict[str, str] = {}
  listed = [_sample(READERS[source.kind](source, config), config.limit_per_source)
            for index, source in enumerate(config.sources) if _check_source(index, source)]
  relabels = _relabels(listed)
  for source, source_records in zip(config.sources, listed):
    for record in source_records:
      if record.image_id in relabels:
        if record.relabel:
          continue  # a manifest row relabelling another source's image: not an input itself
        record = dataclasses.replace(record, **relabels[record.image_id])
        if source.demographics == features.PROMPTED:  # a person's labels replace the prompt's
          record = dataclasses.replace(record, **{
              k: relabels[record.image_id].get(k, features.UNKNOWN)
              for k in features.DEMOGRAPHIC_FEATURES})
      elif source.demographics == features.PROMPTED and not record.relabel:
        record = dataclasses.replace(record, prompted=True)
      if source.align and source.align != config.face.align:
        record = dataclasses.replace(record, align=source.align)
      if source.role == 'audit':  # judged, never trained on: nothing in train or eval
        record = dataclasses.replace(record, split=features.TEST)
      if not record.split:
        record = dataclasses.replace(
            record, split=hash_split(record.image_id, *config.split_fractions(source)))
      if record.image_id in seen:  # keep the first, account for the others
        problem = f'{DUPLICATE_ID} (first: {seen[record.image_id]})'
        record = dataclasses.replace(record, problem='; '.join(filter(None, [record.problem,
                                                                             problem])))
      else:
        seen[record.image_id] = record.path
      records.append(record)
  return records
