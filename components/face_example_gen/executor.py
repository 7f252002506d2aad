"""Beam executor of FaceExampleGen: images -> aligned faces -> tf.Examples.

Every input ends in exactly one outcome, recorded in the ingest report:
`written`, `no_face`, `unreadable` or `filtered` (with a reason). The report
(`report.json` of the IngestReport artifact) holds the counts overall, per
source and per split x label, and lists every input that was not written with
its path and reason. The run fails when too many inputs were not written.

The TFRecords do not depend on the runner (`shards.py`): the same photos give
the same files, record for record, at 1 or N workers, so a seeded Trainer
repeats its model.
"""

import collections
import concurrent.futures
import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx import types
from tfx.types import artifact_utils

from fakefaces.components.shared import artifacts, component_keys as keys, direct_runner, features, reports
from fakefaces.components.face_example_gen import face_workers, shards, sources
from fakefaces.components.face_preparation import descriptors
from fakefaces.components.shared.config_base import from_json, to_json
from fakefaces.components.face_example_gen.config import IngestConfig

WRITTEN, NO_FACE = face_workers.WRITTEN, face_workers.NO_FACE
UNREADABLE, FILTERED = face_workers.UNREADABLE, face_workers.FILTERED
OUTCOMES = (WRITTEN, NO_FACE, UNREADABLE, FILTERED)
METRICS_NAMESPACE = 'FaceExampleGen'
_TOP_REASONS = 20


@dataclasses.dataclass
class Outcome:
  record: sources.InputRecord
  outcome: str
  reason: str = ''
  example: bytes = b''  # serialized tf.Example when written
  detector: str = ''  # detector that found the face ('' for align 'none')


def validate_config(config: IngestConfig) -> None:
  """Fails fast, naming the field, before any Beam work starts.

  `config.face` (align, detector, sizes, treatment) was checked when it was built:
  the same checks clients get.
  """
  if not 0 <= config.max_failure_rate <= 1:
    raise ValueError(f'ingest.max_failure_rate {config.max_failure_rate} is not in [0, 1]')
  if config.eval_fraction < 0 or config.test_fraction < 0 or (
      config.eval_fraction + config.test_fraction >= 1):
    raise ValueError(f'ingest.eval_fraction {config.eval_fraction} + test_fraction '
                     f'{config.test_fraction} must be >= 0 and leave room for train')


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(record: sources.InputRecord, encoded: bytes, face_size: int,
                 descriptor: Optional[np.ndarray] = None) -> tf.train.Example:
  example = tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE: _bytes_feature(encoded),
      features.LABEL: _int_feature(record.label),
      features.GENDER: _bytes_feature(record.gender.encode('utf-8')),
      features.RACE: _bytes_feature(record.race.encode('utf-8')),
      features.AGE: _bytes_feature(record.age.encode('utf-8')),
      features.SOURCE: _bytes_feature(record.source.encode('utf-8')),
      features.IMAGE_ID: _bytes_feature(record.image_id.encode('utf-8')),
      features.FACE_SIZE: _int_feature(face_size),
  }))
  if record.prompted and any(getattr(record, k) != features.UNKNOWN
                             for k in features.DEMOGRAPHIC_FEATURES):
    # Only then: the records of every other source stay as they were, byte for byte.
    example.features.feature[features.DEMOGRAPHICS_SOURCE].bytes_list.value[:] = [
        features.PROMPTED.encode('utf-8')]
  if descriptor is not None:
    example.features.feature[features.FACE_DESCRIPTOR].float_list.value[:] = descriptor.tolist()
  return example


