"""Reads a few features of one split of an Examples artifact, in process.

The DataGate needs exact per-example facts that statistics do not keep (label
by demographic group, which records hold an unreadable image). Splits are read
with tf.data, parsing only the requested features; a missing feature comes back
as None rather than failing, because a missing value is an anomaly the gate
reports, not a reason to crash.
"""

from typing import Dict, Iterator, List, Optional

import tensorflow as tf

from fakefaces.components.shared import example_files

BATCH_SIZE = 512


def read_features(files: List[str], dtypes: Dict[str, tf.dtypes.DType]
                  ) -> Iterator[Dict[str, Optional[object]]]:
  """Yields {feature: first value or None} per example (bytes for strings, int for ints)."""
  spec = {name: tf.io.RaggedFeature(dtype) for name, dtype in dtypes.items()}
  dataset = (example_files.records(files)
             .batch(BATCH_SIZE)
             .map(lambda serialized: tf.io.parse_example(serialized, spec)))
  for batch in dataset:
    columns = {name: values.to_list() for name, values in batch.items()}
    for i in range(len(next(iter(columns.values())))):
      yield {name: (column[i][0] if column[i] else None) for name, column in columns.items()}
