"""`fakefaces report` on a tiny subset of the shared face data, and its metrics."""

import json

import numpy as np
import pytest

from fakefaces.pipeline.cli import quality_report
from fakefaces.pipeline.cli import cli

HEADER = '| Model | Group | N | Real | Fake | Accuracy | F1 | Precision | Recall | AUC | FPR |'


def test_report_on_a_tiny_subset(faces_data, tmp_path):
  out = tmp_path / 'report'
  code = cli.main(['report', '--data', faces_data, '--out', str(out), '--epochs', '1',
                   '--max-images', '36', '--image-size', '32', '--batch-size', '12'])
  assert code == 0
  report = json.loads((out / quality_report.REPORT_JSON).read_text())
  assert report['columns'] == ['n', 'n_real', 'n_fake', 'accuracy', 'f1', 'precision', 'recall',
                               'auc', 'fpr']
  (model,) = report['models']
  assert model['architecture'] == 'vgg10' and model['epochs_run'] == 1
  # The threshold is chosen on the validation part for the thresholds file's target FPR.
  assert model['operating_point']['chosen_by'] == 'target_fpr'
  assert model['operating_point']['split'] == 'validation'
  assert set(model['test_operating_point']['tpr_at_fpr']) == {'0.01', '0.05'}
  titles = [t['title'] for t in model['tables']]
  assert [t.split(':')[0] for t in titles] == ['Table 4', 'Table 5', 'Table 6', 'Table 7',
                                               'Table 8']
  overall = model['tables'][0]['rows'][0]
  assert overall['n'] == report['counts']['test'] and overall['n_fake'] > 0
  assert 0.0 <= overall['accuracy'] <= 1.0 and 0.0 <= overall['auc'] <= 1.0
  by_source = {r['group']: r for r in model['tables'][1]['rows']}
  assert set(by_source) == {'gan_faces', 'fairface'}
  assert by_source['fairface']['n_fake'] == 0 and by_source['fairface']['recall'] is None
  assert sum(r['n'] for r in by_source.values()) == overall['n']
  genders = {r['group'] for r in model['tables'][2]['rows']}
  assert genders <= {'Male', 'Female'} and genders
  markdown = (out / quality_report.REPORT_MD).read_text()
  assert markdown.count(HEADER) == 5 and '| vgg10 | all |' in markdown
  assert (out / 'vgg10' / 'history.json').exists()
  # The learning curves beside the history, named in the JSON and shown in the markdown.
  assert model['learning_curves'] == 'vgg10/learning_curves.png'
  assert (out / model['learning_curves']).read_bytes().startswith(b'\x89PNG')
  assert '![vgg10](vgg10/learning_curves.png)' in markdown
  assert model['parameters'] > 0 and model['forward_gflop_per_image'] > 0
  predictions = (out / quality_report.PREDICTIONS_CSV).read_text().splitlines()
  assert predictions[0] == 'path,source,label,p_fake_vgg10,p_fake_spectral_floor'
  assert len(predictions) == overall['n'] + 1
  # The spectral floor beside the CNN, per source; FairFace (reals only) has no AUC.
  floor = {row['source']: row for row in report['floor']}
  assert set(floor) == {'gan_faces', 'fairface'}
  assert floor['fairface']['floor_auc'] is None and floor['fairface']['beats_floor'] is None
  assert 0.0 <= floor['gan_faces']['floor_auc'] <= 1.0
  assert floor['gan_faces']['beats_floor'] == (floor['gan_faces']['cnn_auc'] >
                                               floor['gan_faces']['floor_auc'])
  assert '## Spectral floor' in markdown


def test_missing_data_fails_or_skips_cleanly(tmp_path, capsys):
  args = ['report', '--data', str(tmp_path / 'absent'), '--out', str(tmp_path / 'out')]
  assert cli.main(args) == 2
  assert 'no manifest.csv in' in capsys.readouterr().err
  assert cli.main(args + ['--skip-missing']) == 0
  assert 'report skipped' in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()


def test_binary_metrics_by_hand():
  labels = np.array([1, 1, 1, 0, 0, 0, 0])
  probabilities = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3])
  m = quality_report.binary_metrics(labels, probabilities)
  # TP=2, FN=1, FP=1, TN=3
  assert m['accuracy'] == pytest.approx(5 / 7)
  assert m['precision'] == pytest.approx(2 / 3) and m['recall'] == pytest.approx(2 / 3)
  assert m['f1'] == pytest.approx(2 / 3) and m['fpr'] == pytest.approx(1 / 4)
  assert m['auc'] == pytest.approx(10 / 12)  # 10 of 12 (fake, real) pairs ranked right
  reals_only = quality_report.binary_metrics(np.array([0, 0]), np.array([0.1, 0.2]))
  assert reals_only['accuracy'] == 1.0 and reals_only['fpr'] == 0.0
  assert reals_only['precision'] is None and reals_only['recall'] is None
  assert reals_only['f1'] is None and reals_only['auc'] is None
