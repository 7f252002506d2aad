"""The ServingCanary's check on its own: a real exported model in the project's server.

`run_canary` starts the server through `serving/`'s own API (a child process),
calls every signature with real and bad inputs over gRPC, and stops the server.
The pipeline tests (test_pipeline_e2e, test_release) run it inside full runs.
"""

import pytest
from fakefaces.components.face_example_gen.executor import make_example
from fakefaces.components.face_example_gen.sources import InputRecord
from fakefaces.components.serving_canary import executor as canary
from fakefaces.components.serving_canary.config import CanaryConfig
import serving_testing as testing

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out



def _examples(count: int):
  images = testing.encode_images(count, size=64, fmt='JPEG')
  return [make_example(InputRecord(path='', source='demo', image_id=f'img{i}', label=i % 2,
                                   split='test'), image, face_size=64).SerializeToString()
          for i, image in enumerate(images)]


def test_a_working_model_passes_every_signature_in_the_builtin_server(tmp_path):
  model_dir = testing.export_tiny_model(str(tmp_path / 'model'))
  log_path = tmp_path / 'server.log'
  report = canary.run_canary(model_dir, _examples(2), CanaryConfig(server='builtin'),
                             str(tmp_path / 'work'), log_path=str(log_path))
  assert report['passed'] is True, report['problems']
  assert report['server'] == 'builtin'
  assert report['signatures'] and {c['signature'] for c in report['calls']} == set(
      report['signatures'])
  bad = [c for c in report['calls'] if c['input'] == 'bad']
  assert len(bad) == len(report['signatures'])
  assert all(c['code'] == 'INVALID_ARGUMENT' for c in bad), bad
  assert report['calls'][-1]['input'] == 'real, after the bad requests'
  assert log_path.exists()  # the child's log, kept beside the report


def test_no_examples_is_insufficient_evidence_and_starts_no_server(tmp_path):
  model_dir = testing.export_tiny_model(str(tmp_path / 'model'))
  report = canary.run_canary(model_dir, [], CanaryConfig(server='builtin'), str(tmp_path / 'work'))
  assert report['passed'] is False and report['server'] is None
  assert report['problems'] == ['no real examples to query with: insufficient evidence']
