"""How many Beam DirectRunner processes a local run uses ("the whole machine when that pays").

Local runs (`fakefaces run`, `fakefaces ingest`) append DirectRunner flags to
`beam_pipeline_args`, so FaceExampleGen, StatisticsGen (TFDV) and the
Evaluator (TFMA) all run on the same number of worker processes:

* `beam_workers: 1`: one in-memory worker (what tests use: no process start-up);
* `beam_workers: N > 1`: the multi-process DirectRunner with N workers
  (FaceExampleGen runs that as one in-memory worker with N
  face-preparation processes: `executor.local_processes`);
* `beam_workers: 0` (default, "auto"): one worker per core when the ingestion
  is big enough to repay the start-up of the worker processes (each imports
  TensorFlow and loads the dlib models, a few seconds per worker and Beam
  stage), else one in-memory worker.

The pipeline-level default `beam_pipeline_args` stays one in-memory worker:
it is what Kubeflow pods get, where `os.cpu_count()` counts the node's cores,
not the pod's CPU limit.
"""

import os
from typing import List, Optional

from fakefaces.components.config_base import ConfigError
from fakefaces.components.direct_runner import direct_runner_args, uses_direct_runner
from fakefaces.components.face_example_gen import sources
from fakefaces.components.face_example_gen.config import IngestConfig

# Estimated CPU seconds per input (from the issue: hog+cnn took 653 s for 8,012
# photos on one core; decoding and re-encoding an aligned crop alone is ~3 ms).
SECONDS_PER_INPUT = {'dlib': 0.08, 'none': 0.003}
# Below this much estimated ingestion work, extra processes cost more than they
# save (bench/ingest.py measured 2 workers slower than 1 on 200 photos, ~16 s).
AUTO_MIN_SERIAL_SECONDS = 60.0


def auto_workers(ingest: IngestConfig, num_inputs: int, cpus: Optional[int] = None) -> int:
  """Workers for `beam_workers: 0`: every core when the ingestion repays it, else 1."""
  cpus = cpus or os.cpu_count() or 1
  serial = num_inputs * SECONDS_PER_INPUT.get(ingest.align, SECONDS_PER_INPUT['dlib'])
  return cpus if cpus > 1 and serial >= AUTO_MIN_SERIAL_SECONDS else 1


def local_beam_args(beam_pipeline_args: List[str], beam_workers: int,
                    ingest: IngestConfig) -> List[str]:
  """`beam_pipeline_args` plus the DirectRunner flags for `beam_workers` (later flags win)."""
  if beam_workers < 0:
    raise ConfigError(f'beam_workers {beam_workers} must be >= 0 (0: auto)')
  if not uses_direct_runner(beam_pipeline_args):
    return list(beam_pipeline_args)
  workers = beam_workers or auto_workers(ingest, len(sources.list_inputs(ingest)))
  return list(beam_pipeline_args) + direct_runner_args(workers)
