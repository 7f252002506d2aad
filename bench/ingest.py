"""Ingestion throughput: FaceExampleGen at 1 worker and at N workers (one per core), one run.

  beam-1        the FaceExampleGen executor, DirectRunner, 1 in-memory worker
  beam-N        the same with `beam_workers: N` (default: every core), which FaceExampleGen
                runs as one in-memory Beam worker and N face-preparation
                processes (executor.local_processes). Before that, Beam's own
                multi-process DirectRunner gave 1.15x for 800 photos on 2 cores
                (each worker process imports TensorFlow, Beam and TFX and loads dlib).
  beam-N-cnn-full  (unless --no-cnn-check) beam-N with `ingest.face.cnn_max_side: 0`, the CNN
                fallback at full size only: shows what the downscaled CNN saves and
                which faces each finds

The sample is FairFace plus gan_faces from ../shared/data (half each, the
deterministic `limit_per_source` sample); without that data, generated demo
images (`pipeline/demo_data.py`) are used, on which dlib finds few faces but
does the same detection work (HOG, then the CNN on every miss).
Times include pipeline start-up and TFRecord writing, as a real run does.

`workers_speedup` = faces/s at N workers / faces/s at 1 worker. It is only
meaningful on a quiet machine: the table records the load average before and
after each row. "Faces found unchanged" compares the per-file outcomes (and
the detector that found each face) of every row with beam-1.

  python bench/ingest.py                     # 2,000 photos, N = every core
  python bench/ingest.py --images 200 --workers 2 --no-cnn-check   # a quick check
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time


import fakefaces.pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import logging  # noqa: E402

from fakefaces.components.face_example_gen import executor  # noqa: E402
from fakefaces.components.face_preparation import align  # noqa: E402
from fakefaces.pipeline.beam_workers import direct_runner_args  # noqa: E402
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'ingest.json')
SPEEDUP_GOAL = 1.7  # on 2 cores: the face workers' target


def _cpu_seconds() -> float:
  """CPU time of this process and its finished children (the multi_processing workers)."""
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
      resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sample_config(data: str, images: int, detector: str, output_size: int,
                  work_dir: str) -> IngestConfig:
  """FairFace + gan_faces (half each) when `data` has them, else generated images."""
  fairface, gan = os.path.join(data, 'fairface'), os.path.join(data, 'gan_faces')
  if os.path.isdir(fairface) and os.path.isdir(gan):
    srcs = [SourceConfig('fairface', fairface), SourceConfig('kaggle140k', gan, 'gan_faces')]
    per_source = (images + 1) // 2
  else:
    from fakefaces.pipeline import demo_data  # pylint: disable=g-import-not-at-top
    manifest = demo_data.generate(os.path.join(work_dir, 'generated'), num_images=images, seed=0)
    srcs, per_source = [SourceConfig('manifest', manifest, 'generated')], images
  return IngestConfig(sources=srcs,
                      face=FacePreparation(align='dlib', detector=detector,
                                           output_size=output_size),
                      limit_per_source=per_source, max_failure_rate=1.0,
                      progress_interval_seconds=1e9)


def _outcomes(report):
  """image_id -> outcome for every input (written ones are absent from not_written)."""
  return {s['image_id']: s['outcome'] for s in report['not_written']}


def run_row(name: str, config: IngestConfig, workers: int, work_dir: str):
  out_dir = os.path.join(work_dir, name)
  load, cpu, start = os.getloadavg()[0], _cpu_seconds(), time.perf_counter()
  report = executor.run_standalone(config, out_dir, direct_runner_args(workers))
  seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
  faces = report['counts']['written']
  return {'path': name, 'workers': workers, 'inputs': report['total'], 'faces': faces,
          'faces_by_detector': report['faces_found_by_detector'],
          'cnn_max_side': config.face.cnn_max_side,
          'seconds': round(seconds, 2), 'cpu_seconds': round(cpu, 2),
          'faces_per_s': round(faces / seconds, 3),
          'faces_per_cpu_s': round(faces / cpu, 3) if cpu else None,
          'load_before': round(load, 2), 'load_after': round(os.getloadavg()[0], 2)}, report


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.environ.get('FACES_DATA') or
                      os.path.join(ROOT, '..', 'shared', 'data'))
  parser.add_argument('--images', type=int, default=2000, help='photos in the sample')
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='N')
  parser.add_argument('--detector', default=FacePreparation.detector,
                      choices=sorted(align.DETECTOR_CHAINS))
  parser.add_argument('--output-size', type=int, default=128, help='as shared_data.yaml')
  parser.add_argument('--no-cnn-check', action='store_true',
                      help='skip the full-size CNN row (cnn_max_side 0)')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.WARNING)

  with tempfile.TemporaryDirectory(prefix='bench_ingest_') as work_dir:
    config = sample_config(args.data, args.images, args.detector, args.output_size, work_dir)
    runs = [('beam-1', config, 1), (f'beam-{args.workers}', config, args.workers)]
    if not args.no_cnn_check and 'cnn' in align.DETECTOR_CHAINS[args.detector]:
      runs.append((f'beam-{args.workers}-cnn-full', dataclasses.replace(
          config, face=dataclasses.replace(config.face, cnn_max_side=0)),
                   args.workers))
    rows, reports = [], []
    for name, row_config, workers in runs:
      row, report = run_row(name, row_config, workers, work_dir)
      rows.append(row)
      reports.append(report)
  base = _outcomes(reports[0])
  for row, report in zip(rows, reports):
    row['faces_unchanged_vs_beam_1'] = (_outcomes(report) == base and
                                        row['faces'] == rows[0]['faces'])
  speedup = rows[1]['faces_per_s'] / rows[0]['faces_per_s'] if rows[0]['faces_per_s'] else None

  sources_used = ', '.join(s.name or s.kind for s in config.sources)
  print(f'\nIngestion of {rows[0]["inputs"]} photos ({sources_used}), detector {args.detector}, '
        f'output {args.output_size}px, {os.cpu_count()} CPUs (shared with other jobs)')
  header = (f"{'path':<18}{'workers':>8}{'faces':>7}{'seconds':>9}{'faces/s':>9}"
            f"{'faces/cpu-s':>13}{'same faces':>12}{'load before/after':>19}")
  print(header)
  print('-' * len(header))
  for r in rows:
    print(f"{r['path']:<18}{r['workers']:>8}{r['faces']:>7}{r['seconds']:>9.1f}"
          f"{r['faces_per_s']:>9.2f}{r['faces_per_cpu_s'] or 0:>13.2f}"
          f"{str(r['faces_unchanged_vs_beam_1']):>12}"
          f"{r['load_before']:>10.1f} / {r['load_after']:.1f}")
  if speedup:
    print(f'workers_speedup (faces/s at {args.workers} / at 1) = {speedup:.2f} '
          f'(goal >= {SPEEDUP_GOAL} on 2 cores)')
  if len(rows) > 2 and rows[2]['cpu_seconds']:
    print(f'CNN on a {config.face.cnn_max_side}px copy first vs full size: '
          f'{rows[2]["cpu_seconds"] / rows[1]["cpu_seconds"]:.2f}x the CPU seconds at full size')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump({'benchmark': 'ingest', 'command': 'python bench/ingest.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:]),
               'config': dataclasses.asdict(config), 'rows': rows,
               'workers': args.workers, 'workers_speedup': round(speedup, 3) if speedup else None,
               # N workers against 1, same config; the full-size CNN row is another config
               # (its per-file difference is in its own row).
               'faces_unchanged': rows[1]['faces_unchanged_vs_beam_1'],
               'python': platform.python_version(), 'cpus': os.cpu_count()}, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
