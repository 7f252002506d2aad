"""`train.architecture: fused`: the paper's CNN and the CLIP head in one SavedModel, stacked.

Both parts see the same RGB crop, `train.image_size` px (224, or another size
the tower takes). Each is trained on the train split as it is alone (the CNN
by `module.train_cnn`, the CLIP head on cached embeddings by
`backbone.train_head`); then a stacking layer, a logistic regression on the
two fake logits,

    P(fake) = sigmoid(w_cnn * logit_cnn + w_clip * logit_clip + b)

is fitted on the eval split (scikit-learn's LogisticRegression, L2, C = 1:
the parts were fitted on train, so their eval logits say how far to trust
each). The exported model is image -> [logit_cnn, logit_clip] -> that layer,
float32, so TF Serving and every client use it unchanged; its `explain`
signature differentiates the stacked logit (export.py, gradient x input per
patch). The CLIP part reads the embedding cache of `clip_vit_b16` (the
embedding or the class tokens, `train.clip_features`), so the backbone runs
once per image per run.
"""

import io
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fakefaces.components.shared import features
from fakefaces.components.image_encoder import precision, preprocess
from fakefaces.components.image_encoder.embedder import Embedder
from fakefaces.components.trainer import backbone, model as model_lib
from fakefaces.components.trainer import training
from fakefaces.components.trainer.config import FUSED, TrainConfig

STACKING_INPUT = 'stacking_logits'  # [b, 2]: the CNN's fake logit, then the CLIP head's
PARTS = ('cnn', 'clip')  # the stacking layer's input columns, in order
# L2 strength of the stacking fit (scikit-learn's default): keeps the 3
# parameters finite when the eval split's logits separate the classes.
STACKING_C = 1.0
CLIP_HEAD_RUN = 'clip_head'  # the CLIP head's history.json and curves, under the run folder
# The stacking layer's data, under the run folder: `logits` float32 [n, 2] (PARTS
# order) and `labels` int [n] of the eval split, so the fit can be checked.
STACKING_DATA = 'stacking_eval.npz'


def logit_model(model: keras.Model, name: str) -> keras.Model:
  """`model` (its OUTPUT_LAYER a Dense(1, sigmoid)) up to its fake logit: image -> logit [b, 1].

  The output layer's kernel and bias on a Dense without the sigmoid, so the
  logit is exact where the probability saturates.
  """
  output = model.get_layer(model_lib.OUTPUT_LAYER)
  with precision.policy('float32'):
    dense = keras.layers.Dense(1, name=f'{name}_logit')
    logits = keras.Model(model.inputs, dense(output.input), name=name)
  dense.set_weights(output.get_weights())
  return logits


def fit_stacking(logits: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, float]:
  """(weights [2], bias) of the logistic regression of `labels` [n] on `logits` [n, 2].

  Raises:
    ValueError: the split has one label only (names the split and the label).
  """
  present = sorted(set(np.asarray(labels).tolist()))
  if len(present) < 2:
    raise ValueError(f'fused: the {features.EVAL} split has only label {present} '
                     'and the stacking layer is fitted on it; it needs real and fake crops')
  regression = LogisticRegression(C=STACKING_C).fit(np.asarray(logits, np.float64), labels)
  return regression.coef_[0].astype(np.float32), float(regression.intercept_[0])


def compose(cnn: keras.Model, clip_model: keras.Model, weights: np.ndarray,
            bias: float) -> keras.Model:
  """image [b, s, s, 3] in [0, 1] -> [logit_cnn, logit_clip] -> stacking -> P(fake) [b, 1];
  s is `clip_model`'s input side (the config's image_size, which the CNN shares)."""
  cnn_logit = logit_model(cnn, PARTS[0])
  clip_logit = logit_model(clip_model, PARTS[1])
  with precision.policy('float32'):
    size = clip_model.input_shape[1]
    inputs = keras.Input((size, size, 3), name='image')
    stacked = keras.layers.Concatenate(name=STACKING_INPUT)([cnn_logit(inputs),
                                                            clip_logit(inputs)])
    stacking = keras.layers.Dense(1, activation='sigmoid', name=model_lib.OUTPUT_LAYER)
    fused = keras.Model(inputs, stacking(stacked), name=FUSED)
  stacking.set_weights([np.reshape(weights, [2, 1]).astype(np.float32),
                        np.asarray([bias], np.float32)])
  return fused


