"""The operating point: chosen for a target FPR on known scores, carried by the export,
and used by the served `label` that `fakefaces predict` prints."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from fakefaces.components.shared import features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.trainer import module, operating_point
from fakefaces.pipeline.cli import cli
from fakefaces.pipeline.fixtures import demo_records
from fakefaces.serving import client as client_lib
import serving_testing as testing

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out


def test_threshold_for_target_fpr_on_known_scores():
  # 20 reals scoring 0.00, 0.05, ..., 0.95; 5 fakes.
  reals = [i / 20 for i in range(20)]
  fakes = [0.3, 0.62, 0.88, 0.97, 0.99]
  labels, scores = [0] * 20 + [1] * 5, reals + fakes
  # FPR 0.10 allows 2 of 20 reals (0.90, 0.95): the threshold lies between the third
  # highest real (0.85) and the next score above it (the fake at 0.88).
  threshold = operating_point.threshold_for_fpr(labels, scores, 0.10)
  assert threshold == pytest.approx(0.865, abs=1e-6)
  point = operating_point.measure(labels, scores, threshold, 'target_fpr', 0.10, 'eval')
  assert point.fpr == pytest.approx(0.10) and point.tpr == pytest.approx(0.6)
  assert point.balanced_accuracy == pytest.approx((0.6 + 0.9) / 2)
  # FPR 0.05 allows 1 real: between 0.90 and 0.95 (no other score in between).
  assert operating_point.threshold_for_fpr(labels, scores, 0.05) == pytest.approx(0.925, abs=1e-6)
  # Below 1/20 no real may be called fake: above the highest real, below the next fake.
  assert operating_point.threshold_for_fpr(labels, scores, 0.01) == pytest.approx(0.96, abs=1e-6)
  assert point.tpr_at_fpr == {'0.01': pytest.approx(0.4), '0.05': pytest.approx(0.4)}
  assert point.reals_needed == 10


def test_ties_among_reals_only_lower_the_fpr():
  labels = [0] * 10 + [1] * 2
  scores = [0.8, 0.8, 0.8] + [0.1] * 7 + [0.9, 0.2]
  threshold = operating_point.threshold_for_fpr(labels, scores, 0.2)  # allows 2 reals
  assert 0.8 < threshold < 0.9  # all three tied reals stay below: FPR 0, not 0.3
  assert operating_point.measure(labels, scores, threshold, 'target_fpr', 0.2, 'e').fpr == 0.0


def test_tpr_at_fpr_is_zero_when_saturated_reals_exceed_the_target():
  # 20 of 100 reals and every fake at P(fake) 1.0 (float32 sigmoid saturation): the
  # threshold's ceiling 0.999999 lies under those reals (FPR 0.2), so no threshold in
  # (0, 1) keeps the FPR at 0.05 and the ROC's TPR there is 0, not 1.
  labels = [0] * 100 + [1] * 100
  scores = [1.0] * 20 + [0.1] * 80 + [1.0] * 100
  assert operating_point.tpr_at_fpr(labels, scores, 0.05) == 0.0
  point = operating_point.measure(labels, scores, 0.5, 'explicit', 0.05, 'eval')
  assert point.tpr_at_fpr == {'0.01': 0.0, '0.05': 0.0}
  # Unsaturated, the same reals leave the TPR as before: 5 reals allowed above 0.9.
  scores = [0.95] * 5 + [0.1] * 95 + [0.99] * 100
  assert operating_point.tpr_at_fpr(labels, scores, 0.05) == 1.0


def test_explicit_threshold_overrides_and_bad_inputs_are_named():
  point = operating_point.choose([0, 1], [0.2, 0.7], target_fpr=0.05, decision_threshold=0.3)
  assert point.decision_threshold == 0.3 and point.chosen_by == 'explicit'
  assert point.auc == 1.0 and point.fpr == 0.0 and point.tpr == 1.0
  with pytest.raises(ValueError, match='no real photo'):
    operating_point.threshold_for_fpr([1, 1], [0.2, 0.7], 0.05)
  with pytest.raises(ValueError, match='target_fpr must be in'):
    operating_point.threshold_for_fpr([0, 1], [0.2, 0.7], 0.0)
  one_class = operating_point.measure([0, 0], [0.2, 0.7], 0.5, 'explicit', None, 'e')
  assert one_class.tpr is None and one_class.auc is None and one_class.balanced_accuracy is None


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """run_fn on demo records with target_fpr 0.3: (records, fn_args).

  Trained in bfloat16 (emulated where the CPU lacks it; 2 steps at 32 px), the
  harder journey: the threshold must be the served float32 model's, on every CPU.
  """
  root = tmp_path_factory.mktemp('operating_point')
  records = demo_records.write_tfrecords(str(root / 'records'), num_images=60, seed=11)
  args = FnArgs(train_files=[records[features.TRAIN]], eval_files=[records[features.EVAL]],
                model_run_dir=str(root / 'model_run'),
                serving_model_dir=str(root / 'serving_model'),
                custom_config=module.trainer_custom_config(
                    module.TrainConfig(architecture='baseline', image_size=32, epochs=1,
                                       steps_per_epoch=2, batch_size=8, validation_steps=1,
                                       precision='mixed_bfloat16'),
                    target_fpr=0.3))
  module.run_fn(args)
  return records, args


def _eval_images(records):
  images, labels = [], []
  for record in tf.data.TFRecordDataset(tf.io.gfile.glob(records[features.EVAL]),
                                        compression_type='GZIP'):
    example = tf.train.Example.FromString(record.numpy()).features.feature
    images.append(example[features.IMAGE].bytes_list.value[0])
    labels.append(example[features.LABEL].int64_list.value[0])
  return images, np.array(labels)


def test_threshold_travels_from_training_to_predict(trained, tmp_path, capsys):
  records, args = trained
  point = contract.read_operating_point(args.serving_model_dir)
  threshold = contract.read_decision_threshold(args.serving_model_dir)
  assert point['chosen_by'] == 'target_fpr' and point['target_fpr'] == 0.3
  assert point['split'] == features.EVAL
  with open(f'{args.model_run_dir}/operating_point.json', encoding='utf-8') as f:
    assert json.load(f)['decision_threshold'] == threshold
  # The exported model's own scores on the eval split choose the same threshold.
  images, labels = _eval_images(records)
  loaded = tf.saved_model.load(args.serving_model_dir)
  scores = loaded.signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant(images))[contract.PROBABILITY_KEY].numpy()
  assert operating_point.threshold_for_fpr(labels, scores, 0.3) == pytest.approx(threshold,
                                                                               abs=1e-6)
  # Served: the label calls exactly the chosen share of eval reals fake.
  base = tmp_path / 'serving'
  testing.push_version(args.serving_model_dir, str(base), 1)
  with testing.ServerProcess(str(base), log_path=str(tmp_path / 'serve.log')) as server:
    with client_lib.ServingClient(server.grpc_target) as client:
      served = client.predict(images)
    called_fake = np.array([p.label == contract.FAKE_LABEL for p in served])
    assert called_fake[labels == 0].mean() == pytest.approx(point['fpr'])
    assert called_fake[labels == 1].mean() == pytest.approx(point['tpr'])
    assert all(p.label == (contract.FAKE_LABEL if p.fake_probability >= threshold
                           else contract.REAL_LABEL) for p in served)
    # `fakefaces predict` prints the served label: fake exactly at P(fake) >= threshold.
    paths = []
    for i, image in enumerate(images):
      paths.append(str(tmp_path / f'face{i}.jpg'))
      with open(paths[-1], 'wb') as f:
        f.write(image)
    assert cli.main(['predict', *paths, '--aligned', '--json', '--server',
                     server.grpc_target]) == 0
  faces = [face for entry in json.loads(capsys.readouterr().out)['images']
           for face in entry['faces']]
  assert len(faces) == len(images)
  for face in faces:
    p = face[contract.PROBABILITY_KEY]
    if abs(p - threshold) > 1e-5:  # the JSON rounds P(fake) to 6 decimals
      assert face[contract.LABEL_KEY] == ('fake' if p >= threshold else 'real'), (p, threshold)
