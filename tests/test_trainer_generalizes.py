"""A short VGG10 run must score on held-out data, not only on what it fitted.

Guards the batch-norm moving statistics: with Keras' default momentum (0.99)
a run of ~50 steps fits the training set yet evaluates at chance,
because inference uses moving averages still dominated by their initial values.
"""

import pytest
import numpy as np
import tensorflow as tf

from fakefaces.components.image_encoder import preprocess
from fakefaces.components.trainer.model import build_model
from fakefaces.pipeline import demo_data

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out



def _arrays(rows, split):
  images = [preprocess.decode_image(tf.constant(r['jpeg']), 64, 'grayscale').numpy()
            for r in rows if r['split'] == split]
  labels = [float(r['label'] == 'fake') for r in rows if r['split'] == split]
  return np.stack(images), np.array(labels, dtype=np.float32)


def test_short_vgg10_run_generalizes_to_held_out_images():
  rows = list(demo_data.iter_demo_rows(400, seed=11, eval_fraction=0.0, test_fraction=0.3,
                                       image_size=64))
  x_train, y_train = _arrays(rows, 'train')
  x_test, y_test = _arrays(rows, 'test')
  tf.keras.utils.set_random_seed(0)
  model = build_model('vgg10', 64, 1)
  model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0)  # ~54 steps
  _, accuracy, _ = model.evaluate(x_test, y_test, verbose=0)
  assert accuracy >= 0.9, f'held-out accuracy {accuracy:.3f} after a short run'
