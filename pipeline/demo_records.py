"""Generated demo images in the two layouts the trainer reads, for tests and bench/.

* `write_tfrecords`: gzipped TFRecords of tf.Examples per split, as
  FaceExampleGen writes them (`<out>/Split-<split>/data.tfrecord.gz`).
* `write_class_folders`: `<out>/<split>/{real,fake}/*.jpg`, the layout Keras'
  `ImageDataGenerator.flow_from_directory` reads (the paper's input path).
"""

import os
from typing import Dict, Iterable, Optional

import tensorflow as tf

from fakefaces.components import features
from fakefaces.components.face_example_gen import executor, sources
from fakefaces.pipeline import demo_data


def _rows(num_images: int, seed: int) -> Iterable[dict]:
  # Splits 70/15/15 (demo_data's interleaved split), labels alternate real/fake.
  return demo_data.iter_demo_rows(num_images, seed, eval_fraction=0.15, test_fraction=0.15)


def write_tfrecords(out_dir: str, num_images: int, seed: int = 0,
                    splits: Optional[Iterable[str]] = None) -> Dict[str, str]:
  """Writes the demo images as tf.Examples; returns {split: file pattern}."""
  writers, patterns = {}, {}
  wanted = set(splits or features.SPLITS)
  try:
    for row in _rows(num_images, seed):
      split = row['split'] if row['split'] in wanted else None
      if split is None:
        continue
      if split not in writers:
        split_dir = os.path.join(out_dir, f'Split-{split}')
        os.makedirs(split_dir, exist_ok=True)
        writers[split] = tf.io.TFRecordWriter(os.path.join(split_dir, 'data.tfrecord.gz'),
                                              options='GZIP')
        patterns[split] = os.path.join(split_dir, '*')
      record = sources.InputRecord(
          path='', source='demo', image_id=row['image_id'],
          label=features.FAKE if row['label'] == features.LABEL_NAMES[features.FAKE]
          else features.REAL,
          split=split, gender=row[features.GENDER], race=row[features.RACE], age=row[features.AGE])
      writers[split].write(executor.make_example(record, row['jpeg'], face_size=0)
                           .SerializeToString())
  finally:
    for writer in writers.values():
      writer.close()
  return patterns


def write_class_folders(out_dir: str, num_images: int, seed: int = 0) -> Dict[str, str]:
  """Writes the demo JPEGs as `<split>/<label>/<id>.jpg`; returns {split: folder}."""
  folders = {}
  for row in _rows(num_images, seed):
    folder = os.path.join(out_dir, row['split'])
    os.makedirs(os.path.join(folder, row['label']), exist_ok=True)
    with open(os.path.join(folder, row['label'], f"{row['image_id']}.jpg"), 'wb') as f:
      f.write(row['jpeg'])
    folders[row['split']] = folder
  return folders
