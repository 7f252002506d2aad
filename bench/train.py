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
two peaks (both measured in the variant's compute dtype: the `bf16` rows
against a bfloat16 matmul/conv peak of the same run), with the FLOPs per training step derived from the model's layers
(`components/trainer/flops.py`: 5.48 GFLOP per image for VGG10 at 128 px
grayscale). Medians of per-step and per-repetition times, so a burst of other
load hits peak and training alike. When a GPU is visible, the same runs on the
GPU in the precision `train.precision: auto` picks there; `--device gpu` runs
every variant on the GPU instead, and adds the utilization against the GPU's
published dense bfloat16 peak (`--published-peak-tflops`, or looked up from the
GPU's name in PUBLISHED_BF16_TFLOPS). Variants with `input: tf.data` feed
training from gzipped TFRecords of JPEGs through the Trainer's own
`data.tfrecord_dataset` (decode on all cores) instead of one in-memory batch,
and also time that input pipeline alone.

`--quality`: float32 against mixed bfloat16 on the same records with the same
seed (`--architecture`, short protocol, `--quality-*`), AUC of each on the same
test split, plus float32 with a second seed for the run-to-run noise. The
recorded run (docs/performance.md, "Mixed precision"; baseline, 128 px,
high-pass, 1,200 images, 3 epochs): bfloat16 - float32 = +0.0027 AUC against a
seed-to-seed 0.0057.

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
    python bench/train.py --variants default,bf16 --quality --faces-data ../shared/data
    # the recorded precision run: docs/performance.md, "Mixed precision"
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


os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.face_example_gen import executor, sources  # noqa: E402
from fakefaces.components.image_encoder import preprocess  # noqa: E402
from fakefaces.components.image_encoder.precision import cpu_bf16_flags  # noqa: E402
from fakefaces.components.trainer import data, model  # noqa: E402
from fakefaces.pipeline.fixtures import demo_records  # noqa: E402
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

# name -> overrides of the default variant (TF defaults, float32, no XLA, the configured
# batch, one in-memory batch as input).
VARIANTS = {
    'default': {},
    'xla': {'jit_compile': True},
    'bf16': {'precision': 'mixed_bfloat16'},
    'bf16-xla': {'precision': 'mixed_bfloat16', 'jit_compile': True},
    'fp16': {'precision': 'mixed_float16'},
    'bf16-tf.data': {'precision': 'mixed_bfloat16', 'input': 'tf.data'},
    'bf16-xla-tf.data': {'precision': 'mixed_bfloat16', 'jit_compile': True, 'input': 'tf.data'},
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


# Dense (no sparsity) bfloat16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s;
# matched against the GPU's name, longest key first.
PUBLISHED_BF16_TFLOPS = {
    'H200': 989.0,  # H200 SXM data sheet: 1,979 with sparsity
    'H100 SXM': 989.0, 'H100 80GB HBM3': 989.0,  # H100 SXM5 data sheet
    'H100 NVL': 835.0, 'H100 PCIe': 756.0, 'H100': 756.0,  # unknown H100 form: the lower one
    'A100': 312.0, 'L40S': 362.0, 'L4': 121.0, 'A10': 125.0,
}
COMPUTE_DTYPES = {'float32': tf.float32, 'mixed_bfloat16': tf.bfloat16,
                  'mixed_float16': tf.float16}


def published_peak_tflops(device_name: str) -> float:
  """Published dense bfloat16 peak of a GPU from its name (0.0 when unknown)."""
  for key in sorted(PUBLISHED_BF16_TFLOPS, key=len, reverse=True):
    if key.lower() in device_name.lower():
      return PUBLISHED_BF16_TFLOPS[key]
  return 0.0


def measure_variant(spec) -> dict:
  """Runs in a fresh process: the peak and training at one setting; returns a result row."""
  from fakefaces.components.image_encoder import precision  # pylint: disable=g-import-not-at-top
  from fakefaces.components.trainer import flops  # pylint: disable=g-import-not-at-top
  if spec['intra']:
    tf.config.threading.set_intra_op_parallelism_threads(
        os.cpu_count() if spec['intra'] < 0 else spec['intra'])
  if spec['inter']:
    tf.config.threading.set_inter_op_parallelism_threads(spec['inter'])
  gpu = spec['device'].startswith('/GPU')
  policy = precision.resolve(spec['precision'])
  dtype = COMPUTE_DTYPES[policy]
  keras.mixed_precision.set_global_policy(policy)
  with tf.device(spec['device']):
    keras.utils.set_random_seed(0)
    channels = preprocess.channels_for(spec['color_mode'])
    net = model.build_model(spec['architecture'], spec['image_size'], channels)
    if spec['jit_compile']:
      net.jit_compile = True
    counted = flops.model_flops(net)
    batch = spec['batch_size']

    n = spec['matmul_size']
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    matmul_s, matmul_cpu = _median_seconds(matmul, spec['peak_reps'])
    in_shape, kernel, filters, conv_name = largest_conv(net)
    x = tf.cast(tf.random.normal([batch, *in_shape]), dtype)
    k = tf.cast(tf.random.normal([*kernel, in_shape[-1], filters]), dtype)
    conv = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, k, 1, 'SAME'), tf.float32)))
    conv_s, conv_cpu = _median_seconds(conv, spec['peak_reps'])
    conv_flops = (2 * batch * in_shape[0] * in_shape[1] * kernel[0] * kernel[1] * in_shape[2] *
                  filters)

    input_only = None
    if spec['input'] == 'tf.data':
      config = TrainConfig(architecture=spec['architecture'], image_size=spec['image_size'],
                           color_mode=spec['color_mode'], batch_size=batch, steps_per_epoch=1,
                           shuffle_buffer=4 * batch)
      with tf.device('/CPU:0'):
        data_ds = data.tfrecord_dataset([spec['records']], config, training=True)
      input_only = time_input(data_ds, max(spec['steps'], 10), batch)
    else:
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
  row = {'variant': spec['name'], 'device': spec['device'], 'precision': policy,
         'input': spec['input'], 'image_size': spec['image_size'],
         'batch_size': batch, 'jit_compile': spec['jit_compile'],
         'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
         'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
         'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default'),
         'train_images_per_sec': round(images_per_s, 2),
         'input_only_images_per_sec': round(input_only, 1) if input_only else None,
         'train_step_gflop_per_image': round(counted['train_step'] / 1e9, 3),
         'forward_gflop_per_image': round(counted['forward'] / 1e9, 3),
         'achieved_gflops': round(achieved / 1e9, 1),
         'peak_matmul_gflops': round(2 * n**3 / matmul_s / 1e9, 1),
         'peak_conv_gflops': round(conv_flops / conv_s / 1e9, 1),
         'peak_dtype': dtype.name,
         'peak_conv_layer': conv_name,
         'flop_utilization': round(achieved / peak, 3),
         'flop_utilization_cpu_time': round(achieved_per_cpu / peak_per_cpu, 3),
         'load_avg': round(os.getloadavg()[0], 2)}
  if gpu:
    name = tf.config.experimental.get_device_details(
        tf.config.list_physical_devices('GPU')[0]).get('device_name', '')
    published = spec.get('published_peak_tflops') or published_peak_tflops(name)
    row.update(gpu_name=name, published_bf16_peak_tflops=published,
               published_peak_utilization=round(achieved / (published * 1e12), 3)
               if published else None)
  return row


