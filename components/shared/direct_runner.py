"""Beam DirectRunner flags, written and read in one place.

`pipeline/beam_workers.py` writes them for local runs; FaceExampleGen reads
them back (`face_example_gen/executor.local_processes`) to run its local
workers as face-preparation processes.
"""

from typing import List

DIRECT_RUNNERS = ('DirectRunner', 'direct', 'BundleBasedDirectRunner')


def _last(beam_pipeline_args: List[str], flag: str) -> str:
  """The value of the last `--flag=value` (Beam's parser lets later flags win), or ''."""
  values = [a.split('=', 1)[1] for a in beam_pipeline_args if a.startswith(f'--{flag}=')]
  return values[-1] if values else ''


def direct_runner_args(workers: int) -> List[str]:
  """DirectRunner flags for `workers` processes (1: in memory, no process start-up)."""
  if workers == 1:
    return ['--direct_running_mode=in_memory', '--direct_num_workers=1']
  return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']


def uses_direct_runner(beam_pipeline_args: List[str]) -> bool:
  runner = _last(beam_pipeline_args, 'runner')
  return not runner or runner in DIRECT_RUNNERS


def local_processes(beam_pipeline_args: List[str]) -> int:
  """N for a multi-process DirectRunner with N > 1 workers, else 1."""
  if (not uses_direct_runner(beam_pipeline_args) or
      _last(beam_pipeline_args, 'direct_running_mode') != 'multi_processing'):
    return 1
  return max(1, int(_last(beam_pipeline_args, 'direct_num_workers') or 1))
