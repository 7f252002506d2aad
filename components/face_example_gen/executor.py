"""Beam executor of FaceExampleGen: images -> aligned faces -> tf.Examples.

Every input ends in exactly one outcome, recorded in the ingest report:
`written`, `no_face`, `unreadable` or `filtered`.
"""

import collections
import dataclasses
import io
import json
import os
from typing import Any, Dict, List, Tuple

import apache_beam as beam
import tensorflow as tf
from absl import logging
from PIL import Image
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components import features
from components.face_example_gen import sources
from pipeline.config import IngestConfig, from_dict

WRITTEN, NO_FACE, UNREADABLE, FILTERED = 'written', 'no_face', 'unreadable', 'filtered'
OUTCOMES = (WRITTEN, NO_FACE, UNREADABLE, FILTERED)
REPORT_FILE = 'report.json'
# Decompression-bomb guard: refuse images with more pixels than this.
MAX_IMAGE_PIXELS = 64_000_000


@dataclasses.dataclass
class Outcome:
  record: sources.InputRecord
  outcome: str
  reason: str = ''
  example: bytes = b''  # serialized tf.Example when written


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(record: sources.InputRecord, encoded: bytes, face_size: int) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE: _bytes_feature(encoded),
      features.LABEL: _int_feature(record.label),
      features.GENDER: _bytes_feature(record.gender.encode('utf-8')),
      features.RACE: _bytes_feature(record.race.encode('utf-8')),
      features.AGE: _bytes_feature(record.age.encode('utf-8')),
      features.SOURCE: _bytes_feature(record.source.encode('utf-8')),
      features.IMAGE_ID: _bytes_feature(record.image_id.encode('utf-8')),
      features.FACE_SIZE: _int_feature(face_size),
  }))


def _center_square(image: Image.Image) -> Image.Image:
  w, h = image.size
  side = min(w, h)
  left, top = (w - side) // 2, (h - side) // 2
  return image.crop((left, top, left + side, top + side))


class _ProcessImage(beam.DoFn):
  """Reads, aligns and encodes one image. Never raises for a bad image."""

  def __init__(self, config: IngestConfig):
    self._config = config

  def process(self, record: sources.InputRecord):
    if record.problem:
      yield Outcome(record, FILTERED, record.problem)
      return
    try:
      with tf.io.gfile.GFile(record.path, 'rb') as f:
        data = f.read()
    except (tf.errors.OpError, OSError) as e:
      yield Outcome(record, UNREADABLE, f'cannot read file: {e}')
      return
    if not data:
      yield Outcome(record, UNREADABLE, 'file is empty (0 bytes)')
      return
    try:
      image = Image.open(io.BytesIO(data))
      if image.width * image.height > MAX_IMAGE_PIXELS:
        yield Outcome(record, UNREADABLE,
                      f'{image.width}x{image.height} exceeds {MAX_IMAGE_PIXELS} pixels')
        return
      image.load()
      image = image.convert('RGB')
    except Exception as e:  # PIL raises many types for corrupt data  # pylint: disable=broad-except
      yield Outcome(record, UNREADABLE, f'not a readable image: {type(e).__name__}: {e}')
      return
    face, face_size = self._align(image)
    if face is None:
      yield Outcome(record, NO_FACE, 'no face detected')
      return
    buf = io.BytesIO()
    face.save(buf, format='JPEG', quality=self._config.jpeg_quality)
    example = make_example(record, buf.getvalue(), face_size)
    yield Outcome(record, WRITTEN, '', example.SerializeToString())

  def _align(self, image: Image.Image) -> Tuple[Any, int]:
    size = self._config.output_size
    if self._config.align == 'none':
      return _center_square(image).resize((size, size), Image.BILINEAR), 0
    raise ValueError(f'ingest.align {self._config.align!r} is not supported')


def _write_report(outcomes: List[Outcome], path: str) -> Dict[str, Any]:
  counts = collections.Counter(o.outcome for o in outcomes)
  by_source: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  by_split: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for o in outcomes:
    by_source[o.record.source][o.outcome] += 1
    if o.outcome == WRITTEN:
      by_split[o.record.split][features.LABEL_NAMES[o.record.label]] += 1
  report = {
      'total': len(outcomes),
      'counts': {k: counts.get(k, 0) for k in OUTCOMES},
      'by_source': {k: dict(v) for k, v in sorted(by_source.items())},
      'written_by_split': {k: dict(v) for k, v in sorted(by_split.items())},
      'not_written': [{'path': o.record.path, 'image_id': o.record.image_id,
                       'outcome': o.outcome, 'reason': o.reason}
                      for o in sorted(outcomes, key=lambda o: o.record.path)
                      if o.outcome != WRITTEN],
  }
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(report, f, indent=2, ensure_ascii=False)
  return report


class Executor(base_beam_executor.BaseBeamExecutor):
  """Lists inputs, processes them in Beam, writes per-split TFRecords and a report."""

  def Do(self, input_dict, output_dict, exec_properties):
    config = from_dict(IngestConfig, json.loads(exec_properties['ingest_config']), 'ingest')
    examples = artifact_utils.get_single_instance(output_dict['examples'])
    report_artifact = artifact_utils.get_single_instance(output_dict['ingest_report'])
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    records = sources.list_inputs(config)
    logging.info('FaceExampleGen: %d input images from %d source(s)', len(records),
                 len(config.sources))

    report_path = os.path.join(report_artifact.uri, REPORT_FILE)
    outcomes_dir = os.path.join(report_artifact.uri, 'outcomes')
    with self._make_beam_pipeline() as p:
      outcomes = (p | 'ListInputs' >> beam.Create(records)
                  | 'Reshuffle' >> beam.Reshuffle()
                  | 'ProcessImages' >> beam.ParDo(_ProcessImage(config)))
      written = outcomes | 'Written' >> beam.Filter(lambda o: o.outcome == WRITTEN)
      for split in features.SPLITS:
        _ = (written
             | f'Select[{split}]' >> beam.Filter(lambda o, s=split: o.record.split == s)
             | f'Serialize[{split}]' >> beam.Map(lambda o: o.example)
             | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                 os.path.join(examples.uri, f'Split-{split}', 'data_tfrecord'),
                 file_name_suffix='.gz'))
      # Outcomes without the image bytes, gathered for the report.
      _ = (outcomes
           | 'DropBytes' >> beam.Map(lambda o: dataclasses.replace(o, example=b''))
           | 'Gather' >> beam.combiners.ToList()
           | 'Report' >> beam.Map(_write_report, report_path))

    with tf.io.gfile.GFile(report_path) as f:
      report = json.load(f)
    del outcomes_dir
    counts = report['counts']
    logging.info('FaceExampleGen outcomes: %s', counts)
    failures = report['total'] - counts[WRITTEN]
    rate = failures / max(1, report['total'])
    if rate > config.max_failure_rate:
      raise RuntimeError(
          f'FaceExampleGen: {failures} of {report["total"]} inputs were not written '
          f'({rate:.1%} > ingest.max_failure_rate {config.max_failure_rate:.1%}); '
          f'counts {counts}; see {report_path}')
