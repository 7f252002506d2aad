"""The paper's VGG10 / baseline structure, and that short training lowers the loss."""

import dataclasses
import json
import os

import pytest
import tf_keras as keras

from fakefaces.components.image_encoder import precision
from fakefaces.components.trainer import data, model, training
from fakefaces.pipeline.config import TrainConfig


def _layers(m, kind):
  return [layer for layer in m.layers if isinstance(layer, kind)]


def test_vgg10_matches_the_paper():
  m = model.build_model('vgg10', image_size=128, channels=1)
  convs = _layers(m, keras.layers.Conv2D)
  assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 128, 128]
  assert all(c.kernel_size == (3, 3) and c.activation.__name__ == 'relu' for c in convs)
  assert len(_layers(m, keras.layers.BatchNormalization)) == 3
  assert [p.pool_size for p in _layers(m, keras.layers.MaxPooling2D)] == [(2, 2)] * 3
  dense = _layers(m, keras.layers.Dense)
  assert [(d.units, d.activation.__name__) for d in dense] == [(128, 'relu'), (1, 'sigmoid')]
  # 8 conv + 2 dense = the 10 weight layers of "VGG10".
  assert len(convs) + len(dense) == 10
  # Every block ends conv -> batch norm -> max pool, and the last block has four convs.
  kinds = [type(layer).__name__ for layer in m.layers]
  blocks = ''.join({'Conv2D': 'c', 'BatchNormalization': 'b', 'MaxPooling2D': 'p'}.get(k, '')
                   for k in kinds)
  assert blocks == 'ccbp' 'ccbp' 'ccccbp'
  assert m.get_layer('flatten').output_shape == (None, 16 * 16 * 128)
  assert m.input_shape == (None, 128, 128, 1)
  assert m.output_shape == (None, 1)
  assert m.output.dtype.name == 'float32'


def test_baseline_is_three_convolutions_and_rgb_works():
  m = model.build_model('baseline', image_size=64, channels=3)
  assert [c.filters for c in _layers(m, keras.layers.Conv2D)] == [32, 64, 128]
  assert m.input_shape == (None, 64, 64, 3) and m.output_shape == (None, 1)


@pytest.mark.parametrize('kwargs, message', [
    (dict(architecture='resnet'), 'architecture must be one of'),
    (dict(optimizer='adagrad'), 'optimizer must be one of'),
    (dict(image_size=4), 'image_size must be at least 8'),
    (dict(dropout=1.5), 'dropout must be in'),
])
def test_bad_hyperparameters_are_named(kwargs, message):
  args = {**dict(architecture='vgg10', image_size=32, channels=1), **kwargs}
  with pytest.raises(ValueError, match=message):
    model.build_model(**args)


def test_short_training_on_demo_data_lowers_the_loss(demo_dataset, tmp_path):
  root = os.path.dirname(demo_dataset)
  with open(demo_dataset, encoding='utf-8') as f:
    rows = [line.strip().split(',') for line in f.readlines()[1:]]
  paths = [os.path.join(root, r[0]) for r in rows][:64]
  labels = [1 if r[1] == 'fake' else 0 for r in rows][:64]
  config = TrainConfig(image_size=64, epochs=4, batch_size=16, early_stopping_patience=0,
                       learning_rate=5e-4, dropout=0.2, seed=3)
  counts = {0: labels.count(0), 1: labels.count(1)}
  _, summary = training.train(config, data.files_dataset(paths, labels, config, training=True),
                              data.files_dataset(paths[:16], labels[:16], config, training=False),
                              counts, str(tmp_path))
  loss = summary['history']['loss']
  assert len(loss) == 4
  assert loss[-1] < loss[0], loss
  written = json.loads((tmp_path / training.HISTORY_FILE).read_text())
  assert written['config'] == dataclasses.asdict(config)
  assert written['strategy'] in ('_DefaultDistributionStrategy', 'MirroredStrategy')
  # train.precision 'auto': bfloat16 only where this CPU has the instructions.
  assert written['precision_policy'] == precision.resolve('auto')
