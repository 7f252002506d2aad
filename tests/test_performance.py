"""The machinery that lets every step use every core (no timing is asserted).

* local runs choose their DirectRunner workers (pipeline/beam_workers.py);
* N local workers (face-preparation processes) ingest exactly what one
  in-memory worker does, and a worker that dies costs only its photo;
* the CNN fallback on a downscaled copy finds the face it finds at full size;
* the FLOP count of the paper's CNNs, derived from their layers;
* the Trainer's performance options;
* bench/pipeline.py reads per-component times from a real MLMD store.
"""

import glob
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from fakefaces.components.face_example_gen import executor, face_workers, sources
from fakefaces.components.face_preparation import align
from fakefaces.components.trainer import flops, model, training
from fakefaces.pipeline import beam_workers
from fakefaces.pipeline.config import (ConfigError, FacePreparation, IngestConfig, PipelineConfig,
                                       SourceConfig, TrainConfig, from_dict)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- Beam workers for local runs -----------------------------------------------


def test_auto_uses_every_core_only_when_the_ingestion_repays_it():
  dlib = IngestConfig(face=FacePreparation(align='dlib'))
  assert beam_workers.auto_workers(dlib, 8012, cpus=2) == 2  # the shared-data run
  assert beam_workers.auto_workers(dlib, 8012, cpus=1) == 1
  assert beam_workers.auto_workers(dlib, 200, cpus=2) == 1  # start-up would dominate
  demo = IngestConfig(face=FacePreparation(align='none'))
  assert beam_workers.auto_workers(demo, 1000, cpus=8) == 1  # the demo


def test_local_args_give_ingestion_every_core_and_other_beam_steps_one_worker():
  ingest = IngestConfig(sources=[])
  base = PipelineConfig().beam_pipeline_args
  args = beam_workers.local_beam_args(base, 3, ingest)
  assert args.pipeline[:len(base)] == base
  assert args.pipeline[len(base):] == beam_workers.direct_runner_args(1)
  assert args.ingestion == ['--direct_running_mode=multi_processing', '--direct_num_workers=3']
  # FaceExampleGen's flags come after the pipeline's, so they win (TFX appends them).
  assert executor.local_processes(args.pipeline + args.ingestion)[1] == 3
  assert executor.local_processes(args.pipeline)[1] == 1
  assert beam_workers.local_beam_args(base, 1, ingest).ingestion[-1] == '--direct_num_workers=1'
  flink = ['--runner=FlinkRunner', '--flink_master=f:8081']
  assert beam_workers.local_beam_args(flink, 0, ingest) == (flink, [])  # not ours to change
  with pytest.raises(ConfigError, match='beam_workers'):
    beam_workers.local_beam_args(base, -1, ingest)


def test_the_pipeline_gives_face_example_gen_its_own_beam_args(tmp_path):
  from fakefaces.pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  config = PipelineConfig(pipeline_root=str(tmp_path / 'root'),
                          metadata_path=str(tmp_path / 'm.sqlite'))
  args = beam_workers.local_beam_args(config.beam_pipeline_args, 2, config.ingest)
  built = pipeline_lib.create_pipeline(config, beam_pipeline_args=args.pipeline,
                                       ingestion_beam_pipeline_args=args.ingestion)
  by_id = {c.id: c for c in built.components}
  assert by_id['FaceExampleGen'].executor_spec.beam_pipeline_args[-2:] == args.ingestion
  for name in ('StatisticsGen', 'Evaluator'):
    spec_args = by_id[name].executor_spec.beam_pipeline_args
    assert executor.local_processes(spec_args)[1] == 1, (name, spec_args)


def test_auto_counts_the_configured_inputs(demo_dataset):
  ingest = IngestConfig(sources=[SourceConfig('manifest', demo_dataset)],
                        face=FacePreparation(align='dlib'))
  n = len(sources.list_inputs(ingest))
  expected = (os.cpu_count() if (os.cpu_count() or 1) > 1 and
              n * beam_workers.SECONDS_PER_INPUT['dlib'] >= beam_workers.AUTO_MIN_SERIAL_SECONDS
              else 1)
  assert beam_workers.local_beam_args([], 0, ingest).ingestion == (
      beam_workers.direct_runner_args(expected))


