"""Ingestion on Beam's portable runner (external SDK workers) vs the DirectRunner with the face-worker pool.

  direct-pool   `fakefaces ingest`'s local path: DirectRunner, one in-memory Beam
                worker and N face-preparation processes (executor.local_processes)
  portable      `--runner=PortableRunner` to Beam's local job service, with SDK
                workers from an external worker pool (pipeline/portable_beam.py):
                the protocol Flink, Spark and Dataflow Runner v2 run Python on.
                Beam's local job service gives a job one SDK worker.
  external-N    (`--sdk-workers N`) the same engine in the driver with N SDK
                workers from the same pool (portable_beam.ExternalWorkersRunner)

Same machine, same inputs (the deterministic `limit_per_source` sample of the
config's sources), one after the other. CPU seconds are summed over every
process of a path: the driver, its face workers, and for the others the job
service and the worker pool with the SDK workers it started (the services' own
start-up counted apart, `services_startup_cpu_s`: paid once per cluster, not per
job). faces/CPU-s is the cost measure; the machine is shared, so the load
average is recorded. Each path also runs on `--small` inputs per source, which
splits its CPU into a fixed part (start-up) and a part per face.

Every path's outputs are compared with direct-pool's as `bench/same_outputs.py`
does: the same faces (outcomes, detectors, every input not written) and the same
TFRecords, record for record, in the same shard files.

    python bench/portable_runner.py --per-source 24 --sdk-workers 2 4   # shared_data.yaml's sources

Writes `bench/results/portable_runner.json`; exits 1 when any output differs.
"""

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import threading
import time
from typing import Dict, List, Tuple

import fakefaces.pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import logging

from fakefaces.components.face_example_gen import executor
from fakefaces.pipeline import config as config_lib, portable_beam
from fakefaces.pipeline.beam_workers import local_beam_args

import same_outputs  # bench/, this script's folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'portable_runner.json')
_TICKS = os.sysconf('SC_CLK_TCK')


def _own_cpu() -> Dict[str, float]:
  """CPU seconds of this process and of its children it has waited for."""
  own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
  return {'driver': own.ru_utime + own.ru_stime,
          'children': children.ru_utime + children.ru_stime}


def _session_cpu(session: int) -> Dict[int, Tuple[str, float]]:
  """{pid: (state, CPU seconds incl. waited-for children)} of every process of a session (/proc).

  A process that exited but was not waited for (the pool never waits for the SDK
  workers of the local job service) stays as a zombie with its final times.
  """
  found = {}
  for name in os.listdir('/proc'):
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat', encoding='ascii') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except OSError:  # gone meanwhile
      continue
    if int(fields[3]) == session:
      found[int(name)] = (fields[0], sum(int(v) for v in fields[11:15]) / _TICKS)
  return found


class _SessionSampler(threading.Thread):
  """Keeps the last CPU seconds seen of every process of a session (one that is reaped keeps them)."""

  def __init__(self, session: int):
    super().__init__(daemon=True)
    self._session, self._done = session, threading.Event()
    self.last: Dict[int, float] = {}

  def sample(self) -> Dict[int, Tuple[str, float]]:
    found = _session_cpu(self._session)
    self.last.update({pid: cpu for pid, (_, cpu) in found.items()})
    return found

  def run(self):
    while not self._done.wait(0.5):
      self.sample()

  def stop(self) -> float:
    self._done.set()
    self.join()
    self.sample()
    return sum(self.last.values())


def run_direct(config, out_dir: str, workers: int) -> Dict:
  beam_args = local_beam_args([], workers, config)
  before, load, start = _own_cpu(), os.getloadavg()[0], time.perf_counter()
  report = executor.run_standalone(config, out_dir, beam_args.pipeline + beam_args.ingestion)
  seconds, after = time.perf_counter() - start, _own_cpu()
  cpu = {'driver': after['driver'] - before['driver'],
         'face_workers': after['children'] - before['children']}
  return _row('direct-pool', f'{workers} face-preparation processes', report, seconds, cpu,
              load)


def run_portable(config, out_dir: str, sdk_workers: int = 0) -> Dict:
  """`sdk_workers` 0: PortableRunner to the job service (one SDK worker); N: ExternalWorkersRunner."""
  with portable_beam.local_services(os.path.join(out_dir, 'logs')) as services:
    processes = services.processes
    samplers = [_SessionSampler(p.pid) for p in processes]  # each service leads its session
    startup = {}
    for name, sampler in zip(('job_service', 'worker_pool'), samplers):
      sampler.sample()
      startup[name] = sum(sampler.last.values())
      sampler.start()
    before, load, start = _own_cpu(), os.getloadavg()[0], time.perf_counter()
    args = (services.beam_args if not sdk_workers else
            portable_beam.external_workers_args(services.worker_pool_port, sdk_workers))
    report = executor.run_standalone(config, os.path.join(out_dir, 'out'), args)
    seconds, after = time.perf_counter() - start, _own_cpu()
    # The job's SDK worker exits by itself once the job service lets go of it: count it whole.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        state != 'Z' for pid, (state, _) in samplers[1].sample().items() if pid != processes[1].pid):
      time.sleep(0.5)
    job_service_cpu, pool_cpu = (sampler.stop() for sampler in samplers)
    cpu = {'driver': after['driver'] - before['driver'],
           'job_service': job_service_cpu - startup['job_service'],
           'worker_pool_and_sdk_worker': pool_cpu - startup['worker_pool']}
  row = (_row('portable', '1 SDK worker (job service)', report, seconds, cpu, load)
         if not sdk_workers else
         _row(f'external-{sdk_workers}', f'{sdk_workers} SDK workers (in-driver runner)', report,
              seconds, cpu, load))
  row['services_startup_cpu_s'] = {k: round(v, 2) for k, v in startup.items()}
  return row


