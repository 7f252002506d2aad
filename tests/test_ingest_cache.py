"""Caching that holds: the ingestion fingerprint covers exactly what ingestion reads.

The field case `cache_manifest_in_root/`: a manifest (`fakefaces label --out labels.csv`)
in a folder that also holds the run's outputs, its rows pointing outside that folder.
A second real `fakefaces run` with unchanged inputs is fully cached; a changed listed
image re-runs ingestion; a changed label or image changes the fingerprint, outputs do not.
The runs call the command's `main` in this process: a subprocess would add a TensorFlow
import per run and prove nothing more about caching (MLMD and the outputs are on disk).
"""

import csv
import os
import shutil

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from fakefaces.pipeline import config as config_lib
from fakefaces.pipeline import demo_data
from fakefaces.pipeline.cli import cli
from fakefaces.pipeline.pipeline import input_fingerprint
from tiny_pipeline import tiny_config, write_config, write_thresholds
from wiring_thresholds import LENIENT

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

State = metadata_store_pb2.Execution.State
# Components whose inputs are the ingested examples only (not the last blessed model).
CACHED_ON_RERUN = ('FaceExampleGen', 'ImportSchemaGen', 'DemographicAnnotator', 'StatisticsGen',
                   'ExampleValidator', 'DataGate', 'Trainer')


def _states(metadata_path: str):
  """{component class name: [execution states, oldest first]} from MLMD."""
  store = mlmd.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
  result = {}
  for execution_type in store.get_execution_types():
    name = execution_type.name.rsplit('.', 1)[-1]
    executions = sorted(store.get_executions_by_type(execution_type.name), key=lambda e: e.id)
    result.setdefault(name, []).extend(e.last_known_state for e in executions)
  return result


def _project(tmp_path, field_case) -> str:
  """work/labels.csv (rows '../data/images/...') beside work/runs/ (the outputs)."""
  case = field_case('cache_manifest_in_root')
  with open(os.path.join(case, 'labels.csv'), newline='') as f:
    header = next(csv.reader(f))  # the columns `fakefaces label --out labels.csv` writes
  generated = demo_data.generate(str(tmp_path / 'data'), num_images=160, seed=5, image_size=64)
  work = tmp_path / 'work'
  work.mkdir()
  with open(generated, newline='') as f:
    rows = list(csv.DictReader(f))
  with open(work / 'labels.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=header, extrasaction='ignore')
    writer.writeheader()
    for row in rows:
      writer.writerow(dict(row, path=os.path.join('..', 'data', row['path'])))
  thresholds = write_thresholds(work / 'thresholds.yaml', **LENIENT)
  config = tiny_config('cache', work / 'runs', str(work / 'labels.csv'), thresholds,
                       source_name='labels', epochs=1)
  return write_config(config, work / 'cache.yaml')


def _run(config_path: str) -> None:
  assert cli.main(['run', '--config', config_path]) == 0


def _first_image(config_path: str) -> str:
  manifest = config_lib.load_config(config_path).ingest.sources[0].path
  with open(manifest, newline='') as f:
    row = next(csv.DictReader(f))
  return os.path.normpath(os.path.join(os.path.dirname(manifest), row['path']))


def test_unchanged_inputs_are_cached_and_a_changed_image_reruns_ingestion(tmp_path, field_case):
  config_path = _project(tmp_path, field_case)
  config = config_lib.load_config(config_path)
  _run(config_path)
  first = _states(config.metadata_path)
  assert first['FaceExampleGen'] == [State.COMPLETE]

  _run(config_path)  # outputs were written beside the manifest
  second = _states(config.metadata_path)
  # Ingestion and everything up to the trained model reused, none executed again. (The
  # Evaluator and what follows it judge the model against the last blessed one, which the
  # first run made, so they run again by design.)
  for name in CACHED_ON_RERUN:
    assert second[name] == [State.COMPLETE, State.CACHED], (name, second[name])

  image = _first_image(config_path)  # outside the manifest's folder
  shutil.copyfile(os.path.join(os.path.dirname(image), sorted(os.listdir(
      os.path.dirname(image)))[-1]), image)
  _run(config_path)
  third = _states(config.metadata_path)
  assert third['FaceExampleGen'] == [State.COMPLETE, State.CACHED, State.COMPLETE]
  assert third['Trainer'].count(State.COMPLETE) == 2  # new data, new model


def test_fingerprint_covers_listed_files_labels_and_nothing_else(tmp_path, field_case):
  config_path = _project(tmp_path, field_case)
  config = config_lib.load_config(config_path)
  before = input_fingerprint(config)
  work = os.path.dirname(config.ingest.sources[0].path)
  os.makedirs(os.path.join(work, 'runs', 'x'))
  with open(os.path.join(work, 'runs', 'x', 'output.bin'), 'wb') as f:
    f.write(b'a run writes here')
  with open(os.path.join(work, 'notes.txt'), 'w') as f:
    f.write('not listed')
  assert input_fingerprint(config) == before  # outputs and unlisted files do not count
  image = _first_image(config_path)
  stat = os.stat(image)
  os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched (or re-saved)
  touched = input_fingerprint(config)
  assert touched != before
  manifest = config.ingest.sources[0].path
  with open(manifest) as f:
    text = f.read()
  with open(manifest, 'w') as f:  # one label changed: the manifest's size stays the same
    f.write(text.replace(',real,', ',fake,', 1) if ',real,' in text
            else text.replace(',fake,', ',real,', 1))
  assert input_fingerprint(config) != touched


@pytest.mark.parametrize('kind', ['folders'])
def test_fingerprint_of_a_folder_source_ignores_hidden_and_sibling_files(tmp_path, kind):
  (tmp_path / 'src' / 'real').mkdir(parents=True)
  (tmp_path / 'src' / 'real' / 'a.jpg').write_bytes(b'jpeg-ish')
  config = config_lib.PipelineConfig(name='x')
  config.ingest = config_lib.IngestConfig(
      sources=[config_lib.SourceConfig(kind=kind, path=str(tmp_path / 'src'))])
  before = input_fingerprint(config)
  (tmp_path / 'src' / 'README.txt').write_text('beside real/ and fake/: not read')
  assert input_fingerprint(config) == before
  (tmp_path / 'src' / 'real' / 'b.jpg').write_bytes(b'a new input')
  assert input_fingerprint(config) != before