def test_two_worker_processes_write_the_files_one_in_memory_worker_writes(demo_dataset, tmp_path,
                                                                          monkeypatch):
  """Same shards, same records in the same order: what a seeded Trainer needs to repeat a model."""
  # Worker processes import the installed package, as the driver does: no PYTHONPATH needed.
  monkeypatch.setenv('PYTHONPATH', '')
  config = IngestConfig(sources=[SourceConfig('manifest', demo_dataset, 'demo')],
                        face=FacePreparation(align='none', output_size=32), limit_per_source=40)
  one = executor.run_standalone(config, str(tmp_path / 'one'), beam_workers.direct_runner_args(1))
  two = executor.run_standalone(config, str(tmp_path / 'two'), beam_workers.direct_runner_args(2))
  assert one['counts']['written'] == 40
  assert two['counts'] == one['counts'] and two['by_split_label'] == one['by_split_label']

  def records(root):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    examples = os.path.join(root, 'examples')
    return {os.path.relpath(f, examples): [r.numpy() for r in
                                           tf.data.TFRecordDataset(f, compression_type='GZIP')]
            for f in sorted(glob.glob(os.path.join(examples, '**', '*'), recursive=True))
            if os.path.isfile(f)}

  written = records(tmp_path / 'one')
  assert sorted(written) == [f'Split-{s}/data_tfrecord-00000-of-00001.gz'
                             for s in ('eval', 'test', 'train')]
  assert sum(len(r) for r in written.values()) == 40
  assert records(tmp_path / 'two') == written


def test_a_source_with_its_own_align_is_prepared_in_the_worker_pool(demo_dataset, monkeypatch):
  """`align: none` sources in a dlib config go through the face workers like the rest (their
  descriptors cost ~113 CPU-ms each), and give the records one process gives."""
  monkeypatch.setenv('PYTHONPATH', '')
  config = IngestConfig(sources=[SourceConfig('manifest', demo_dataset, 'demo', align='none')],
                        face=FacePreparation(align='dlib', output_size=32), face_descriptors=True,
                        limit_per_source=6)
  records = sources.list_inputs(config)
  assert len(records) == 6 and all(r.align == 'none' for r in records)
  sent = []
  pool_prepare = face_workers.WorkerPool.prepare

  def counting_prepare(pool, data, align=''):
    sent.append(align)
    return pool_prepare(pool, data, align)

  monkeypatch.setattr(face_workers.WorkerPool, 'prepare', counting_prepare)
  one, two = executor.FaceProcessor(config, 1), executor.FaceProcessor(config, 2)
  try:
    expected, got = one.process_many(records), two.process_many(records)
  finally:
    one.close()
    two.close()
  assert sent == ['none'] * len(records)
  assert [o.outcome for o in expected] == [executor.WRITTEN] * len(records)
  assert [o.example for o in got] == [o.example for o in expected]


def test_local_multi_process_runs_become_one_beam_worker_with_face_worker_processes():
  args, processes = executor.local_processes(beam_workers.direct_runner_args(2))
  assert processes == 2 and args[-2:] == beam_workers.direct_runner_args(1)
  assert executor.local_processes(beam_workers.direct_runner_args(1))[1] == 1
  remote = ['--runner=DataflowRunner', '--direct_running_mode=multi_processing',
            '--direct_num_workers=4']
  assert executor.local_processes(remote) == (remote, 1)


class _EndsTheProcessWhenUnpickled:
  """A request whose unpickling calls os._exit: a real process death, as a native crash is."""

  def __reduce__(self):
    return os._exit, (3,)


def test_a_photo_that_kills_its_worker_ends_unreadable_and_the_pool_goes_on(demo_dataset):
  config = IngestConfig(sources=[SourceConfig('manifest', demo_dataset, 'demo')],
                        face=FacePreparation(align='none', output_size=32))
  with open(sources.list_inputs(config)[0].path, 'rb') as f:
    photo = f.read()
  pool = face_workers.WorkerPool(config.face, False, 2)
  try:
    good = pool.prepare(photo)
    crashed = pool.prepare(_EndsTheProcessWhenUnpickled())
    after = [pool.prepare(photo) for _ in range(4)]  # both workers, one of them new
  finally:
    pool.close()
  assert good[0] == face_workers.WRITTEN
  assert crashed[:2] == (face_workers.UNREADABLE, face_workers.CRASHED)
  assert all(a[:5] == good[:5] for a in after)