def on_backbone_features(model: keras.Model, config: TrainConfig) -> keras.Model:
  """`compose`'s model given the CLIP part's features: [image [b, s, s, 3], features [b, d]] -> P(fake) [b, 1].

  The same layers and weights: the CNN's logit on the image, the CLIP head's on
  the features (`backbone.served_part`: no tower), the stacking layer. The
  export's backbone signature serves it on the Evaluator's cached features.
  """
  clip_head = backbone.served_part(model.get_layer(PARTS[1]), config)
  with precision.policy('float32'):
    size = model.input_shape[1]  # the config's image_size
    image = keras.Input((size, size, 3), name='image')
    vectors = keras.Input((backbone.feature_size(config),), name=features.BACKBONE_FEATURES)
    stacked = model.get_layer(STACKING_INPUT)([model.get_layer(PARTS[0])(image),
                                               clip_head(vectors)])
    return keras.Model([image, vectors], model.get_layer(model_lib.OUTPUT_LAYER)(stacked),
                       name=f'{FUSED}_on_backbone_features')


def _cnn_logits(cnn: keras.Model, images: Sequence[bytes], batch_size: int) -> np.ndarray:
  """The CNN's fake logits [n] of encoded crops, decoded as the serving signatures do (at the
  CNN's input side)."""
  logits = logit_model(cnn, 'cnn')
  size = cnn.input_shape[1]
  out = [logits(preprocess.decode_batch(tf.constant(images[i:i + batch_size]), size,
                                        'rgb'), training=False).numpy().reshape(-1)
         for i in range(0, len(images), batch_size)]
  return np.concatenate(out) if out else np.zeros([0], np.float32)


def train(config: TrainConfig, cnn: keras.Model, train_files: Sequence[str],
          eval_files: Sequence[str], run_dir: str,
          embedder: Optional[Embedder] = None):
  """Trains the CLIP head, fits the stacking on eval; returns (fused model, eval data, stacking).

  `cnn`: the trained float32 CNN (`module.train_cnn`). Eval data: (P(fake) [n]
  of the float32 stacking layer on the eval split's two logits, int labels
  [n]), what the operating point is chosen on. Stacking: the fitted weights,
  bias and each part's eval AUC, also added to `run_dir`/history.json under
  'fusion'; the eval logits and labels it was fitted on go to STACKING_DATA.
  """
  embedder = embedder or Embedder(config)
  clip_model, _, _ = backbone.train_head(config, train_files, eval_files,
                                         os.path.join(run_dir, CLIP_HEAD_RUN), embedder)
  eval_images, labels = backbone.read_records(eval_files)
  clip_head = logit_model(clip_model, 'clip')
  # The CLIP head's logits from the cached features (read back, not recomputed).
  served_head = backbone.served_part(clip_head, config)
  clip_logits = served_head(backbone.head_features(embedder, eval_images, config), training=False)
  logits = np.stack([_cnn_logits(cnn, eval_images, config.batch_size),
                     np.asarray(clip_logits).reshape(-1)], axis=1)
  weights, bias = fit_stacking(logits, labels)
  fused = compose(cnn, clip_model, weights, bias)
  scores = fused.get_layer(model_lib.OUTPUT_LAYER)(tf.constant(logits, tf.float32)).numpy()
  scores = scores.reshape(-1)
  stacking = {'parts': list(PARTS), 'weights': [float(w) for w in weights], 'bias': bias,
              'fitted_on': features.EVAL, 'examples': int(len(labels)), 'C': STACKING_C,
              'cnn': config.fused_cnn, 'clip_head': config.head,
              'eval_auc': {part: _auc(labels, logits[:, i]) for i, part in enumerate(PARTS)}}
  stacking['eval_auc'][FUSED] = _auc(labels, scores)
  _add_to_history(run_dir, stacking)
  buffer = io.BytesIO()  # np.savez seeks, which gfile's writer cannot
  np.savez(buffer, logits=logits.astype(np.float32), labels=labels)
  with tf.io.gfile.GFile(os.path.join(run_dir, STACKING_DATA), 'wb') as f:
    f.write(buffer.getvalue())
  return fused, (scores, labels), stacking


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
  return float(roc_auc_score(labels, scores))


def _add_to_history(run_dir: str, stacking: Dict) -> None:
  path = os.path.join(run_dir, training.HISTORY_FILE)
  with tf.io.gfile.GFile(path) as f:
    history = json.load(f)
  history['fusion'] = dict(stacking, architecture=FUSED,
                           clip_head_history=os.path.join(CLIP_HEAD_RUN, training.HISTORY_FILE))
  training.write_history(history, run_dir)