def utilization(args) -> list:
  """Part 1: every variant in its own process, side by side; returns the rows."""
  device = '/GPU:0' if args.device == 'gpu' else '/CPU:0'
  base = {'architecture': args.architecture, 'image_size': args.image_size,
          'color_mode': args.color_mode, 'batch_size': args.batch_size, 'jit_compile': False,
          'intra': 0, 'inter': 0, 'onednn': None, 'device': device, 'precision': 'float32',
          'input': 'memory', 'records': '', 'published_peak_tflops': args.published_peak_tflops,
          'matmul_size': args.matmul_size, 'peak_reps': args.peak_reps,
          'warmup_steps': args.warmup_steps, 'steps': args.steps}
  specs = [dict(base, name=name, **VARIANTS[name]) for name in args.variants.split(',')]
  if args.device == 'auto' and tf.config.list_physical_devices('GPU'):
    specs.append(dict(base, name='gpu-mixed-precision', device='/GPU:0', precision='auto'))
  work_dir = tempfile.mkdtemp(prefix='bench_train_')
  rows = []
  try:
    if any(spec['input'] == 'tf.data' for spec in specs):
      folder = prepare_images(work_dir, args.num_images, args.faces_data)
      records = write_tfrecords(folder, os.path.join(work_dir, 'tfrecords'))
      specs = [dict(spec, records=records) for spec in specs]
    for spec in specs:
      env = dict(os.environ)
      if spec['onednn'] is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = '1' if spec['onednn'] else '0'
      if spec['device'] == '/CPU:0':
        env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU rows measure the CPU alone
      rows.append(_run_in_subprocess('--variant', spec, env))
      print(f'  measured {spec["name"]}: {rows[-1]["train_images_per_sec"]} img/s, '
            f'utilization {rows[-1]["flop_utilization"]}', flush=True)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  default = rows[0]['train_images_per_sec']
  for row in rows:
    row['speed_vs_default'] = round(row['train_images_per_sec'] / default, 3)
  return rows


