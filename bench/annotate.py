"""Annotator throughput beside ingestion's: faces per CPU-second, one run, same images.

  (a) ingest    FaceExampleGen's per-image work: read, decode, detect (HOG, CNN
                where HOG finds none), 68 landmarks, FFHQ crop, JPEG encode
  (b) annotate  the DemographicAnnotator's per-face work on that crop: decode,
                5-point shape on the fixed aligned-face box, dlib ResNet descriptor
  (c) classify  the three logistic regressions on the descriptors (batched)

Both run in this one process, image by image and interleaved (a, b, a, b, ...),
on the same FairFace sample from ../shared/data, so the machine's shared load
hits both alike: compare the ratio, and read faces per CPU-second (CPU time
is less sensitive to other engineers' jobs than wall time). One process is
one core: faces per CPU-second is faces/s per core.

  .venv/bin/python bench/annotate.py [--images 60] [--detector hog+cnn]
"""

import argparse
import json
import os
import platform
import time


import fakefaces.pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.demographic_annotator import annotate  # noqa: E402
from fakefaces.components.face_preparation import descriptors  # noqa: E402
from fakefaces.components.face_example_gen import executor, sources  # noqa: E402
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'annotate.json')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data', default=os.environ.get('FACES_DATA') or
                      os.path.join(ROOT, '..', 'shared', 'data'))
  parser.add_argument('--images', type=int, default=60)
  parser.add_argument('--detector', default='hog+cnn')
  parser.add_argument('--output-size', type=int, default=128)
  args = parser.parse_args()
  config = IngestConfig(sources=[SourceConfig(kind='fairface',
                                              path=os.path.join(args.data, 'fairface'))],
                        face=FacePreparation(detector=args.detector, output_size=args.output_size),
                        limit_per_source=args.images)
  records = [r for r in sources.list_inputs(config) if not r.problem]
  processor = executor.FaceProcessor(config)
  describer = descriptors.FaceDescriber()
  cpu = {'ingest': 0.0, 'annotate': 0.0}
  wall = {'ingest': 0.0, 'annotate': 0.0}
  vectors, labels = [], {a: [] for a in features.DEMOGRAPHIC_FEATURES}
  written = 0
  load_before = os.getloadavg()[0]
  for record in records:
    c, w = time.process_time(), time.perf_counter()
    outcome = processor(record)
    cpu['ingest'] += time.process_time() - c
    wall['ingest'] += time.perf_counter() - w
    if outcome.outcome != executor.WRITTEN:
      continue
    written += 1
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    image = tf.train.Example.FromString(outcome.example).features.feature[
        features.IMAGE].bytes_list.value[0]
    c, w = time.process_time(), time.perf_counter()
    vectors.append(describer.describe(image))
    cpu['annotate'] += time.process_time() - c
    wall['annotate'] += time.perf_counter() - w
    for a in features.DEMOGRAPHIC_FEATURES:
      labels[a].append(getattr(record, a))
  vectors = np.stack(vectors)
  classifiers, _ = annotate.train(vectors, labels, min_per_class=2, regularization_c=1.0)
  c = time.process_time()
  for _ in range(10):
    annotate.predict(classifiers, vectors)
  classify_cpu = (time.process_time() - c) / 10
  rows = [
      ('ingest (detect+align+encode)', len(records), cpu['ingest'], wall['ingest']),
      ('annotate (shape+descriptor)', written, cpu['annotate'], wall['annotate']),
      ('classify (3 regressions)', written, classify_cpu, classify_cpu),
  ]
  print(f'{len(records)} FairFace photos, {written} faces, detector {args.detector}, '
        f'load average before {load_before:.1f} on {os.cpu_count()} cores')
  print(f'{"path":32} {"faces":>6} {"CPU-ms/face":>12} {"faces/CPU-s":>12} {"wall faces/s":>13}')
  result = {'images': len(records), 'faces': written, 'detector': args.detector,
            'output_size': args.output_size, 'load_average_before': load_before,
            'cpu_count': os.cpu_count(), 'python': platform.python_version(), 'paths': {}}
  for name, n, cpu_s, wall_s in rows:
    per_face = cpu_s / n * 1000 if n else float('nan')
    print(f'{name:32} {n:6d} {per_face:12.1f} {n / cpu_s if cpu_s else 0:12.2f} '
          f'{n / wall_s if wall_s else 0:13.2f}')
    result['paths'][name] = {'faces': n, 'cpu_ms_per_face': round(per_face, 2),
                             'faces_per_cpu_second': round(n / cpu_s, 2) if cpu_s else None,
                             'wall_faces_per_second': round(n / wall_s, 2) if wall_s else None}
  ratio = (cpu['annotate'] / written) / (cpu['ingest'] / len(records))
  print(f'annotator CPU per face / ingestion CPU per input image: {ratio:.2f}')
  result['annotate_over_ingest_cpu_ratio'] = round(ratio, 3)
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {RESULTS}')


if __name__ == '__main__':
  main()