def _row(path: str, workers: str, report: Dict, seconds: float, cpu: Dict[str, float],
         load: float) -> Dict:
  total = sum(cpu.values())
  faces = report['counts']['written']
  return {'path': path, 'workers': workers, 'inputs': report['total'], 'faces': faces,
          'seconds': round(seconds, 2), 'cpu_seconds': round(total, 2),
          'cpu_seconds_by_process': {k: round(v, 2) for k, v in cpu.items()},
          'faces_per_s': round(faces / seconds, 3),
          'faces_per_cpu_s': round(faces / total, 3) if total else None,
          'load_before': round(load, 2), 'load_after': round(os.getloadavg()[0], 2)}


def _split_cost(small: Dict, large: Dict) -> Dict:
  """Fixed CPU (start-up) and CPU per face of a path, from its rows at two sample sizes."""
  per_face = ((large['cpu_seconds'] - small['cpu_seconds']) /
              max(large['faces'] - small['faces'], 1))
  return {'fixed_cpu_s': round(large['cpu_seconds'] - per_face * large['faces'], 2),
          'cpu_s_per_face': round(per_face, 4)}


def main(argv: List[str] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'pipeline', 'configs',
                                                       'shared_data.yaml'),
                      help='pipeline YAML whose ingest section is used (run from the '
                      'repository root: its paths are relative)')
  parser.add_argument('--per-source', type=int, default=24, help='inputs per source')
  parser.add_argument('--small', type=int, default=2,
                      help='inputs per source of the runs that measure the fixed cost')
  parser.add_argument('--sdk-workers', type=int, nargs='*', default=[2],
                      help='rows with ExternalWorkersRunner at these numbers of SDK workers')
  parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                      help='face-preparation processes of direct-pool')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  config = config_lib.load_config(args.config).ingest
  config.progress_interval_seconds = 1e9
  small = dataclasses.replace(config, limit_per_source=args.small)
  config.limit_per_source = args.per_source

  with tempfile.TemporaryDirectory(prefix='bench_portable_') as work_dir:
    def path(name):
      return os.path.join(work_dir, name)
    small_rows = [run_direct(small, path('direct_small'), args.workers),
                  run_portable(small, path('portable_small'))]
    rows = [run_direct(config, path('direct'), args.workers),
            run_portable(config, path('portable'))]
    outputs = [path('direct'), os.path.join(path('portable'), 'out')]
    for n in args.sdk_workers:
      rows.append(run_portable(config, path(f'external_{n}'), n))
      outputs.append(os.path.join(path(f'external_{n}'), 'out'))
    outputs = [same_outputs.ingestion_outputs(d) for d in outputs]
    faces = [same_outputs.ingest_summary(o['ingest_report'][0]) for o in outputs]
    examples = [same_outputs.compare_examples(
        *(same_outputs.examples_by_split(o['examples'][0]) for o in (outputs[0], other)))
                for other in outputs[1:]]
  for row, row_faces, row_examples in zip(rows[1:], faces[1:], examples):
    row['same_faces_as_direct'] = row_faces == faces[0]
    row['same_records_as_direct'] = all(r['same_records'] and r['same_order']
                                        for r in row_examples.values())
    row['examples_vs_direct'] = row_examples
  same_faces = all(r['same_faces_as_direct'] for r in rows[1:])
  same_records = all(r['same_records_as_direct'] for r in rows[1:])
  costs = {r['path']: _split_cost(s, r) for s, r in zip(small_rows, rows[:2])}

  print(f'\nIngestion of {rows[0]["inputs"]} inputs ({args.per_source} per source of '
        f'{os.path.relpath(args.config, ROOT)}; and {small_rows[0]["inputs"]} for the fixed '
        f'cost), {os.cpu_count()} CPUs shared with other jobs')
  header = (f"{'path':<13}{'workers':<32}{'faces':>6}{'seconds':>9}{'cpu-s':>8}"
            f"{'faces/cpu-s':>13}{'load before/after':>19}")
  print(header)
  print('-' * len(header))
  for r in small_rows + rows:
    print(f"{r['path']:<13}{r['workers']:<32}{r['faces']:>6}{r['seconds']:>9.1f}"
          f"{r['cpu_seconds']:>8.1f}{r['faces_per_cpu_s'] or 0:>13.3f}"
          f"{r['load_before']:>10.1f} / {r['load_after']:.1f}")
    print(f"{'':13}cpu-s by process: {r['cpu_seconds_by_process']}")
  for name, cost in costs.items():
    print(f'{name}: fixed {cost["fixed_cpu_s"]} CPU-s per run, {cost["cpu_s_per_face"]} '
          'CPU-s per face')
  ratio = (rows[1]['faces_per_cpu_s'] / rows[0]['faces_per_cpu_s']
           if rows[0]['faces_per_cpu_s'] and rows[1]['faces_per_cpu_s'] else None)
  if ratio:
    print(f'portable / direct-pool faces per CPU-second: {ratio:.2f}')
  for r in rows[1:]:
    print(f"{r['path']} vs direct-pool: same faces {r['same_faces_as_direct']}, same TFRecords "
          f"record for record {r['same_records_as_direct']}")
  result = {'benchmark': 'portable_runner',
            'command': 'python bench/portable_runner.py ' + ' '.join(
                argv if argv is not None else sys.argv[1:]),
            'rows': rows, 'small_rows': small_rows, 'cost_split': costs,
            'faces_per_cpu_s_ratio': round(ratio, 3) if ratio else None,
            'same_faces': same_faces, 'same_records': same_records,
            'cpus': os.cpu_count()}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w', encoding='utf-8') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {args.out}')
  return 0 if same_faces and same_records else 1


if __name__ == '__main__':
  sys.exit(main())