def _run_in_subprocess(flag: str, spec: dict, env=None) -> dict:
  """Runs this script with `flag` in a fresh process, spec as JSON on its stdin (the quality
  runs' file lists are over the argument-length limit); returns its last JSON line."""
  command = [sys.executable, os.path.abspath(__file__), flag]
  done = subprocess.run(command, env=env or dict(os.environ), input=json.dumps(spec),
                        capture_output=True, text=True, check=False)
  lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
  if done.returncode or not lines:
    raise RuntimeError(f'{flag} {spec.get("name", "")} failed:\n{done.stderr[-3000:]}')
  return json.loads(lines[-1])


# --- Quality: float32 vs bfloat16 on the same records ------------------------------


def _quality_files(faces_data: str, split: str, per_class: int, work_dir: str):
  """(paths, labels): the first `per_class` JPEGs of each class (gan_faces, or demo images)."""
  if faces_data:
    root = os.path.join(faces_data, 'gan_faces', split)
  else:
    root = os.path.join(work_dir, split)
    demo_records.write_class_folders(root, 2 * per_class, seed=0 if split == 'train' else 1)
    root = os.path.join(root, sorted(os.listdir(root))[0])
  paths, labels = [], []
  for label_name, label in (('real', features.REAL), ('fake', features.FAKE)):
    names = sorted(os.listdir(os.path.join(root, label_name)))[:per_class]
    paths += [os.path.join(root, label_name, name) for name in names]
    labels += [label] * len(names)
  return paths, labels


