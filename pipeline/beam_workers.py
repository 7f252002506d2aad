"""How many processes a local run's Beam steps use ("the whole machine when that pays").

Local runs (`fakefaces run`, `fakefaces ingest`) append DirectRunner flags to
`beam_pipeline_args`:

* FaceExampleGen gets `beam_workers` workers (its own flags,
  `with_beam_pipeline_args`), which it runs as one in-memory Beam worker with
  that many face-preparation processes (`face_example_gen/executor.local_processes`);
  * `beam_workers: 1`: one process (what tests use: no start-up);
  * `beam_workers: N > 1`: N face-preparation processes;
  * `beam_workers: 0` (default, "auto"): one per core when the ingestion is
    big enough to repay their start-up (each loads the dlib models), else one.
* Every other Beam step (StatisticsGen's TFDV, the Evaluator's TFMA) runs on
  one in-memory worker: Beam's extra processes made them
  slower (`bench/beam_steps.py`; measured in docs/performance.md, "Statistics
  and evaluation"). TFMA's inference already uses every core through
  TensorFlow's own thread pool, and each extra process starts TensorFlow and
  TFX again and loads the model.

Args naming another runner (`--beam-arg=--runner=PortableRunner ...`: Flink,
Spark, Dataflow, Beam's portable runner) are passed as they are: FaceExampleGen
then prepares faces in its Beam workers, one per worker (docs/distributed_beam.md).
Kubeflow keeps `beam_pipeline_args` as they are: there `os.cpu_count()`
counts the node's cores, not the pod's CPU limit, and the data-heavy steps
get a distributed runner (`kubeflow.data_beam_pipeline_args`).
"""

import os
from typing import List, NamedTuple, Optional

from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.shared.direct_runner import direct_runner_args, uses_direct_runner
from fakefaces.components.face_example_gen import sources
from fakefaces.components.face_example_gen.config import IngestConfig

# Estimated CPU seconds per input (hog+cnn took 653 s for 8,012 photos on one
# core; decoding and re-encoding an aligned crop alone is ~3 ms).
SECONDS_PER_INPUT = {'dlib': 0.08, 'none': 0.003}
# Below this much estimated ingestion work, extra processes cost more than they
# save. Measured with Beam's own workers (2 slower than 1 on 200 photos, ~16 s);
# the face workers start faster (1.52x on 200 photos, bench/ingest.py), so this is
# conservative.
AUTO_MIN_SERIAL_SECONDS = 60.0


def auto_workers(ingest: IngestConfig, num_inputs: int, cpus: Optional[int] = None) -> int:
  """Workers for `beam_workers: 0`: every core when the ingestion repays it, else 1."""
  cpus = cpus or os.cpu_count() or 1
  serial = num_inputs * SECONDS_PER_INPUT.get(ingest.face.align, SECONDS_PER_INPUT['dlib'])
  return cpus if cpus > 1 and serial >= AUTO_MIN_SERIAL_SECONDS else 1


class LocalBeamArgs(NamedTuple):
  pipeline: List[str]  # every Beam step: `beam_pipeline_args` + one in-memory worker
  ingestion: List[str]  # FaceExampleGen's own, appended after `pipeline` (later flags win)


def local_beam_args(beam_pipeline_args: List[str], beam_workers: int,
                    ingest: IngestConfig) -> LocalBeamArgs:
  """The DirectRunner flags of a local run: `beam_workers` (0: auto) for ingestion, 1 elsewhere."""
  if beam_workers < 0:
    raise ConfigError(f'beam_workers {beam_workers} must be >= 0 (0: auto)')
  if not uses_direct_runner(beam_pipeline_args):
    return LocalBeamArgs(list(beam_pipeline_args), [])
  workers = beam_workers or auto_workers(ingest, len(sources.list_inputs(ingest)))
  return LocalBeamArgs(list(beam_pipeline_args) + direct_runner_args(1),
                       direct_runner_args(workers))