class FaceProcessor:
  """Read -> `faces.FacePreparer` (decode, check, align, encode) per record; never raises for bad data.

  With `processes` > 1 the preparation runs in that many worker processes
  (`face_workers.WorkerPool`: each loads the dlib models once, none imports
  TensorFlow), while this process reads the files and builds the tf.Examples. A
  worker that dies costs only the photo it had, which ends `unreadable`.
  """

  def __init__(self, config: IngestConfig, processes: int = 1):
    self._config = config
    self._params = config.face
    self._processes = processes
    self._pool: Optional[face_workers.WorkerPool] = None
    self._threads: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._preparers: Optional[face_workers.Preparers] = None
    self._describer = None
    if processes <= 1:
      self._preparers = face_workers.Preparers(self._params)
      if config.face.align == 'dlib':
        _ = self._preparers.get().aligner  # load the dlib models now, not on the first image
      self._describer = descriptors.FaceDescriber() if config.face_descriptors else None

  def close(self) -> None:
    if self._threads is not None:
      self._threads.shutdown()
      self._threads = None
    if self._pool is not None:
      self._pool.close()
      self._pool = None

  def _read(self, record: sources.InputRecord):
    """The file's bytes, or the Outcome that ends this record before any decoding."""
    if record.problem:
      return Outcome(record, FILTERED, record.problem)
    try:
      with tf.io.gfile.GFile(record.path, 'rb') as f:
        return f.read()
    except tf.errors.NotFoundError:
      return Outcome(record, UNREADABLE, 'file not found')
    except (tf.errors.OpError, OSError) as e:
      return Outcome(record, UNREADABLE, f'cannot read file: {e}')

  def _outcome(self, record: sources.InputRecord, prepared: face_workers.Prepared) -> Outcome:
    outcome, reason, encoded, face_size, detector, descriptor = prepared
    if outcome == UNREADABLE and reason.startswith('processing'):
      logging.error('FaceExampleGen: %s: %s', record.path, reason)
    if outcome != WRITTEN:
      return Outcome(record, outcome, reason)
    example = make_example(record, encoded, face_size, descriptor)
    # deterministic: map keys sorted, so the bytes do not depend on the process.
    return Outcome(record, WRITTEN, reason, example.SerializeToString(deterministic=True), detector)

  def __call__(self, record: sources.InputRecord) -> Outcome:
    return self.process_many([record])[0]

  def process_many(self, records: List[sources.InputRecord]) -> List[Outcome]:
    """Outcomes in input order; in the worker processes when `processes` > 1.

    Each record is prepared with its source's alignment mode (`record.align`, ''
    for the config's), in the same workers whatever the mode.
    """
    read = [self._read(r) for r in records]
    todo = [i for i, d in enumerate(read) if not isinstance(d, Outcome)]
    if self._processes <= 1:
      prepared = [face_workers.prepare(self._preparers.get(records[i].align), self._describer,
                                       read[i]) for i in todo]
    else:
      if self._pool is None:
        self._pool = face_workers.WorkerPool(self._params, self._config.face_descriptors,
                                             self._processes)
        self._threads = concurrent.futures.ThreadPoolExecutor(self._processes)
      prepared = list(self._threads.map(self._pool.prepare, [read[i] for i in todo],
                                        [records[i].align for i in todo]))
    for i, result in zip(todo, prepared):
      read[i] = self._outcome(records[i], result)
    return read


def local_processes(beam_pipeline_args: List[str]) -> Tuple[List[str], int]:
  """(Beam args, face-preparation processes) for FaceExampleGen.

  A local multi-process DirectRunner (`--direct_running_mode=multi_processing
  --direct_num_workers=N`, what `beam_workers` sets) becomes one in-memory Beam
  worker with N face-preparation processes (`face_workers`: why, and measured, in
  its docstring and docs/performance.md, "Ingestion on every core"). Any other runner is left as it
  is (one process per Beam worker: Dataflow and Flink run one worker per core).
  """
  processes = direct_runner.local_processes(beam_pipeline_args)
  if processes == 1:
    return list(beam_pipeline_args), 1
  return list(beam_pipeline_args) + direct_runner.direct_runner_args(1), processes


