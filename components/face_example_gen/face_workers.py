"""Face preparation in worker processes: every core for ingestion's dlib work.

`WorkerPool(params, face_descriptors, n)` starts n processes running this
module (`python -m fakefaces.components.face_example_gen.face_workers`). Each
imports only PIL, numpy and dlib (no TensorFlow, Beam or TFX) and loads the
dlib models once. The caller's threads send it one photo's bytes at a time, with
the alignment mode of its source, and get back a `Prepared` tuple. Sources with
`align: none` go through the pool like the others: their crops need no dlib, but
their face descriptors (`face_descriptors`, ~113 CPU-ms each) do.

Why not Beam's multi-process DirectRunner: each of its workers imports
TensorFlow, Beam and TFX and loads the dlib models, and on 2 cores it gave
1.15x for 800 photos. Why not `fork`: once dlib has run in a process, its
thread pool's locks are copied mid-use into forked children, which then
deadlock in dlib (seen in bench/ingest.py after the in-memory row).

A worker that dies (a native crash in dlib) costs only the photo it was
preparing: that photo ends `unreadable` with the reason, and a fresh worker
takes its place.

Protocol, over the worker's stdin and a private copy of its stdout (fd 1 then
points to stderr, so nothing a library prints can corrupt it): pickled
(FacePreparation dict, face_descriptors), answered by 'ready'; then pickled
(align, photo bytes), each answered by a pickled `Prepared`.
"""

import dataclasses
import os
import pickle
import queue
import subprocess
import sys
from typing import Dict, Optional, Tuple

import numpy as np

from fakefaces.components.face_preparation import descriptors, faces, images

WRITTEN, NO_FACE = 'written', 'no_face'
UNREADABLE, FILTERED = images.UNREADABLE, images.FILTERED
CRASHED = 'processing crashed the face-preparation process'

# (outcome, reason, encoded face, face_size, detector, descriptor or None): plain
# values, so it crosses process boundaries.
Prepared = Tuple[str, str, bytes, int, str, Optional[np.ndarray]]


def prepare(preparer: faces.FacePreparer, describer: Optional[descriptors.FaceDescriber],
            data: bytes) -> Prepared:
  """Decode -> check -> align -> treat -> encode (and describe) one photo; never raises."""
  try:
    image = preparer.decode(data)  # refuses what dlib must not see
  except images.ImageProblem as e:
    return e.outcome, e.reason, b'', 0, '', None
  try:
    photo = preparer.prepare_image(image, all_faces=False)
  except Exception as e:  # a bug or a dlib failure must not stop the run  # pylint: disable=broad-except
    return (UNREADABLE, f'processing failed: {type(e).__name__}: {images.error_text(e)}', b'', 0,
            '', None)
  if not photo.faces:
    return NO_FACE, photo.no_face_reason, b'', 0, '', None
  face = photo.faces[0]
  descriptor = None
  if describer is not None:
    try:
      descriptor = describer.describe_pixels(np.asarray(face.aligned.convert('RGB')))
    except Exception:  # pylint: disable=broad-except  (the annotator describes it later)
      descriptor = None
  # A photo with more faces than the one kept says so in the ingestion report.
  note = (f'{photo.found} faces found; the largest used, {photo.found - 1} not used '
          '(one face per photo)') if photo.found > 1 else ''
  return WRITTEN, note, face.encoded, face.face_size, face.detector, descriptor


class Preparers:
  """One `FacePreparer` per alignment mode: the config's, and any a source sets for itself.

  A source's own `align` (SourceConfig.align: 'none' for sets that are FFHQ-aligned
  already) changes only the mode; every other parameter is the config's.
  """

  def __init__(self, params: faces.FacePreparation):
    self._params = params
    self._by_align: Dict[str, faces.FacePreparer] = {params.align: faces.FacePreparer(params)}

  def get(self, align: str = '') -> faces.FacePreparer:
    """The preparer for `align` ('': the config's own mode)."""
    mode = align or self._params.align
    if mode not in self._by_align:
      self._by_align[mode] = faces.FacePreparer(dataclasses.replace(self._params, align=mode))
    return self._by_align[mode]


class WorkerDied(Exception):
  pass


class _Worker:
  """One worker process and its pipes."""

  def __init__(self, setup: bytes):
    self._process = subprocess.Popen([sys.executable, '-m', __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
    self._process.stdin.write(setup)
    self._process.stdin.flush()

  def wait_ready(self) -> None:
    if self._receive() != 'ready':
      raise WorkerDied('face-preparation worker did not start')

  def _receive(self):
    try:
      return pickle.load(self._process.stdout)
    except (EOFError, pickle.UnpicklingError, OSError) as e:
      raise WorkerDied(str(e)) from e

  def prepare(self, data, align: str) -> Prepared:
    try:
      pickle.dump((align, data), self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
      self._process.stdin.flush()
    except (BrokenPipeError, OSError) as e:
      raise WorkerDied(str(e)) from e
    return self._receive()

  def close(self) -> None:
    try:
      self._process.stdin.close()
      self._process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
      self._process.kill()
      self._process.wait()


class WorkerPool:
  """`size` worker processes; `prepare(data)` is safe to call from `size` threads at once."""

  def __init__(self, params: faces.FacePreparation, face_descriptors: bool, size: int):
    self._setup = pickle.dumps((params.to_dict(), face_descriptors))
    self._idle: 'queue.Queue[_Worker]' = queue.Queue()
    self._workers = [_Worker(self._setup) for _ in range(size)]  # start together, load in parallel
    for worker in self._workers:
      worker.wait_ready()
      self._idle.put(worker)

  def prepare(self, data, align: str = '') -> Prepared:
    """`data` prepared with the alignment mode `align` ('': the pool's own)."""
    worker = self._idle.get()
    try:
      return worker.prepare(data, align)
    except WorkerDied:
      worker.close()
      self._workers.remove(worker)
      worker = _Worker(self._setup)
      worker.wait_ready()
      self._workers.append(worker)
      return UNREADABLE, CRASHED, b'', 0, '', None
    finally:
      self._idle.put(worker)

  def close(self) -> None:
    for worker in self._workers:
      worker.close()
    self._workers = []


def _serve() -> None:
  replies = os.fdopen(os.dup(1), 'wb')
  os.dup2(2, 1)  # what libraries print goes to stderr, never into the replies
  requests = sys.stdin.buffer
  params, face_descriptors = pickle.load(requests)
  preparers = Preparers(faces.FacePreparation.from_dict(params))
  if preparers.get().params.align == 'dlib':
    _ = preparers.get().aligner  # load the models before saying ready
  describer = descriptors.FaceDescriber() if face_descriptors else None
  pickle.dump('ready', replies)
  replies.flush()
  while True:
    try:
      align, data = pickle.load(requests)
    except EOFError:
      return
    pickle.dump(prepare(preparers.get(align), describer, data), replies,
                protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()


if __name__ == '__main__':
  _serve()
