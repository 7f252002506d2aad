"""A finished run's executions and outputs, read from its MLMD store (metadata.sqlite).

The one reader of MLMD outside TFX: the run summary `fakefaces run` prints
(pipeline/summary.py) and the benches that compare runs (bench/pipeline.py,
beam_steps.py, same_outputs.py) go through it.
"""

import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  """A read-only MetadataStore on a run's metadata.sqlite.

  Raises:
    FileNotFoundError: there is no file at `metadata_path` (SQLite would create an empty one).
  """
  if not os.path.isfile(metadata_path):
    raise FileNotFoundError(f'no metadata file at {metadata_path}')
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(connection)


def latest_artifact(store: metadata_store.MetadataStore,
                    type_name: str) -> Optional[metadata_store_pb2.Artifact]:
  """The newest artifact of type `type_name` (e.g. 'fakefaces.FairnessReport') in the store,
  whichever run made it, or None when there is none. Newest is the highest id: MLMD numbers
  artifacts in the order they are registered."""
  artifacts = store.get_artifacts_by_type(type_name)
  return max(artifacts, key=lambda a: a.id) if artifacts else None


def node_name(context) -> str:
  """The pipeline node a TFX 'node' context stands for (its name is '<pipeline>.<node>')."""
  return context.name.split('.', 1)[-1]


def newest_execution(store, node: str):
  """The newest COMPLETE execution of pipeline node `node` (CACHED ones did no work)."""
  done = [e for c in store.get_contexts_by_type('node') if node_name(c) == node
          for e in store.get_executions_by_context(c.id)
          if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
  if not done:
    raise ValueError(f'no completed {node} execution in the metadata')
  return max(done, key=lambda e: (e.create_time_since_epoch, e.id))


def output_uris(store, node: str) -> Dict[str, List[str]]:
  """{output key: [artifact URI]} of `node`'s newest completed execution."""
  execution = newest_execution(store, node)
  uris: Dict[str, List[str]] = {}
  for event in store.get_events_by_execution_ids([execution.id]):
    if event.type != metadata_store_pb2.Event.OUTPUT:
      continue
    key = next((s.key for s in event.path.steps if s.HasField('key')), '')
    uris.setdefault(key, []).extend(a.uri for a in store.get_artifacts_by_id([event.artifact_id]))
  return uris
