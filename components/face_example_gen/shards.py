"""TFRecord shards that do not depend on the runner: same inputs, same files, record for record.

Beam's `WriteToTFRecord` writes records in bundle order and picks the number of
shards from the bundling. Two runs of one configuration on the same photos
therefore wrote the same faces in different orders (one run 2 shards,
the other 1), and the Trainer, seeded, shuffled them into different models (val AUC
0.758 against 0.744 after one epoch; test TPR 0.42 against 0.69).

Here the number of shards of a split follows from its number of inputs, and a
record's shard and place in it from a hash of its `image_id`. The result is the
same at 1 or N workers, in memory or on Dataflow, and on a retried bundle. The
hash order also keeps labels and sources mixed: an `image_id` sort would put
one folder (all the reals) before the next.
"""

import hashlib
import math
import os
import uuid
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
import tensorflow as tf

from fakefaces.components.shared import example_files

# ~2,048 aligned 128 px faces are ~20 MB: one shard fits a worker's memory with room
# to spare at 256 px, and the Trainer's interleave still reads 8 shards of a 16k split.
RECORDS_PER_SHARD = 2048
TFRECORD_PREFIX = 'data_tfrecord'
_TMP_DIR = '.tmp'  # under the examples URI, outside every Split-* glob

Row = Tuple[bytes, str, bytes]  # (order key, image_id, serialized tf.Example)


def shard_count(num_inputs: int) -> int:
  return max(1, math.ceil(num_inputs / RECORDS_PER_SHARD))


def order_key(image_id: str) -> bytes:
  return hashlib.sha256(image_id.encode('utf-8')).digest()


def shard_of(image_id: str, shards: int) -> int:
  return int.from_bytes(order_key(image_id)[:8], 'big') % shards


def shard_path(examples_uri: str, split: str, shard: int, shards: int) -> str:
  return os.path.join(example_files.split_dir(examples_uri, split),
                      f'{TFRECORD_PREFIX}-{shard:05d}-of-{shards:05d}.gz')


class _WriteShard(beam.DoFn):
  """Writes one (split, shard) group sorted by order key; a retry rewrites the same file."""

  def __init__(self, examples_uri: str, shards: Dict[str, int]):
    self._examples_uri = examples_uri
    self._shards = shards

  def process(self, element: Tuple[Tuple[str, int], Iterable[Optional[Row]]]):
    (split, shard), rows = element
    rows = sorted(r for r in rows if r is not None)  # None: the marker every shard gets
    path = shard_path(self._examples_uri, split, shard, self._shards[split])
    tmp = os.path.join(self._examples_uri, _TMP_DIR, f'{os.path.basename(path)}.{uuid.uuid4().hex}')
    tf.io.gfile.makedirs(os.path.dirname(tmp))
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(tmp, options='GZIP') as writer:
      for _, _, example in rows:
        writer.write(example)
    tf.io.gfile.rename(tmp, path, overwrite=True)  # readers never see half a shard
    yield split, len(rows)


class WriteShards(beam.PTransform):
  """Writes `(split, image_id, serialized example)` elements as `shards[split]` files per split.

  Every shard file exists afterwards, empty when no record hashed to it, so
  each split has files for the components that read it. Outputs
  `(split, records written)` per shard.
  """

  def __init__(self, examples_uri: str, shards: Dict[str, int]):
    super().__init__()
    self._examples_uri = examples_uri
    self._shards = dict(shards)

  def expand(self, examples):
    shards = self._shards
    keyed = examples | 'KeyByShard' >> beam.Map(
        lambda e: ((e[0], shard_of(e[1], shards[e[0]])), (order_key(e[1]), e[1], e[2])))
    every_shard = (examples.pipeline
                   | 'EveryShard' >> beam.Create([((split, shard), None)
                                                  for split, n in sorted(shards.items())
                                                  for shard in range(n)]))
    return ((keyed, every_shard)
            | 'Flatten' >> beam.Flatten()
            | 'GroupByShard' >> beam.GroupByKey()
            | 'Write' >> beam.ParDo(_WriteShard(self._examples_uri, shards)))


def remove_temporary_files(examples_uri: str) -> None:
  """What a failed or retried write left beside the shards."""
  tmp = os.path.join(examples_uri, _TMP_DIR)
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
