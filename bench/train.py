"""Training throughput against the machine's arithmetic peak, and tf.data vs ImageDataGenerator.

Part 1 (always): FLOP utilization. For each performance variant (XLA
`jit_compile`, batch size, thread pools, oneDNN on/off) a fresh subprocess
(thread pools and oneDNN are fixed when TensorFlow starts) measures, at the
same thread count:

* the peak: a 2048x2048 float32 matmul, and the convolution of VGG10's
  largest activation (batch x 128x128x32 -> 32 filters, 3x3) forward;
* training: `model.fit` steps of the configured model on in-memory batches
  (the input pipeline is not the bottleneck: part 2 found tf.data and
  ImageDataGenerator equal, 1.00x);

and reports `flop_utilization` = achieved training FLOP/s / the larger of the
two peaks, with the FLOPs per training step derived from the model's layers
(`components/trainer/flops.py`: 5.48 GFLOP per image for VGG10 at 128 px
grayscale). Medians of per-step and per-repetition times, so a burst of other
load hits peak and training alike. When a GPU is visible, the same runs on the
GPU in mixed precision against a float16 matmul/conv peak.

Part 2 (`--compare-inputs`): both pipelines feed the same VGG10 (128x128
grayscale by default) the same JPEGs:

* `tf.data`: gzipped TFRecords of tf.Examples (as FaceExampleGen writes them)
  through `fakefaces.components.trainer.data.tfrecord_dataset` (parallel decode, flip,
  shuffle, prefetch);
* `ImageDataGenerator`: `flow_from_directory` over `<dir>/{real,fake}/*.jpg`
  with rescale and horizontal_flip, as in the paper's Keras code.

Per device (CPU, and the first GPU when one is visible) it times `model.fit`
after a warm-up, alternating the pipelines for several rounds, and also times
each input pipeline alone. Prints a table and writes bench/results/train.json.

    python bench/train.py                      # part 1: utilization table
    python bench/train.py --compare-inputs     # part 2 too, on generated demo images
    python bench/train.py --compare-inputs --faces-data ../shared/data   # gan_faces/train JPEGs
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from fakefaces.components import features  # noqa: E402
from fakefaces.components.face_example_gen import executor, sources  # noqa: E402
from fakefaces.components.trainer import data, model, preprocess  # noqa: E402
from fakefaces.pipeline import demo_records  # noqa: E402
from fakefaces.pipeline.config import TrainConfig  # noqa: E402

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


def compare_inputs(args):
  """Part 2: tf.data vs ImageDataGenerator; returns (rows, ratios)."""
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
  return rows, ratios


# --- Part 1: FLOP utilization --------------------------------------------------

# name -> overrides of the default variant (TF defaults, no XLA, the configured batch).
VARIANTS = {
    'default': {},
    'xla': {'jit_compile': True},
    'batch64': {'batch_size': 64},
    'xla-batch64': {'jit_compile': True, 'batch_size': 64},
    'threads-intra=cores-inter=1': {'intra': -1, 'inter': 1},
    'onednn-off': {'onednn': False},
}


def _median_seconds(fn, reps: int, warmup: int = 2):
  """(median wall seconds, median CPU seconds of this process) of one call."""
  for _ in range(warmup):
    fn().numpy()
  times, cpu_times = [], []
  for _ in range(reps):
    start, cpu = time.perf_counter(), time.process_time()
    fn().numpy()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu)
  return statistics.median(times), statistics.median(cpu_times)


def largest_conv(net):
  """(input shape without batch, kernel size, filters) of the Conv2D with the most FLOPs."""
  from fakefaces.components.trainer import flops  # pylint: disable=g-import-not-at-top
  convs = [l for l in net.layers if isinstance(l, keras.layers.Conv2D)]
  layer = max(convs, key=lambda l: (flops.layer_forward_flops(l), l.input_shape[1]))
  return tuple(layer.input_shape[1:]), tuple(layer.kernel_size), layer.filters, layer.name


class _StepTimes(keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.times, self.cpu_times = [time.perf_counter()], [time.process_time()]

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter())
    self.cpu_times.append(time.process_time())


def measure_variant(spec) -> dict:
  """Runs in a fresh process: the peak and training at one setting; returns a result row."""
  from fakefaces.components.trainer import flops  # pylint: disable=g-import-not-at-top
  if spec['intra']:
    tf.config.threading.set_intra_op_parallelism_threads(
        os.cpu_count() if spec['intra'] < 0 else spec['intra'])
  if spec['inter']:
    tf.config.threading.set_inter_op_parallelism_threads(spec['inter'])
  gpu = spec['device'].startswith('/GPU')
  dtype = tf.float16 if gpu else tf.float32
  if gpu:
    keras.mixed_precision.set_global_policy('mixed_float16')
  with tf.device(spec['device']):
    keras.utils.set_random_seed(0)
    channels = preprocess.channels_for(spec['color_mode'])
    net = model.build_model(spec['architecture'], spec['image_size'], channels)
    if spec['jit_compile']:
      net.jit_compile = True
    counted = flops.model_flops(net)
    batch = spec['batch_size']

    n = spec['matmul_size']
    a = tf.random.normal([n, n], dtype=dtype)
    b = tf.random.normal([n, n], dtype=dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    matmul_s, matmul_cpu = _median_seconds(matmul, spec['peak_reps'])
    in_shape, kernel, filters, conv_name = largest_conv(net)
    x = tf.random.normal([batch, *in_shape], dtype=dtype)
    k = tf.random.normal([*kernel, in_shape[-1], filters], dtype=dtype)
    conv = tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, k, 1, 'SAME')))
    conv_s, conv_cpu = _median_seconds(conv, spec['peak_reps'])
    conv_flops = (2 * batch * in_shape[0] * in_shape[1] * kernel[0] * kernel[1] * in_shape[2] *
                  filters)

    images = tf.random.uniform([batch, spec['image_size'], spec['image_size'], channels])
    labels = tf.cast(tf.random.uniform([batch, 1]) > 0.5, tf.float32)
    data_ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
    net.fit(data_ds, epochs=1, steps_per_epoch=spec['warmup_steps'], verbose=0)  # trace/compile
    timer = _StepTimes()
    net.fit(data_ds, epochs=1, steps_per_epoch=spec['steps'], verbose=0, callbacks=[timer])
  step_s = statistics.median(b - a for a, b in zip(timer.times, timer.times[1:]))
  step_cpu = statistics.median(b - a for a, b in zip(timer.cpu_times, timer.cpu_times[1:]))
  images_per_s = batch / step_s
  achieved = images_per_s * counted['train_step']
  peak = max(2 * n**3 / matmul_s, conv_flops / conv_s)
  # Per CPU-second: far less sensitive to other processes than wall time, but
  # blind to cores left idle (wall-time utilization sees those).
  peak_per_cpu = max(2 * n**3 / matmul_cpu, conv_flops / conv_cpu)
  achieved_per_cpu = batch * counted['train_step'] / step_cpu
  return {'variant': spec['name'], 'device': spec['device'],
          'precision': 'mixed_float16' if gpu else 'float32',
          'batch_size': batch, 'jit_compile': spec['jit_compile'],
          'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
          'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
          'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default'),
          'train_images_per_sec': round(images_per_s, 2),
          'train_step_gflop_per_image': round(counted['train_step'] / 1e9, 3),
          'forward_gflop_per_image': round(counted['forward'] / 1e9, 3),
          'achieved_gflops': round(achieved / 1e9, 1),
          'peak_matmul_gflops': round(2 * n**3 / matmul_s / 1e9, 1),
          'peak_conv_gflops': round(conv_flops / conv_s / 1e9, 1),
          'peak_conv_layer': conv_name,
          'flop_utilization': round(achieved / peak, 3),
          'flop_utilization_cpu_time': round(achieved_per_cpu / peak_per_cpu, 3),
          'load_avg': round(os.getloadavg()[0], 2)}


def utilization(args) -> list:
  """Part 1: every variant in its own process, side by side; returns the rows."""
  base = {'architecture': args.architecture, 'image_size': args.image_size,
          'color_mode': args.color_mode, 'batch_size': args.batch_size, 'jit_compile': False,
          'intra': 0, 'inter': 0, 'onednn': None, 'device': '/CPU:0',
          'matmul_size': args.matmul_size, 'peak_reps': args.peak_reps,
          'warmup_steps': args.warmup_steps, 'steps': args.steps}
  specs = [dict(base, name=name, **VARIANTS[name]) for name in args.variants.split(',')]
  if tf.config.list_physical_devices('GPU'):
    specs.append(dict(base, name='gpu-mixed-precision', device='/GPU:0'))
  rows = []
  for spec in specs:
    env = dict(os.environ)
    if spec['onednn'] is not None:
      env['TF_ENABLE_ONEDNN_OPTS'] = '1' if spec['onednn'] else '0'
    if spec['device'] == '/CPU:0':
      env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU rows measure the CPU alone
    command = [sys.executable, os.path.abspath(__file__), '--variant', json.dumps(spec)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
    if done.returncode or not lines:
      raise RuntimeError(f'variant {spec["name"]} failed:\n{done.stderr[-3000:]}')
    rows.append(json.loads(lines[-1]))
    print(f'  measured {spec["name"]}: {rows[-1]["train_images_per_sec"]} img/s, '
          f'utilization {rows[-1]["flop_utilization"]}', flush=True)
  default = rows[0]['train_images_per_sec']
  for row in rows:
    row['speed_vs_default'] = round(row['train_images_per_sec'] / default, 3)
  return rows


def print_utilization(rows, args) -> None:
  print(f'\n{args.architecture} {args.image_size}x{args.image_size} {args.color_mode}: '
        f'{rows[0]["train_step_gflop_per_image"]} GFLOP per image per training step '
        f'({rows[0]["forward_gflop_per_image"]} forward), {os.cpu_count()} CPUs (shared)\n')
  header = (f'{"variant":30} {"batch":>5} {"XLA":>5} {"intra/inter":>11} {"img/s":>7} '
            f'{"GFLOP/s":>8} {"peak mm":>8} {"peak conv":>9} {"util":>6} {"util/cpu":>8} '
            f'{"vs default":>10} '
            f'{"load":>5}')
  print(header)
  print('-' * len(header))
  for r in rows:
    print(f'{r["variant"]:30} {r["batch_size"]:>5} {str(r["jit_compile"]):>5} '
          f'{r["intra_op_threads"]:>5}/{r["inter_op_threads"]:<5} {r["train_images_per_sec"]:7.1f} '
          f'{r["achieved_gflops"]:8.1f} {r["peak_matmul_gflops"]:8.1f} '
          f'{r["peak_conv_gflops"]:9.1f} '
          f'{r["flop_utilization"]:6.2f} {r["flop_utilization_cpu_time"]:8.2f} '
          f'{r["speed_vs_default"]:10.2f} {r["load_avg"]:5.1f}')
  print('(threads 0 = TensorFlow default; util = training FLOP/s / max(peak matmul, peak conv); '
        'util/cpu = the same per CPU-second of the process)')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--architecture', default='vgg10', choices=model.ARCHITECTURES)
  parser.add_argument('--image-size', type=int, default=128)
  parser.add_argument('--color-mode', default='grayscale', choices=sorted(preprocess.CHANNELS))
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=10, help='timed training steps')
  parser.add_argument('--warmup-steps', type=int, default=3)
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated, from {list(VARIANTS)}; the first is the reference')
  parser.add_argument('--matmul-size', type=int, default=2048)
  parser.add_argument('--peak-reps', type=int, default=7)
  parser.add_argument('--compare-inputs', action='store_true',
                      help='also part 2: tf.data vs ImageDataGenerator')
  parser.add_argument('--num-images', type=int, default=512, help='part 2')
  parser.add_argument('--faces-data', default='',
                      help='part 2: shared face data (else demo images)')
  parser.add_argument('--input-steps', type=int, default=12,
                      help='part 2: timed batches, input only')
  parser.add_argument('--rounds', type=int, default=3, help='part 2: alternating rounds; median')
  parser.add_argument('--variant', help=argparse.SUPPRESS)  # internal: one variant, JSON
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  if args.variant:
    print(json.dumps(measure_variant(json.loads(args.variant))))
    return 0
  for name in args.variants.split(','):
    if name not in VARIANTS:
      parser.error(f'--variants: unknown {name!r}; known: {list(VARIANTS)}')

  rows = utilization(args)
  print_utilization(rows, args)
  result = {'benchmark': 'train', 'args': vars(args), 'tensorflow': tf.__version__,
            'python': platform.python_version(), 'cpus': os.cpu_count(),
            'flop_utilization': rows[0]['flop_utilization'],
            'best_flop_utilization': max(r['flop_utilization'] for r in rows),
            'best_variant': max(rows, key=lambda r: r['flop_utilization'])['variant'],
            'flop_utilization_cpu_time': rows[0]['flop_utilization_cpu_time'],
            'utilization': rows}
  if args.compare_inputs:
    input_rows, ratios = compare_inputs(args)
    result.update(results=input_rows, ratio_tf_data_over_image_data_generator=ratios)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