def measure_quality(spec) -> dict:
  """Runs in a fresh process: trains at spec's precision and seed; returns test AUC and time."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  from fakefaces.components.trainer import training  # pylint: disable=g-import-not-at-top
  config = TrainConfig(architecture=spec['architecture'], image_size=spec['image_size'],
                       color_mode=spec['color_mode'], input_filter=spec['input_filter'],
                       epochs=spec['epochs'], batch_size=spec['batch_size'],
                       early_stopping_patience=0,
                       precision=spec['precision'], seed=spec['seed'])
  training.seed_everything(config)
  train_ds = data.files_dataset(spec['train_paths'], spec['train_labels'], config, training=True)
  test_ds = data.files_dataset(spec['test_paths'], spec['test_labels'], config, training=False)
  start = time.perf_counter()
  net, summary = training.train(config, train_ds, test_ds,
                                {features.REAL: spec['train_labels'].count(features.REAL),
                                 features.FAKE: spec['train_labels'].count(features.FAKE)},
                                tempfile.mkdtemp(prefix='bench_quality_'))
  seconds = time.perf_counter() - start
  probabilities, labels = training.predict_probabilities(net, test_ds)
  return {'precision': summary['precision_policy'], 'seed': spec['seed'],
          'test_auc': round(float(roc_auc_score(labels, probabilities)), 4),
          'train_seconds_with_validation': round(seconds, 1),
          'epoch_seconds': [round(t, 1) for t in summary['history'].get('epoch_seconds', [])]}


def quality(args) -> dict:
  """float32 (2 seeds: the noise) and mixed bfloat16 (first seed) on the same records."""
  work_dir = tempfile.mkdtemp(prefix='bench_quality_')
  try:
    train_paths, train_labels = _quality_files(args.faces_data, 'train', args.quality_train // 2,
                                               work_dir)
    test_paths, test_labels = _quality_files(args.faces_data, 'test', args.quality_test // 2,
                                             work_dir)
    base = {'architecture': args.architecture, 'image_size': args.quality_image_size,
            'color_mode': args.color_mode, 'input_filter': args.quality_input_filter,
            'epochs': args.quality_epochs, 'batch_size': args.batch_size, 'train_paths': train_paths,
            'train_labels': train_labels, 'test_paths': test_paths, 'test_labels': test_labels}
    runs = []
    for precision_name, seed in (('float32', 1), ('mixed_bfloat16', 1), ('float32', 2)):
      env = dict(os.environ, CUDA_VISIBLE_DEVICES='') if args.device != 'gpu' else None
      runs.append(_run_in_subprocess('--quality-run', dict(base, precision=precision_name,
                                                           seed=seed), env))
      print(f'  quality {precision_name} seed {seed}: test AUC {runs[-1]["test_auc"]}, '
            f'{runs[-1]["train_seconds_with_validation"]} s', flush=True)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)
  float32_seed1, bf16_seed1, float32_seed2 = runs
  return {
      'protocol': (f'{args.architecture} {args.quality_image_size} px {args.color_mode}, '
                   f'input filter {args.quality_input_filter}, '
                   f'{len(train_paths)} train / {len(test_paths)} test images '
                   f'({"gan_faces" if args.faces_data else "demo"}), {args.quality_epochs} '
                   f'epochs, batch {args.batch_size}, same records and seed 1 for both precisions'),
      'runs': runs,
      'auc_difference_bf16_minus_float32': round(bf16_seed1['test_auc'] - float32_seed1['test_auc'],
                                                 4),
      'run_to_run_noise_float32_seeds_1_2': round(
          abs(float32_seed2['test_auc'] - float32_seed1['test_auc']), 4),
  }


def print_utilization(rows, args) -> None:
  print(f'\n{args.architecture} {args.image_size}x{args.image_size} {args.color_mode}: '
        f'{rows[0]["train_step_gflop_per_image"]} GFLOP per image per training step '
        f'({rows[0]["forward_gflop_per_image"]} forward), {os.cpu_count()} CPUs (shared)\n')
  header = (f'{"variant":30} {"precision":>14} {"batch":>5} {"XLA":>5} {"intra/inter":>11} '
            f'{"img/s":>7} {"input":>8} '
            f'{"GFLOP/s":>8} {"peak mm":>8} {"peak conv":>9} {"util":>6} {"util/cpu":>8} '
            f'{"vs default":>10} '
            f'{"load":>5}')
  print(header)
  print('-' * len(header))
  for r in rows:
    input_rate = r.get('input_only_images_per_sec')
    print(f'{r["variant"]:30} {r["precision"]:>14} {r["batch_size"]:>5} '
          f'{str(r["jit_compile"]):>5} '
          f'{r["intra_op_threads"]:>5}/{r["inter_op_threads"]:<5} {r["train_images_per_sec"]:7.1f} '
          f'{(f"{input_rate:8.0f}" if input_rate else "memory"):>8} '
          f'{r["achieved_gflops"]:8.1f} {r["peak_matmul_gflops"]:8.1f} '
          f'{r["peak_conv_gflops"]:9.1f} '
          f'{r["flop_utilization"]:6.2f} {r["flop_utilization_cpu_time"]:8.2f} '
          f'{r["speed_vs_default"]:10.2f} {r["load_avg"]:5.1f}')
    if r.get('published_peak_utilization') is not None:
      print(f'{"":30} {r["gpu_name"]}: {r["achieved_gflops"] / 1000:.1f} TFLOP/s = '
            f'{r["published_peak_utilization"]:.3f} of the published bf16 peak '
            f'{r["published_bf16_peak_tflops"]:.0f} TFLOP/s')
  print('(threads 0 = TensorFlow default; util = training FLOP/s / max(peak matmul, peak conv) '
        'in the row\'s compute dtype; util/cpu = the same per CPU-second of the process; '
        'input = the tf.data input pipeline alone, img/s, or one in-memory batch)')


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
  parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'gpu'),
                      help='auto: variants on the CPU, plus one GPU row when a GPU is visible; '
                      'gpu: every variant on the GPU')
  parser.add_argument('--published-peak-tflops', type=float, default=0.0,
                      help='GPU bf16 peak for the published-peak utilization (0: from its name)')
  parser.add_argument('--quality', action='store_true',
                      help='also train float32 and mixed bfloat16 on the same records; test AUC')
  parser.add_argument('--quality-image-size', type=int, default=64)
  parser.add_argument('--quality-epochs', type=int, default=3)
  parser.add_argument('--quality-input-filter', default='none', choices=model.INPUT_FILTERS,
                      help="train.input_filter of the quality runs ('highpass': the shipped one)")
  parser.add_argument('--quality-train', type=int, default=400, help='train images (half per class)')
  parser.add_argument('--quality-test', type=int, default=200, help='test images (half per class)')
  # Internal: measure one variant / one quality training, its spec as JSON on stdin.
  parser.add_argument('--variant', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--quality-run', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  if args.variant:
    print(json.dumps(measure_variant(json.load(sys.stdin))))
    return 0
  if args.quality_run:
    print(json.dumps(measure_quality(json.load(sys.stdin))))
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
  by_precision = {}
  for row in rows:  # the first row of each precision (the variants' order decides)
    by_precision.setdefault(row['precision'], row)
  if 'float32' in by_precision and len(by_precision) > 1:
    result['speed_vs_float32'] = {
        name: round(row['train_images_per_sec'] / by_precision['float32']['train_images_per_sec'], 3)
        for name, row in by_precision.items()}
    result['cpu_bf16_flags'] = cpu_bf16_flags()
    print(f'speed vs float32: {result["speed_vs_float32"]} (CPU bfloat16 flags: '
          f'{result["cpu_bf16_flags"] or "none: bfloat16 is emulated"})')
  _write(result, args.out)  # the utilization rows stand on their own; the parts below add to them
  if args.quality:
    result['quality'] = quality(args)
    print(f'quality: test AUC bf16 - float32 = '
          f'{result["quality"]["auc_difference_bf16_minus_float32"]:+.4f}, float32 seed-to-seed '
          f'{result["quality"]["run_to_run_noise_float32_seeds_1_2"]:.4f}')
  if args.compare_inputs:
    input_rows, ratios = compare_inputs(args)
    result.update(results=input_rows, ratio_tf_data_over_image_data_generator=ratios)
  _write(result, args.out)
  return 0


def _write(result: dict, out: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {out}')


if __name__ == '__main__':
  sys.exit(main())
