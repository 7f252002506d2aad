"""FaceExampleGen's shards: the same files whatever order the runner hands the records over in."""

import glob
import os
import random

import apache_beam as beam
import tensorflow as tf

from fakefaces.components.face_example_gen import shards


def _write(rows, examples_uri, counts):
  with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
      ['--direct_running_mode=in_memory', '--direct_num_workers=1'])) as p:
    _ = p | beam.Create(rows, reshuffle=True) | shards.WriteShards(examples_uri, counts)
  return {os.path.relpath(f, examples_uri): [r.numpy() for r in
                                             tf.data.TFRecordDataset(f, compression_type='GZIP')]
          for f in sorted(glob.glob(os.path.join(examples_uri, '**', '*'), recursive=True))
          if os.path.isfile(f)}


def test_shards_hold_the_same_records_in_the_same_order_whatever_the_input_order(tmp_path):
  rows = [('train', f'src/{label}/{i:03d}', f'{label}{i}'.encode())
          for label in ('real', 'fake') for i in range(60)] + [('test', 'src/real/x', b'x')]
  counts = {'train': 3, 'eval': 1, 'test': 2}
  first = _write(rows, str(tmp_path / 'a'), counts)
  random.Random(1).shuffle(rows)
  second = _write(rows, str(tmp_path / 'b'), counts)
  assert first == second
  # Every shard exists, even those no record hashed to (the empty eval split, one test shard).
  assert sorted(first) == sorted(
      os.path.relpath(shards.shard_path('', s, i, n), '.')
      for s, n in counts.items() for i in range(n))
  assert first['Split-eval/data_tfrecord-00000-of-00001.gz'] == []
  assert sum(len(v) for v in first.values()) == len(rows)
  # Hash order mixes the labels: not all reals before all fakes (an image_id sort would).
  train = [r for f, v in sorted(first.items()) if 'train' in f for r in v]
  assert {r[:4] for r in train[:20]} == {b'real', b'fake'}


def test_shard_count_follows_the_inputs_not_the_runner():
  assert shards.shard_count(0) == 1
  assert shards.shard_count(shards.RECORDS_PER_SHARD) == 1
  assert shards.shard_count(shards.RECORDS_PER_SHARD + 1) == 2