class _ProcessImages(beam.DoFn):
  """FaceProcessor in Beam on batches: models load once per DoFn instance; progress is logged."""

  def __init__(self, config: IngestConfig, processes: int = 1):
    self._config = config
    self._processes = processes
    self._processor: Optional[FaceProcessor] = None
    self._counters = {o: beam.metrics.Metrics.counter(METRICS_NAMESPACE, o) for o in OUTCOMES}

  def setup(self):
    # dlib models are not picklable: load here
    self._processor = FaceProcessor(self._config, self._processes)
    self._done = collections.Counter()
    self._started = self._last_log = time.monotonic()

  def process(self, records: List[sources.InputRecord]):
    for outcome in self._processor.process_many(list(records)):
      self._counters[outcome.outcome].inc()
      self._done[outcome.outcome] += 1
      yield outcome
    now = time.monotonic()
    if now - self._last_log >= self._config.progress_interval_seconds:
      self._last_log = now
      total = sum(self._done.values())
      logging.info('FaceExampleGen worker %d: %d images in %.0fs (%.1f/s), %s', os.getpid(),
                   total, now - self._started, total / max(now - self._started, 1e-9),
                   dict(self._done))

  def teardown(self):
    if self._processor is not None:
      self._processor.close()


def _summary(o: Outcome) -> Dict[str, Any]:
  """What the report keeps of an outcome (no image bytes)."""
  label = features.LABEL_NAMES.get(o.record.label, 'invalid')
  return {'path': o.record.path, 'image_id': o.record.image_id, 'source': o.record.source,
          'split': o.record.split, 'label': label, 'outcome': o.outcome, 'reason': o.reason,
          'detector': o.detector}


class _ReportCombineFn(beam.CombineFn):
  """Counts outcomes and gathers the inputs that were not written."""

  def create_accumulator(self):
    return {'counts': collections.Counter(), 'by_source': collections.Counter(),
            'by_split_label': collections.Counter(), 'detectors': collections.Counter(),
            'reasons': collections.Counter(), 'not_written': [], 'multi_face': []}

  def add_input(self, acc, s):
    acc['counts'][s['outcome']] += 1
    acc['by_source'][(s['source'], s['outcome'])] += 1
    acc['by_split_label'][(s['split'], s['label'], s['outcome'])] += 1
    if s['outcome'] == WRITTEN:
      if s['detector']:
        acc['detectors'][s['detector']] += 1
      if s['reason']:  # written, with a note: more faces than the one kept
        acc['multi_face'].append({k: s[k] for k in ('path', 'image_id', 'source', 'reason')})
    else:
      acc['reasons'][(s['outcome'], s['reason'].split(':')[0].split(' (first:')[0])] += 1
      acc['not_written'].append(
          {k: s[k] for k in ('path', 'image_id', 'source', 'split', 'outcome', 'reason')})
    return acc

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for acc in accumulators:
      for key, value in acc.items():
        merged[key] += value
    return merged

  def extract_output(self, acc):
    return build_report(acc)


def build_report(acc: Dict[str, Any]) -> Dict[str, Any]:
  """The report.json structure from the combined counters."""
  total = sum(acc['counts'].values())
  by_source: Dict[str, Dict[str, int]] = {}
  for (source, outcome), n in sorted(acc['by_source'].items()):
    by_source.setdefault(source, {o: 0 for o in OUTCOMES})[outcome] = n
  by_split_label: Dict[str, Dict[str, Dict[str, int]]] = {}
  for (split, label, outcome), n in sorted(acc['by_split_label'].items()):
    by_split_label.setdefault(split, {}).setdefault(label, {o: 0 for o in OUTCOMES})[outcome] = n
  not_written = total - acc['counts'][WRITTEN]
  return {
      'total': total,
      'counts': {o: acc['counts'][o] for o in OUTCOMES},
      'failure_rate': not_written / total if total else 0.0,
      'by_source': by_source,
      'by_split_label': by_split_label,
      'written_by_split': {
          split: {label: c[WRITTEN] for label, c in labels.items() if c[WRITTEN]}
          for split, labels in by_split_label.items()},
      'faces_found_by_detector': dict(sorted(acc['detectors'].items())),
      'top_reasons': [{'outcome': o, 'reason': r, 'count': n}
                      for (o, r), n in acc['reasons'].most_common(_TOP_REASONS)],
      'not_written': sorted(acc['not_written'], key=lambda s: (s['path'], s['image_id'])),
      # Written photos with more than one face: how many were found, the largest was used.
      'multi_face': sorted(acc.get('multi_face', []), key=lambda s: (s['path'], s['image_id'])),
  }


