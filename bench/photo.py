"""Per-photo latency of `fakefaces predict` / the web page, stage by stage, vs the model call alone.

For each FairFace photo (224 px loose crops from ../shared/data), in one run and
interleaved photo by photo (the machine is shared, so compare within the run):

  decode     bytes -> upright RGB (EXIF) + the checks before dlib     (FacePreparer.decode)
  detect     dlib face detection as predict/the web page run it       (FaceAligner.find_faces,
             every_face: weak HOG boxes checked by the CNN, the CNN over group photos)
  detect_before  the same photo with the chain as it was before: HOG, the CNN only where
             HOG found nothing (to compare within the run; the budget is +10% at p50)
  align      landmarks + FFHQ crop + JPEG for every face found        (FaceAligner.align_box)
  score      gRPC Predict `serving_default` on the crops              (what `fakefaces predict` adds)
  explain    gRPC Predict `explain` on the crops (Grad-CAM)           (what the web page calls)
  model      the same SavedModel's `serving_default` called in this process on the crops

p50 and p99 in milliseconds and each stage's p50 as a multiple of `model`.
The model is an untrained VGG10 at 128 px grayscale (the same compute as a
trained one), prepared with the shared-data ingestion parameters (hog+cnn,
128 px crops). Writes bench/results/photo.json.

    .venv/bin/python bench/photo.py --data ../shared/data --photos 60
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import fakefaces.pipeline  # noqa: E402,F401

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'photo.json')
STAGES = ('decode', 'detect', 'detect_before', 'align', 'score', 'explain', 'model')


def _detect_before(aligner, image):
  """The detector chain as it ran before multi-scale detection: HOG on the detection copy,
  the CNN (downscaled copy first) only where HOG found nothing."""
  # pylint: disable=protected-access,g-import-not-at-top
  from fakefaces.components.face_example_gen import align
  small, scale = align._downscaled(image, aligner._detect_max_side)
  pixels = np.asarray(small)
  rects = aligner._detectors['hog'](pixels, aligner._upsample['hog'])
  if not len(rects) and 'cnn' in aligner._detectors:
    rects, _ = aligner._detect_cnn(small, pixels, scale)
  return rects


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join('..', 'shared', 'data'))
  parser.add_argument('--photos', type=int, default=60)
  parser.add_argument('--detector', default='hog+cnn')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from fakefaces.components import serving_contract as contract
  from fakefaces.components.face_example_gen import faces
  from fakefaces.components.trainer import export, model as model_lib
  from fakefaces.serving import client as client_lib
  from fakefaces.serving import testing
  # pylint: enable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(args.data, 'fairface', 'val', '*.jpg')))[:args.photos]
  if not paths:
    raise SystemExit(f'no FairFace photos under {args.data}/fairface/val')
  work = tempfile.mkdtemp(prefix='bench-photo-')
  prep = faces.FacePreparation(detector=args.detector, output_size=128)
  export.export_saved_model(model_lib.build_model('vgg10', 128, 1), os.path.join(work, 'model'),
                            128, 'grayscale', face_preparation=prep)
  testing.push_version(os.path.join(work, 'model'), os.path.join(work, 'base'), 1)
  in_process = tf.saved_model.load(os.path.join(work, 'model')).signatures[contract.SERVING_SIGNATURE]
  times = {stage: [] for stage in STAGES}
  faces_found = []
  with testing.ServerProcess(os.path.join(work, 'base')) as server, \
      client_lib.ServingClient(server.grpc_target) as client:
    preparer = faces.FacePreparer(client.face_preparation())  # as predict does
    aligner = preparer.aligner
    warm = open(paths[0], 'rb').read()  # pylint: disable=consider-using-with
    crops = [f.encoded for f in preparer.prepare(warm).faces] or [warm]
    client.predict(crops), client.explain(crops), in_process(image_bytes=tf.constant(crops))
    for path in paths:
      with open(path, 'rb') as f:
        data = f.read()
      t0 = time.perf_counter()
      image = preparer.decode(data)
      t1 = time.perf_counter()
      found = aligner.find_faces(image, every_face=True)
      t2 = time.perf_counter()
      crops = [faces.images.encode_jpeg(aligner.align_box(image, box, detector).image,
                                        prep.jpeg_quality)
               for box, detector in zip(found.boxes, found.detectors)]
      t3 = time.perf_counter()
      _detect_before(aligner, image)
      times['detect_before'].append(time.perf_counter() - t3)
      faces_found.append(len(crops))
      times['decode'].append(t1 - t0)
      times['detect'].append(t2 - t1)
      times['align'].append(t3 - t2)
      if not crops:
        continue
      t4 = time.perf_counter()
      client.predict(crops)
      t5 = time.perf_counter()
      client.explain(crops)
      t6 = time.perf_counter()
      in_process(image_bytes=tf.constant(crops))
      t7 = time.perf_counter()
      times['score'].append(t5 - t4)
      times['explain'].append(t6 - t5)
      times['model'].append(t7 - t6)
  model_p50 = float(np.percentile(times['model'], 50))
  rows = {stage: {'n': len(v), 'mean_ms': 1000 * float(np.mean(v)),
                  'p50_ms': 1000 * float(np.percentile(v, 50)),
                  'p99_ms': 1000 * float(np.percentile(v, 99)),
                  'p50_over_model': float(np.percentile(v, 50)) / model_p50} for stage, v in times.items()}
  total = [sum(times[s][i] for s in ('decode', 'detect', 'align')) for i in range(len(paths))]
  rows['photo_total_no_model'] = {'n': len(total), 'mean_ms': 1000 * float(np.mean(total)),
                                  'p50_ms': 1000 * float(np.percentile(total, 50)),
                                  'p99_ms': 1000 * float(np.percentile(total, 99)),
                                  'p50_over_model': float(np.percentile(total, 50)) / model_p50}
  print(f"{'stage':<22}{'n':>5}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'p50/model':>11}")
  for stage, row in rows.items():
    print(f"{stage:<22}{row['n']:>5}{row['mean_ms']:>10.1f}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}"
          f"{row['p50_over_model']:>11.1f}")
  result = {'protocol': f'{len(paths)} FairFace val photos, detector {args.detector}, untrained VGG10 '
                        '128 px grayscale, gRPC on loopback, one process, interleaved',
            'faces_per_photo': {str(k): faces_found.count(k) for k in sorted(set(faces_found))},
            'stages': rows}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
