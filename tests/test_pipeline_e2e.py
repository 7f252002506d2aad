"""End to end: the real TFX pipeline (LocalDagRunner, MLMD on SQLite, Beam
DirectRunner) on a tiny generated dataset.

One module-scoped run pushes a model under thresholds any model meets; later
runs reuse its cached upstream components and change only what a test needs,
so the whole module costs about one full pipeline run.
"""

import glob
import json
import os

import pytest
import tensorflow as tf

from fakefaces.components.shared import serving_contract as contract
from fakefaces.pipeline import demo_data, local_runner, summary
from tiny_pipeline import tiny_config, write_thresholds
from wiring_thresholds import LENIENT

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

COMPONENTS = ('FaceExampleGen', 'DemographicAnnotator', 'StatisticsGen', 'ImportSchemaGen',
              'ExampleValidator', 'DataGate', 'Trainer', 'Evaluator', 'FairnessGate',
              'ServingCanary', 'Pusher', 'ModelCardGen')


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e')
  manifest = demo_data.generate(str(root / 'data'), num_images=240, seed=3, image_size=64)
  config = tiny_config('e2e', root, manifest, write_thresholds(root / 'lenient.yaml', **LENIENT))
  local_runner.run_local(config)
  return root, manifest, config


def test_every_component_produced_its_artifacts(first_run):
  _, _, config = first_run
  for component in COMPONENTS:
    outputs = glob.glob(os.path.join(config.pipeline_root, component, '*', '*'))
    assert outputs, f'{component} wrote nothing under {config.pipeline_root}'
  for split in ('train', 'eval', 'test'):
    files = glob.glob(os.path.join(config.pipeline_root, 'FaceExampleGen', 'examples', '*',
                                   f'Split-{split}', '*.gz'))
    assert files, f'no {split} TFRecords'
  result = summary.latest_run_summary(config)
  assert result['ingest_counts']['written'] == 240
  assert result['blessed'] is True
  assert result['pushed'] is True


def test_pushed_model_loads_and_scores_an_image(first_run):
  _, _, config = first_run
  versions = [d for d in os.listdir(config.serving_model_dir) if d.isdigit()]
  assert len(versions) == 1, versions
  version_dir = os.path.join(config.serving_model_dir, versions[0])
  assert os.path.isfile(os.path.join(version_dir, 'saved_model.pb'))
  model = tf.saved_model.load(version_dir)
  pixels, _ = demo_data.render_image(0, fake=True, seed=99)
  outputs = model.signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant([demo_data.encode_jpeg(pixels)]))
  probability = outputs[contract.PROBABILITY_KEY].numpy()
  assert probability.shape == (1,)
  assert 0.0 <= probability[0] <= 1.0
  assert outputs[contract.LABEL_KEY].numpy()[0] in (b'real', b'fake')
  # The served label cuts where the gate judged (the thresholds file's 0.3).
  with open(os.path.join(version_dir, 'assets', contract.PREPROCESSING_FILE)) as f:
    assert json.load(f)['decision_threshold'] == pytest.approx(0.3)


def test_gate_blocks_push_on_insufficient_evidence(first_run, tmp_path):
  """Same model, same evaluation (cached); only the fairness bounds change."""
  root, manifest, _ = first_run
  serving_dir = tmp_path / 'serving_model'
  thresholds = write_thresholds(tmp_path / 'strict.yaml', **dict(LENIENT, min_group_size=10_000))
  config = tiny_config('e2e', root, manifest, thresholds, serving_dir=serving_dir)
  local_runner.run_local(config)
  result = summary.latest_run_summary(config)
  assert result['blessed'] is False
  assert result['verdict'] == 'insufficient_evidence'
  assert any('insufficient evidence' in r for r in result['reasons'])
  assert result['pushed'] is False
  assert not serving_dir.exists() or not os.listdir(serving_dir)


def test_gate_blocks_push_when_accuracy_threshold_unreachable(first_run, tmp_path):
  root, manifest, _ = first_run
  serving_dir = tmp_path / 'serving_model'
  thresholds = write_thresholds(tmp_path / 'impossible.yaml',
                                **dict(LENIENT, min_balanced_accuracy=1.01))
  config = tiny_config('e2e', root, manifest, thresholds, serving_dir=serving_dir)
  local_runner.run_local(config)
  result = summary.latest_run_summary(config)
  assert result['blessed'] is False
  assert any('Evaluator did not bless' in r for r in result['reasons'])
  assert result['pushed'] is False
  assert not serving_dir.exists() or not os.listdir(serving_dir)


def test_the_performance_benches_read_a_real_run(first_run, tmp_path, load_bench):
  """bench/beam_steps.py re-runs StatisticsGen from MLMD; bench/same_outputs.py compares runs."""
  beam_steps, same_outputs = load_bench('beam_steps'), load_bench('same_outputs')
  _, _, config = first_run
  seconds = beam_steps.run_once(config.metadata_path, 'StatisticsGen', 1, str(tmp_path / 'stats'))
  assert seconds > 0
  assert sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(
      str(tmp_path / 'stats' / 'statistics' / '0' / 'Split-*' / 'FeatureStats.pb'))) == [
          'Split-eval', 'Split-test', 'Split-train']

  out = tmp_path / 'same.json'
  assert same_outputs.main([config.metadata_path, config.metadata_path, '--out', str(out)]) == 0
  result = json.loads(out.read_text())
  assert result['same_faces'] and result['faces'][0]['written'] == 240
  assert all(r['same_order'] for r in result['examples'].values())
  assert result['largest_weight_difference'] == 0.0
