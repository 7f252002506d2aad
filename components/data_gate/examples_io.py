"""Reads a few features of one split of an Examples artifact, in process.

The DataGate needs exact per-example facts that statistics do not keep (label
by demographic group, which records hold an unreadable image). Splits are read
with tf.data, parsing only the requested features; a missing feature comes back
as None rather than failing, because a missing value is an anomaly the gate
reports, not a reason to crash.
"""

import os
from typing import Dict, Iterator, List, Optional

import tensorflow as tf
from tfx.types import artifact_utils

BATCH_SIZE = 512


def split_files(examples_artifact, split: str) -> List[str]:
  """The TFRecord files of `split`; a clear error when the split does not exist."""
  splits = artifact_utils.decode_split_names(examples_artifact.split_names)
  if split not in splits:
    raise ValueError(f'split {split!r} is not in the examples at {examples_artifact.uri} '
                     f'(splits: {splits})')
  split_dir = artifact_utils.get_split_uri([examples_artifact], split)
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*')))
  if not files:
    raise ValueError(f'split {split!r} has no files under {split_dir}')
  return files


def read_features(files: List[str], dtypes: Dict[str, tf.dtypes.DType]
                  ) -> Iterator[Dict[str, Optional[object]]]:
  """Yields {feature: first value or None} per example (bytes for strings, int for ints)."""
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  spec = {name: tf.io.RaggedFeature(dtype) for name, dtype in dtypes.items()}
  dataset = (tf.data.TFRecordDataset(files, compression_type=compression)
             .batch(BATCH_SIZE)
             .map(lambda serialized: tf.io.parse_example(serialized, spec)))
  for batch in dataset:
    columns = {name: values.to_list() for name, values in batch.items()}
    for i in range(len(next(iter(columns.values())))):
      yield {name: (column[i][0] if column[i] else None) for name, column in columns.items()}
