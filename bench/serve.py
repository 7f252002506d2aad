"""Serving benchmark: gRPC on loopback vs the same SavedModel called in process, and a hot swap.

1. Latency (p50/p99) and requests/s for batch 1 and batch 32, sequential requests
   from one client, over gRPC to `fakefaces serve` in a real subprocess, side by side
   (alternating request by request) with calling the same SavedModel's
   `serving_default` in this process; the ratio is the serving overhead.
2. Under load (client threads sending batch-1 requests), a new version is pushed the
   way the Pusher does (copy the version dir, saved_model.pb last): failed requests
   (target 0) and the seconds until the new version answers.

Bounded: a fixed request count per case and a time cap; loopback only. Prints a table
and writes bench/results/serve.json.

    .venv/bin/python bench/serve.py [--architecture vgg10 --image-size 128 --requests 200]
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from fakefaces.components.shared import serving_contract as contract  # noqa: E402
from fakefaces.pipeline.config import TrainConfig  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import serving_testing as testing  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'serve.json')


def _percentiles(seconds):
  ms = np.asarray(seconds) * 1000.0
  return {'p50_ms': float(np.percentile(ms, 50)), 'p99_ms': float(np.percentile(ms, 99)),
          'mean_ms': float(ms.mean())}


def _timed_side_by_side(calls, count, time_cap, warmup=3):
  """Alternates the calls request by request, so load from other processes hits both alike."""
  for call in calls.values():
    for _ in range(warmup):
      call()
  latencies = {name: [] for name in calls}
  busy = {name: 0.0 for name in calls}
  started = time.perf_counter()
  while len(latencies[next(iter(calls))]) < count and time.perf_counter() - started < time_cap:
    for name, call in calls.items():
      t0 = time.perf_counter()
      call()
      latencies[name].append(time.perf_counter() - t0)
      busy[name] += latencies[name][-1]
  return {name: dict(_percentiles(latencies[name]), requests=len(latencies[name]),
                     requests_per_s=len(latencies[name]) / busy[name]) for name in calls}


def _request(images):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = 'fakefaces'
  request.inputs[contract.IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
  return request


def measure_overhead(stub, saved_model_dir, images, args):
  signature = tf.saved_model.load(saved_model_dir).signatures[contract.SERVING_SIGNATURE]
  rows = []
  for batch, count in ((1, args.requests), (32, max(10, args.requests // 8))):
    batch_images = images[:batch]
    request = _request(batch_images)
    feed = tf.constant(batch_images)
    timings = _timed_side_by_side(
        {'grpc': lambda: stub.Predict(request, timeout=60),
         'in_process': lambda: signature(**{contract.IMAGE_BYTES_INPUT: feed})[contract.PROBABILITY_KEY].numpy()},
        count, args.time_cap)
    served, local = timings['grpc'], timings['in_process']
    rows.append({'batch': batch, 'grpc': served, 'in_process': local,
                 'p50_overhead_ratio': served['p50_ms'] / local['p50_ms'],
                 'throughput_ratio': served['requests_per_s'] / local['requests_per_s'],
                 'grpc_images_per_s': served['requests_per_s'] * batch})
  return rows


def measure_swap(grpc_target, saved_model_dir, base, image, args):
  failures, seen, latencies, stop = [], [], [], threading.Event()
  lock = threading.Lock()

  def load_loop():
    with grpc.insecure_channel(grpc_target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      request = _request([image])
      while not stop.is_set():
        t0 = time.perf_counter()
        try:
          version = stub.Predict(request, timeout=60).model_spec.version.value
        except grpc.RpcError as e:
          with lock:
            failures.append(f'{e.code().name}: {e.details()}')
          continue
        with lock:
          seen.append((time.perf_counter(), version))
          latencies.append(time.perf_counter() - t0)

  threads = [threading.Thread(target=load_loop, daemon=True) for _ in range(args.load_threads)]
  for t in threads:
    t.start()
  time.sleep(2.0)
  new_version = 2
  pushed_at = time.perf_counter()
  testing.push_version(saved_model_dir, base, new_version)
  pb_written_at = time.perf_counter()
  deadline = pb_written_at + args.time_cap
  while time.perf_counter() < deadline and not any(v == new_version for _, v in seen):
    time.sleep(0.05)
  first_new = next((t for t, v in seen if v == new_version), None)
  time.sleep(2.0)
  stop.set()
  for t in threads:
    t.join(timeout=90)
  return dict(_percentiles(latencies), requests=len(seen) + len(failures),
              failed_requests=len(failures), failure_examples=failures[:3],
              load_threads=args.load_threads, push_copy_seconds=pb_written_at - pushed_at,
              swap_seconds=None if first_new is None else first_new - pb_written_at,
              answered_by_new_version=sum(1 for _, v in seen if v == new_version),
              answered_by_old_version=sum(1 for _, v in seen if v != new_version))


def main(argv=None) -> int:
  defaults = TrainConfig()
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--architecture', default=defaults.architecture)
  parser.add_argument('--image-size', type=int, default=defaults.image_size)
  parser.add_argument('--color-mode', default=defaults.color_mode)
  parser.add_argument('--photo-size', type=int, default=224, help='side of the JPEGs sent')
  parser.add_argument('--requests', type=int, default=200, help='batch-1 requests per side')
  parser.add_argument('--time-cap', type=float, default=60.0, help='seconds per measurement')
  parser.add_argument('--load-threads', type=int, default=2)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)

  work = tempfile.mkdtemp(prefix='bench_serve_')
  saved_model_dir = testing.export_tiny_model(os.path.join(work, 'export'), args.image_size,
                                              args.architecture, args.color_mode)
  base = os.path.join(work, 'base')
  testing.push_version(saved_model_dir, base, 1)
  images = testing.encode_images(32, size=args.photo_size, seed=11, fmt='JPEG')
  with testing.ServerProcess(base, ['--poll-seconds', '1'],
                             log_path=os.path.join(work, 'serve.log')) as server:
    with grpc.insecure_channel(server.grpc_target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      overhead = measure_overhead(stub, saved_model_dir, images, args)
    swap = measure_swap(server.grpc_target, saved_model_dir, base, images[0], args)

  result = {'model': {'architecture': args.architecture, 'image_size': args.image_size,
                      'color_mode': args.color_mode, 'jpeg_side': args.photo_size,
                      'mean_jpeg_bytes': int(np.mean([len(i) for i in images]))},
            'machine': {'cpus': os.cpu_count()}, 'overhead': overhead, 'swap_under_load': swap}
  print(f'\nmodel {args.architecture} {args.image_size}px {args.color_mode}, '
        f'{args.photo_size}px JPEGs, {os.cpu_count()} cores, loopback')
  print(f'{"batch":>5} {"side":>10} {"p50 ms":>8} {"p99 ms":>8} {"req/s":>8} {"img/s":>8}')
  for row in overhead:
    for side in ('grpc', 'in_process'):
      r = row[side]
      print(f'{row["batch"]:>5} {side:>10} {r["p50_ms"]:8.2f} {r["p99_ms"]:8.2f} '
            f'{r["requests_per_s"]:8.1f} {r["requests_per_s"] * row["batch"]:8.1f}')
    print(f'{"":>5} {"ratio":>10} {row["p50_overhead_ratio"]:8.2f} {"":>8} '
          f'{row["throughput_ratio"]:8.2f}')
  print(f'\nswap under load ({swap["load_threads"]} threads, batch 1): {swap["requests"]} requests, '
        f'{swap["failed_requests"]} failed, new version answered '
        f'{swap["swap_seconds"] if swap["swap_seconds"] is None else round(swap["swap_seconds"], 2)}'
        f's after saved_model.pb landed; p50 {swap["p50_ms"]:.1f} ms, p99 {swap["p99_ms"]:.1f} ms')
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {args.out}')
  return 0 if swap['failed_requests'] == 0 and swap['swap_seconds'] is not None else 1


if __name__ == '__main__':
  sys.exit(main())
