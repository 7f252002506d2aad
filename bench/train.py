"""Training throughput: this project's tf.data pipeline vs the paper's ImageDataGenerator.

Both feed the same VGG10 (128x128 grayscale by default) the same JPEGs:

* `tf.data`: gzipped TFRecords of tf.Examples (as FaceExampleGen writes them)
  through `components.trainer.data.tfrecord_dataset` (parallel decode, flip,
  shuffle, prefetch);
* `ImageDataGenerator`: `flow_from_directory` over `<dir>/{real,fake}/*.jpg`
  with rescale and horizontal_flip, as in the paper's Keras code.

Per device (CPU, and the first GPU when one is visible) it times `model.fit`
after a warm-up, alternating the pipelines for several rounds, and also times
each input pipeline alone. Prints a table and writes bench/results/train.json.

    python bench/train.py                      # generated demo images
    python bench/train.py --faces-data ../shared/data   # gan_faces/train JPEGs
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from components import features  # noqa: E402
from components.face_example_gen import executor, sources  # noqa: E402
from components.trainer import data, model, preprocess  # noqa: E402
from pipeline import demo_records  # noqa: E402
from pipeline.config import TrainConfig  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'train.json')
TF_DATA, IMAGE_DATA_GENERATOR = 'tf.data (TFRecords)', 'ImageDataGenerator (JPEG folders)'


def prepare_images(work_dir: str, num_images: int, faces_data: str) -> str:
  """JPEGs as `<dir>/{real,fake}/*.jpg`; returns the folder."""
  folder = os.path.join(work_dir, 'folders')
  if not faces_data:
    demo_records.write_class_folders(os.path.join(work_dir, 'demo'), num_images, seed=0)
    os.makedirs(folder)
    for label in ('real', 'fake'):
      os.makedirs(os.path.join(folder, label))
      for split_dir in os.listdir(os.path.join(work_dir, 'demo')):
        src = os.path.join(work_dir, 'demo', split_dir, label)
        for name in os.listdir(src):
          shutil.copy(os.path.join(src, name), os.path.join(folder, label, name))
    return folder
  for label in ('real', 'fake'):
    src = os.path.join(faces_data, 'gan_faces', 'train', label)
    names = sorted(os.listdir(src))[:num_images // 2]
    os.makedirs(os.path.join(folder, label))
    for name in names:
      shutil.copy(os.path.join(src, name), os.path.join(folder, label, name))
  return folder


def write_tfrecords(folder: str, out_dir: str) -> str:
  """The same JPEG bytes as gzipped tf.Examples; returns the file pattern."""
  os.makedirs(out_dir)
  with tf.io.TFRecordWriter(os.path.join(out_dir, 'data.tfrecord.gz'), options='GZIP') as writer:
    for label_name, label in (('real', features.REAL), ('fake', features.FAKE)):
      for name in sorted(os.listdir(os.path.join(folder, label_name))):
        with open(os.path.join(folder, label_name, name), 'rb') as f:
          encoded = f.read()
        record = sources.InputRecord(path=name, source='bench', image_id=name, label=label,
                                     split=features.TRAIN)
        writer.write(executor.make_example(record, encoded, 0).SerializeToString())
  return os.path.join(out_dir, '*')


def make_inputs(kind: str, folder: str, pattern: str, config: TrainConfig):
  if kind == TF_DATA:
    return data.tfrecord_dataset([pattern], config, training=True)
  generator = keras.preprocessing.image.ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True)
  return generator.flow_from_directory(
      folder, target_size=(config.image_size, config.image_size), color_mode=config.color_mode,
      class_mode='binary', batch_size=config.batch_size, shuffle=True, seed=config.seed)


def time_input(inputs, steps: int, batch_size: int) -> float:
  iterator = iter(inputs)
  next(iterator)  # warm-up: thread pools, file handles
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return steps * batch_size / (time.perf_counter() - start)


def time_training(inputs, config: TrainConfig, steps: int, warmup_steps: int):
  """(images per wall second, images per CPU second of this process).

  The second is robust to other processes on a shared machine and counts the
  input pipeline's threads as cost.
  """
  keras.utils.set_random_seed(config.seed)
  net = model.build_model(config.architecture, config.image_size,
                          preprocess.channels_for(config.color_mode))
  net.fit(inputs, epochs=1, steps_per_epoch=warmup_steps, verbose=0)  # traces the step
  wall, cpu = time.perf_counter(), time.process_time()
  net.fit(inputs, epochs=1, steps_per_epoch=steps, verbose=0)
  images = steps * config.batch_size
  return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--num-images', type=int, default=512)
  parser.add_argument('--faces-data', default='', help='shared face data folder (else demo images)')
  parser.add_argument('--architecture', default='vgg10', choices=model.ARCHITECTURES)
  parser.add_argument('--image-size', type=int, default=128)
  parser.add_argument('--color-mode', default='grayscale', choices=sorted(preprocess.CHANNELS))
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=10, help='timed training steps per round')
  parser.add_argument('--warmup-steps', type=int, default=2)
  parser.add_argument('--input-steps', type=int, default=12, help='timed batches, input only')
  parser.add_argument('--rounds', type=int, default=3, help='alternating rounds; median reported')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  config = TrainConfig(architecture=args.architecture, image_size=args.image_size,
                       color_mode=args.color_mode, batch_size=args.batch_size,
                       steps_per_epoch=args.steps, shuffle_buffer=args.num_images)
  work_dir = tempfile.mkdtemp(prefix='bench_train_')
  try:
    folder = prepare_images(work_dir, args.num_images, args.faces_data)
    pattern = write_tfrecords(folder, os.path.join(work_dir, 'tfrecords'))
    devices = ['/CPU:0'] + (['/GPU:0'] if tf.config.list_logical_devices('GPU') else [])
    rows = []
    for device in devices:
      samples = {TF_DATA: [], IMAGE_DATA_GENERATOR: []}
      cpu_samples = {TF_DATA: [], IMAGE_DATA_GENERATOR: []}
      input_rates = {}
      with tf.device(device):
        for kind in samples:
          input_rates[kind] = time_input(make_inputs(kind, folder, pattern, config),
                                         args.input_steps, config.batch_size)
        for round_index in range(args.rounds):
          # Alternate which pipeline goes first, so drifting machine load hits both alike.
          for kind in (list(samples) if round_index % 2 == 0 else list(samples)[::-1]):
            wall, cpu = time_training(make_inputs(kind, folder, pattern, config), config,
                                      args.steps, args.warmup_steps)
            samples[kind].append(wall)
            cpu_samples[kind].append(cpu)
      for kind, rates in samples.items():
        rows.append({'device': device, 'pipeline': kind,
                     'train_images_per_sec': statistics.median(rates),
                     'train_images_per_sec_rounds': rates,
                     'train_images_per_cpu_sec': statistics.median(cpu_samples[kind]),
                     'train_images_per_cpu_sec_rounds': cpu_samples[kind],
                     'input_only_images_per_sec': input_rates[kind]})
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)

  print(f'\n{args.architecture} {args.image_size}x{args.image_size} {args.color_mode}, batch '
        f'{args.batch_size}, {args.num_images} {"shared-data" if args.faces_data else "demo"} '
        f'JPEGs, {os.cpu_count()} CPUs visible\n')
  print(f'{"device":8} {"pipeline":36} {"train img/s":>12} {"train img/CPU-s":>16} '
        f'{"input-only img/s":>17}')
  for r in rows:
    print(f'{r["device"]:8} {r["pipeline"]:36} {r["train_images_per_sec"]:12.1f} '
          f'{r["train_images_per_cpu_sec"]:16.1f} {r["input_only_images_per_sec"]:17.1f}')
  ratios = {}
  for device in devices:
    by_kind = {r['pipeline']: r for r in rows if r['device'] == device}
    ratios[device] = {
        'train': by_kind[TF_DATA]['train_images_per_sec'] /
                 by_kind[IMAGE_DATA_GENERATOR]['train_images_per_sec'],
        'train_per_cpu_second': by_kind[TF_DATA]['train_images_per_cpu_sec'] /
                                by_kind[IMAGE_DATA_GENERATOR]['train_images_per_cpu_sec'],
        'input_only': by_kind[TF_DATA]['input_only_images_per_sec'] /
                      by_kind[IMAGE_DATA_GENERATOR]['input_only_images_per_sec']}
    print(f'{device}: tf.data / ImageDataGenerator = {ratios[device]["train"]:.2f}x training '
          f'(wall), {ratios[device]["train_per_cpu_second"]:.2f}x per CPU second, '
          f'{ratios[device]["input_only"]:.2f}x input only')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump({'benchmark': 'train', 'args': vars(args), 'tensorflow': tf.__version__,
               'python': platform.python_version(), 'cpus': os.cpu_count(),
               'results': rows, 'ratio_tf_data_over_image_data_generator': ratios}, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