def test_face_workers_import_neither_tensorflow_nor_beam():
  """What keeps their start-up cheap (the reason they exist)."""
  code = ('import sys; import fakefaces.components.face_example_gen.face_workers; '
          'print(sorted(m for m in ("tensorflow", "apache_beam", "tfx") if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'


def test_negative_cnn_max_side_is_refused():
  with pytest.raises(ValueError, match='ingest.face.cnn_max_side'):
    from_dict(IngestConfig, {'face': {'cnn_max_side': -1}}, 'ingest')


# --- CNN fallback on a downscaled copy -----------------------------------------


def _iou(a, b):
  left, top = max(a[0], b[0]), max(a[1], b[1])
  right, bottom = min(a[2], b[2]), min(a[3], b[3])
  inter = max(0, right - left) * max(0, bottom - top)
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_downscaled_cnn_finds_the_face_the_full_size_cnn_finds(faces_data):
  full = align.FaceAligner('cnn', 128, cnn_max_side=0)
  small = align.FaceAligner('cnn', 128, cnn_max_side=128)
  files = sorted(glob.glob(os.path.join(faces_data, 'fairface', 'train', '*.jpg')))[:6]
  compared = 0
  for path in files:
    image = Image.open(path).convert('RGB')
    assert max(image.size) > 128  # FairFace crops are 224 px: the downscale happens
    full_boxes, _ = full.detect(image)
    small_boxes, _ = small.detect(image)
    if full_boxes:
      assert small_boxes, path  # at worst the full-size retry finds it
      biggest = max(full_boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
      assert max(_iou(biggest, b) for b in small_boxes) > 0.5, path
      compared += 1
  assert compared >= 4


# --- FLOPs and trainer options -------------------------------------------------


def _conv(h, c_in, c_out):
  return 2 * h * h * 9 * c_in * c_out


def test_vgg10_flops_match_the_hand_count():
  net = model.build_model('vgg10', 128, 1)
  forward = (_conv(128, 1, 32) + _conv(128, 32, 32) + _conv(64, 32, 64) + _conv(64, 64, 64) +
             _conv(32, 64, 128) + 3 * _conv(32, 128, 128) + 2 * 16 * 16 * 128 * 128 + 2 * 128)
  counted = flops.model_flops(net)
  assert counted['forward'] == forward  # 1.83 GFLOP
  # Backward: 2x every layer but the first (no gradient for the input image).
  assert counted['train_step'] == 3 * forward - _conv(128, 1, 32)
  assert 5.4e9 < counted['train_step'] < 5.6e9


def test_performance_options():
  net = model.build_model('baseline', 16, 1)
  assert not net.jit_compile
  training.apply_performance_options(net, TrainConfig(jit_compile=True))
  assert net.jit_compile
  with pytest.raises(ValueError, match='train.intra_op_threads'):
    training.configure_threads(TrainConfig(intra_op_threads=-2))


# --- bench/pipeline.py on a real MLMD store ------------------------------------


def test_pipeline_bench_reads_component_times_from_mlmd(tmp_path, load_bench, monkeypatch):
  bench_pipeline = load_bench('pipeline')
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  db = str(tmp_path / 'metadata.sqlite')
  schema = tfx.components.ImportSchemaGen(schema_file=os.path.join(PROJECT_ROOT, 'schema',
                                                                   'schema.pbtxt'))
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='bench-test', pipeline_root=str(tmp_path / 'root'), components=[schema],
      enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db)))
  after = bench_pipeline.run_times(db)
  assert set(after['seconds']) == {'ImportSchemaGen', bench_pipeline.TOTAL}
  assert after['states'] == {'ImportSchemaGen': 'COMPLETE'}
  assert 0 <= after['seconds']['ImportSchemaGen'] <= after['seconds'][bench_pipeline.TOTAL]

  before = tmp_path / 'before.json'
  before.write_text(json.dumps({'source': 'test', 'seconds': {
      'ImportSchemaGen': after['seconds']['ImportSchemaGen'] * 2 + 2, 'Trainer': 10}}))
  out = tmp_path / 'pipeline.json'
  assert bench_pipeline.main(['--before', str(before), '--after', db, '--out', str(out)]) == 0
  rows = {r['component']: r for r in json.loads(out.read_text())['rows']}
  assert rows['ImportSchemaGen']['after_over_before'] < 0.5
  assert rows['Trainer']['after_s'] is None and rows['Trainer']['before_s'] == 10
  with pytest.raises(FileNotFoundError):
    bench_pipeline.run_times(str(tmp_path / 'missing.sqlite'))
  # One run alone is only printed: it must not replace the recorded comparison.
  recorded = tmp_path / 'recorded.json'
  monkeypatch.setattr(bench_pipeline, 'RESULTS', str(recorded))
  assert bench_pipeline.main([db]) == 0
  assert not recorded.exists()
  assert bench_pipeline.main(['--before', str(before), '--after', db]) == 0
  assert recorded.exists()


def test_same_outputs_tells_reordered_records_from_different_ones(load_bench):
  same_outputs = load_bench('same_outputs')
  a = {'train': {'s0.gz': ['x', 'y'], 's1.gz': ['z']}}
  reordered = {'train': {'s0.gz': ['y', 'x'], 's1.gz': ['z']}}
  other = {'train': {'s0.gz': ['x', 'y'], 's1.gz': ['w']}}
  assert same_outputs.compare_examples(a, a)['train'] == {
      'records': [3, 3], 'same_records': True, 'same_order': True}
  assert same_outputs.compare_examples(a, reordered)['train']['same_order'] is False
  assert same_outputs.compare_examples(a, reordered)['train']['same_records'] is True
  assert same_outputs.compare_examples(a, other)['train']['same_records'] is False
