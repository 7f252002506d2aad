"""Ingestion throughput: aligned faces per second per core, three ways, one run.

  (a) sequential  the paper-style loop: open, detect, landmarks, PIL quad
                  transform, save JPEG, one image at a time, one process
  (b) beam-1      the FaceExampleGen executor, DirectRunner, 1 worker (in_memory)
  (c) beam-2      the same, 2 workers (multi_processing)

All three use the same dlib models and settings (IngestConfig defaults unless
flags say otherwise) on the same FairFace sample from ../shared/data, so the
ratios show what Beam costs and what a second worker buys. Beam times include
pipeline start-up and TFRecord writing, as a real run does. The machine's
cores are shared, so the table also gives faces per CPU-second (less sensitive
to other load) and the load average before each path.

  .venv/bin/python bench/ingest.py [--images 200] [--detector hog+cnn]
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import logging  # noqa: E402
from PIL import Image  # noqa: E402

from components.face_example_gen import align, executor, sources  # noqa: E402
from pipeline.config import IngestConfig, SourceConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'ingest.json')


def _cpu_seconds() -> float:
  """CPU time of this process and its finished children (the multi_processing workers)."""
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
      resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _sequential(config: IngestConfig, out_dir: str):
  """The loop a paper's preprocessing script runs; returns (faces written, seconds)."""
  start = time.perf_counter()
  aligner = align.FaceAligner(config.detector, config.output_size, config.hog_upsample,
                              config.cnn_upsample, config.detect_max_side)
  written = 0
  for i, record in enumerate(sources.list_inputs(config)):
    face = aligner.align(Image.open(record.path).convert('RGB'))
    if face is not None:
      face.image.save(os.path.join(out_dir, f'{i}.jpg'), quality=config.jpeg_quality)
      written += 1
  return written, time.perf_counter() - start


def _beam(config: IngestConfig, out_dir: str, args):
  start = time.perf_counter()
  report = executor.run_standalone(config, out_dir, args)
  return report['counts']['written'], time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.environ.get('FACES_DATA') or
                      os.path.join(ROOT, '..', 'shared', 'data'))
  parser.add_argument('--images', type=int, default=200, help='FairFace photos in the sample')
  parser.add_argument('--detector', default=IngestConfig.detector,
                      choices=sorted(align.DETECTOR_CHAINS))
  parser.add_argument('--output-size', type=int, default=IngestConfig.output_size)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.WARNING)

  config = IngestConfig(sources=[SourceConfig('fairface', os.path.join(args.data, 'fairface'))],
                        align='dlib', detector=args.detector, output_size=args.output_size,
                        limit_per_source=args.images, max_failure_rate=1.0)
  runs = [
      ('sequential', 1, lambda d: _sequential(config, d)),
      ('beam-1', 1, lambda d: _beam(config, d, ['--direct_running_mode=in_memory',
                                                  '--direct_num_workers=1'])),
      ('beam-2', 2, lambda d: _beam(config, d, ['--direct_running_mode=multi_processing',
                                                  '--direct_num_workers=2'])),
  ]
  rows = []
  for name, cores, run in runs:
    with tempfile.TemporaryDirectory(prefix=f'bench_ingest_{name}_') as out_dir:
      load, cpu = os.getloadavg()[0], _cpu_seconds()
      faces, seconds = run(out_dir)
      cpu = _cpu_seconds() - cpu
    rows.append({'path': name, 'workers': cores, 'images': args.images, 'faces': faces,
                 'seconds': round(seconds, 2), 'cpu_seconds': round(cpu, 2),
                 'faces_per_cpu_s': round(faces / cpu, 2),
                 'faces_per_s': round(faces / seconds, 2),
                 'faces_per_s_per_core': round(faces / seconds / cores, 2),
                 'load_before': round(load, 2)})
  base = rows[0]['faces_per_s_per_core']
  for row in rows:
    row['per_core_vs_sequential'] = round(row['faces_per_s_per_core'] / base, 2)

  print(f'\nIngestion of {args.images} FairFace photos, detector {args.detector}, '
        f'output {args.output_size}px, {os.cpu_count()} CPUs (shared)')
  header = f"{'path':<12}{'workers':>8}{'faces':>7}{'seconds':>9}{'faces/s':>9}" \
           f"{'faces/s/core':>14}{'vs seq':>8}{'faces/cpu-s':>13}{'load':>6}"
  print(header)
  print('-' * len(header))
  for r in rows:
    print(f"{r['path']:<12}{r['workers']:>8}{r['faces']:>7}{r['seconds']:>9.1f}"
          f"{r['faces_per_s']:>9.2f}{r['faces_per_s_per_core']:>14.2f}"
          f"{r['per_core_vs_sequential']:>8.2f}{r['faces_per_cpu_s']:>13.2f}"
          f"{r['load_before']:>6.1f}")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump({'benchmark': 'ingest', 'config': dataclasses.asdict(config), 'rows': rows,
               'python': platform.python_version(), 'cpus': os.cpu_count()}, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