def input_facts(config: IngestConfig) -> Dict[str, Any]:
  """What the report records of the configuration: each source's kind and the alignment its
  photos got (the model card's data and licence text are generated from it)."""
  return {'sources': [{'name': s.name or s.kind, 'kind': s.kind, 'path': s.path, 'role': s.role,
                       'align': s.align or config.face.align, 'demographics': s.demographics}
                      for s in config.sources],
          'face': {'align': config.face.align, 'detector': config.face.detector}}


def _write_report(report: Dict[str, Any], path: str, inputs: Dict[str, Any]) -> None:
  # Non-ASCII file names stay readable in the report.
  reports.write_report(os.path.dirname(path), dict(report, inputs=inputs), os.path.basename(path),
                       ensure_ascii=False)


def _build_ingestion(config: IngestConfig, examples_uri: str, report_path: str,
                     beam_pipeline: beam.Pipeline, processes: int = 1) -> None:
  """Builds the ingestion into `beam_pipeline` (run by the caller's `with`).

  `processes`: face-preparation processes per Beam worker (see `local_processes`).
  """
  records = sources.list_inputs(config)
  if not records:
    raise ValueError(f'ingest.sources {[s.path for s in config.sources]} hold no input images')
  logging.info('FaceExampleGen: %d inputs from %d source(s) %s', len(records),
               len(config.sources), dict(collections.Counter(r.source for r in records)))
  # Batches keep a pool of `processes` busy; 16 photos per process leave little idle tail.
  batch = 16 * processes
  outcomes = (beam_pipeline
              | 'ListInputs' >> beam.Create(records)
              | 'Reshuffle' >> beam.Reshuffle()  # spread the slow images over workers
              | 'Batch' >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
              | 'ProcessImages' >> beam.ParDo(_ProcessImages(config, processes)))
  # Shards per split from the inputs, not from what the runner bundled (shards.py).
  inputs_per_split = collections.Counter(r.split for r in records)
  _ = (outcomes
       | 'Written' >> beam.Filter(lambda o: o.outcome == WRITTEN)
       | 'Keep' >> beam.Map(lambda o: (o.record.split, o.record.image_id, o.example))
       | 'WriteSplits' >> shards.WriteShards(
           examples_uri, {split: shards.shard_count(inputs_per_split[split])
                          for split in features.SPLITS}))
  _ = (outcomes
       | 'Summarize' >> beam.Map(_summary)
       | 'Report' >> beam.CombineGlobally(_ReportCombineFn())
       | 'WriteReport' >> beam.Map(_write_report, report_path, input_facts(config)))


def check_report(report: Dict[str, Any], config: IngestConfig, report_path: str) -> None:
  """Logs the outcome counts; raises when more than max_failure_rate was not written."""
  counts = report['counts']
  logging.info('FaceExampleGen outcomes: %s; per source %s; faces by detector %s', counts,
               report['by_source'], report['faces_found_by_detector'])
  for reason in report['top_reasons']:
    logging.info('FaceExampleGen not written: %(count)d x %(outcome)s: %(reason)s', reason)
  failures = report['total'] - counts[WRITTEN]
  if report['failure_rate'] > config.max_failure_rate:
    top = '; '.join(f"{r['count']} {r['outcome']}: {r['reason']}"
                    for r in report['top_reasons'][:5])
    raise RuntimeError(
        f'FaceExampleGen: {failures} of {report["total"]} inputs were not written '
        f'({report["failure_rate"]:.1%} > ingest.max_failure_rate '
        f'{config.max_failure_rate:.1%}); counts {counts}; most common: {top}; '
        f'every file is listed in {report_path}')


