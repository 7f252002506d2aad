"""FaceExampleGen inside a real TFX pipeline: LocalDagRunner, MLMD on SQLite."""

import json
import os

import pytest
import tensorflow as tf
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.types import artifact_utils

from fakefaces.components.shared import features
from fakefaces.components.face_example_gen.component import FaceExampleGen
from fakefaces.pipeline.config import FacePreparation, IngestConfig, SourceConfig

BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def _run(config: IngestConfig, root) -> metadata.Metadata:
  connection = metadata.sqlite_metadata_connection_config(str(root / 'metadata.sqlite'))
  LocalDagRunner().run(tfx_pipeline.Pipeline(
      pipeline_name='ingest-test', pipeline_root=str(root / 'pipeline_root'),
      components=[FaceExampleGen(ingest_config=config, input_fingerprint='test')],
      metadata_connection_config=connection, enable_cache=False, beam_pipeline_args=BEAM_ARGS))
  return metadata.Metadata(connection)


def test_pipeline_registers_examples_and_report(faces_data, tmp_path):
  config = IngestConfig(
      sources=[SourceConfig('fairface', os.path.join(faces_data, 'fairface')),
               SourceConfig('kaggle140k', os.path.join(faces_data, 'gan_faces'))],
      face=FacePreparation(align='dlib', detector='hog+cnn', output_size=128), limit_per_source=12)
  with _run(config, tmp_path) as m:
    [examples] = m.store.get_artifacts_by_type('Examples')
    [report_artifact] = m.store.get_artifacts_by_type('fakefaces.IngestReport')
    [execution] = m.store.get_executions()
  assert execution.last_known_state == execution.COMPLETE
  assert json.loads(examples.properties['split_names'].string_value) == list(features.SPLITS)
  with open(os.path.join(report_artifact.uri, 'report.json'), encoding='utf-8') as f:
    report = json.load(f)
  assert report['total'] == 24 and report['counts']['written'] >= 22
  records = 0
  for split in artifact_utils.decode_split_names(examples.properties['split_names'].string_value):
    files = tf.io.gfile.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
    assert files, f'no TFRecords for split {split}'
    records += sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))
  assert records == report['counts']['written']


def test_pipeline_fails_when_too_many_inputs_are_bad(tmp_path):
  fake = tmp_path / 'junk' / 'fake'
  fake.mkdir(parents=True)
  for i in range(3):
    (fake / f'{i}.jpg').write_text('not an image')
  config = IngestConfig(sources=[SourceConfig('folders', str(tmp_path / 'junk'))],
                        face=FacePreparation(align='none'),
                        max_failure_rate=0.5)
  with pytest.raises(RuntimeError, match=r'3 of 3 inputs were not written .*max_failure_rate'):
    _run(config, tmp_path)
