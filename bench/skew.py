"""Train/serve skew: raw photos through `fakefaces predict` vs the Evaluator's view of the same images.

Protocol (small sample, CPU only):
1. Ingest FairFace and gan_faces (../shared/data) with FaceExampleGen's executor
   (`run_standalone`, dlib alignment, `--detector`), at most `--per-source`
   inputs per source; train VGG10 on the train split for `--epochs` and export
   it with the ingestion's FacePreparation (as the pipeline's Trainer does).
2. "Evaluator": P(fake) of every test-split tf.Example through the
   `from_examples` signature, the one TFMA's Evaluator calls, so the same
   predictions TFMA scores.
3. "predict": the raw photo files of those same test images sent through
   `fakefaces predict --json` to a served copy (`fakefaces serve --builtin`);
   the first (largest) face is the image's verdict, as ingestion keeps the
   largest face.
Accuracy of both on the images both scored, and their difference in points.
Writes bench/results/skew.json.

    python bench/skew.py --data ../shared/data --per-source 700 --epochs 3
"""

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import fakefaces.pipeline  # noqa: E402,F401  (Keras environment first)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join('..', 'shared', 'data'))
  parser.add_argument('--per-source', type=int, default=700)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--detector', default='hog')
  parser.add_argument('--work', default='')
  parser.add_argument('--out', default=os.path.join('bench', 'results', 'skew.json'))
  args = parser.parse_args()
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  from fakefaces.components.shared import features, reports
  from fakefaces.components.shared import serving_contract as contract
  from fakefaces.components.face_example_gen import executor
  from fakefaces.components.face_example_gen.config import IngestConfig, SourceConfig
  from fakefaces.components.face_preparation.faces import FacePreparation
  from fakefaces.components.trainer import data as data_lib
  from fakefaces.components.trainer import export, training
  from fakefaces.components.trainer.config import TrainConfig
  from fakefaces.pipeline.cli import cli
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
  import serving_testing as testing
  # pylint: enable=g-import-not-at-top
  work = args.work or tempfile.mkdtemp(prefix='skew-')
  started = time.time()
  ingest = IngestConfig(
      sources=[SourceConfig('fairface', os.path.join(args.data, 'fairface')),
               SourceConfig('kaggle140k', os.path.join(args.data, 'gan_faces'), 'gan_faces')],
      face=FacePreparation(align='dlib', detector=args.detector, output_size=128),
      limit_per_source=args.per_source,
      max_failure_rate=0.5, eval_fraction=0.16)
  report_dir = os.path.join(work, 'ingest', 'ingest_report')
  if reports.read_report(report_dir) is None:
    executor.run_standalone(ingest, os.path.join(work, 'ingest'))
  ingest_report = reports.read_report(report_dir, missing_ok=False)
  split_files = {s: sorted(glob.glob(os.path.join(work, 'ingest', 'examples', f'Split-{s}', '*.gz')))
                 for s in features.SPLITS}
  model_dir = os.path.join(work, 'model')
  if not os.path.exists(os.path.join(model_dir, 'saved_model.pb')):
    config = TrainConfig(epochs=args.epochs, image_size=128, early_stopping_monitor='val_auc')
    train_ds = data_lib.tfrecord_dataset(split_files[features.TRAIN], config, training=True)
    eval_ds = data_lib.tfrecord_dataset(split_files[features.EVAL], config, training=False)
    model, _ = training.train(config, train_ds, eval_ds,
                              data_lib.count_labels(split_files[features.TRAIN]),
                              os.path.join(work, 'train_run'))
    export.export_saved_model(model, model_dir, 128, 'grayscale', 0.5,
                              ingest.face)
  trained = time.time()

  # The Evaluator's view: from_examples on the test split's tf.Examples.
  loaded = tf.saved_model.load(model_dir)
  from_examples = loaded.signatures[contract.EXAMPLES_SIGNATURE]
  evaluator = {}
  for record in tf.data.TFRecordDataset(split_files[features.TEST], compression_type='GZIP'):
    example = tf.train.Example.FromString(record.numpy())
    image_id = example.features.feature[features.IMAGE_ID].bytes_list.value[0].decode()
    label = example.features.feature[features.LABEL].int64_list.value[0]
    p = float(from_examples(examples=tf.constant([record.numpy()]))[contract.PROBABILITY_KEY][0])
    evaluator[image_id] = (label, p)
  # Raw files of those images, from the ingestion's own listing.
  from fakefaces.components.face_example_gen import sources  # pylint: disable=g-import-not-at-top
  paths = {r.image_id: r.path for r in sources.list_inputs(ingest) if r.image_id in evaluator}
  ids = sorted(paths)

  base = os.path.join(work, 'serving')
  if not os.path.isdir(base):
    testing.push_version(model_dir, base, 1)
  served = {}
  with testing.ServerProcess(base) as server:
    buffer = io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stdout(buffer):
      cli.main(['predict', '--json', '--server', server.grpc_target] + [paths[i] for i in ids])
    predict_seconds = time.time() - t0
  for image_id, entry in zip(ids, json.loads(buffer.getvalue())['images']):
    if entry.get('faces'):
      served[image_id] = entry['faces'][0]['fake_probability']
  both = [i for i in ids if i in served]

  def accuracy(probabilities):
    return float(np.mean([(probabilities[i] >= 0.5) == (evaluator[i][0] == 1) for i in both]))

  def by_source(probabilities, prefix):
    chosen = [i for i in both if paths[i].startswith(prefix)]
    return float(np.mean([(probabilities[i] >= 0.5) == (evaluator[i][0] == 1) for i in chosen])), len(chosen)

  evaluator_p = {i: evaluator[i][1] for i in evaluator}
  result = {
      'protocol': f'{args.per_source} inputs per source, detector {args.detector}, VGG10 '
                  f'{args.epochs} epochs at 128 px grayscale; test split scored both ways',
      'ingest_counts': ingest_report['counts'],
      'test_examples': len(evaluator), 'raw_photos_sent': len(ids), 'scored_both_ways': len(both),
      'predict_found_no_face': len(ids) - len(both),
      'evaluator_accuracy': accuracy(evaluator_p), 'predict_accuracy': accuracy(served),
      'max_abs_probability_difference': float(max(abs(served[i] - evaluator_p[i]) for i in both)),
      'per_source': {
          name: {'n': by_source(evaluator_p, prefix)[1],
                 'evaluator_accuracy': by_source(evaluator_p, prefix)[0],
                 'predict_accuracy': by_source(served, prefix)[0]}
          for name, prefix in (('fairface', os.path.join(args.data, 'fairface')),
                               ('gan_faces', os.path.join(args.data, 'gan_faces')))},
      'seconds': {'ingest_and_train': round(trained - started), 'predict': round(predict_seconds)},
  }
  result['difference_points'] = 100 * (result['predict_accuracy'] - result['evaluator_accuracy'])
  print(f"{'path':<12}{'n':>6}{'accuracy':>10}")
  print(f"{'Evaluator':<12}{len(both):>6}{result['evaluator_accuracy']:>10.4f}")
  print(f"{'predict':<12}{len(both):>6}{result['predict_accuracy']:>10.4f}")
  print(f"difference {result['difference_points']:+.2f} points; largest |P difference| "
        f"{result['max_abs_probability_difference']:.2e}; {json.dumps(result['per_source'])}")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