class Executor(base_beam_executor.BaseBeamExecutor):
  """Lists inputs, processes them in Beam, writes per-split TFRecords and a report."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Ingests every configured source; writes the splits and report.json.

    Args:
      input_dict: empty (the sources are files named by the config, not artifacts).
      output_dict: `examples` (Examples): gzipped TFRecords of tf.Example under
        `Split-train`, `Split-eval`, `Split-test` (features: components/shared/features.py);
        `ingest_report` (IngestReport): report.json, the outcome of every input file.
      exec_properties: `ingest_config` (IngestConfig as JSON); `input_fingerprint`
        (a signature of the input files, only read by TFX's cache).

    Raises:
      ConfigError: a config field is invalid (named by its dotted path).
      ValueError: a source is missing or holds no input images (named by its index).
      RuntimeError: more than `ingest.max_failure_rate` of the inputs were not
        written; the report is written first and the message points to it.
    """
    del input_dict
    config = from_json(IngestConfig, exec_properties[keys.INGEST_CONFIG_KEY], 'ingest')
    validate_config(config)
    examples = artifact_utils.get_single_instance(output_dict[keys.EXAMPLES_KEY])
    report_artifact = artifact_utils.get_single_instance(output_dict[keys.INGEST_REPORT_KEY])
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, 'tfrecords_gzip')
    report_path = os.path.join(report_artifact.uri, reports.REPORT_JSON)

    self._beam_pipeline_args, processes = local_processes(self._beam_pipeline_args)
    logging.info('FaceExampleGen: %d face-preparation process(es) per Beam worker', processes)
    with self._make_beam_pipeline() as p:
      _build_ingestion(config, examples.uri, report_path, p, processes)
    shards.remove_temporary_files(examples.uri)

    check_report(reports.read_report(report_artifact.uri, missing_ok=False), config, report_path)


EXAMPLES_DIR, REPORT_DIR = 'examples', 'ingest_report'  # run_standalone's output folders


def run_standalone(config: IngestConfig, output_dir: str,
                   beam_pipeline_args: Optional[List[str]] = None) -> Dict[str, Any]:
  """Runs the executor outside a TFX pipeline: the one ingestion entry for every caller.

  `fakefaces ingest`, `fakefaces gate --examples CONFIG.yaml`, tests and benches
  call this; it runs the component's own `Executor.Do`, so they ingest exactly as
  the pipeline does.

  Args:
    config: the ingestion config.
    output_dir: where `examples/Split-*/` and `ingest_report/report.json` are written.
    beam_pipeline_args: Beam args (a local multi-process DirectRunner becomes face
      worker processes, see `local_processes`); default: one in-memory worker.

  Returns:
    The report (report.json as a dict).

  Raises:
    Like `Executor.Do`: ConfigError, ValueError, or RuntimeError when too much failed.
  """
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  examples, report = standard_artifacts.Examples(), artifacts.IngestReport()
  examples.uri = os.path.join(output_dir, EXAMPLES_DIR)
  report.uri = os.path.join(output_dir, REPORT_DIR)
  tf.io.gfile.makedirs(report.uri)
  context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_pipeline_args or [])
  Executor(context).Do({}, {keys.EXAMPLES_KEY: [examples], keys.INGEST_REPORT_KEY: [report]},
                       {keys.INGEST_CONFIG_KEY: to_json(config)})
  return reports.read_report(report.uri, missing_ok=False)
