"""The serving contract: every signature of the exported SavedModel, its inputs and outputs.

`components/shared/features.py` is the tf.Example contract; this module is the TF
Serving one. Export (`components/trainer/export.py`), the server (`serving/`),
the clients (`serving/client.py`, `fakefaces predict`, the web page) and the
ServingCanary read the names from here and never spell them out themselves.

    serving_default   image_bytes [batch] string (aligned face crops, encoded)
                      -> fake_probability [batch] float32, label [batch] string
    from_examples     examples [batch] string (serialized tf.Example)
                      -> fake_probability [batch] float32          (TFMA feeds this)
    explain           image_bytes [batch] string
                      -> fake_probability, label, heatmap [batch, size, size] float32 in [0, 1]
                         (Grad-CAM of the fake logit, computed in the graph)
    face_preparation  query [batch] string (any non-empty bytes)
                      -> parameters [batch] string: JSON of the face preparation the
                         model was trained with (one copy per query element)

A model with a frozen backbone (`train.architecture: clip_vit_b16` or `fused`) has
one more signature, for the Evaluator, not for clients (BACKBONE_SIGNATURES):

    from_backbone_examples  examples [batch] string (serialized tf.Example)
                      -> fake_probability [batch] float32: the head on the example's
                         `backbone_features` (features.py) where it carries them, the
                         whole model on its image (as from_examples) where it does not

and assets/backbone_features.json (`BackboneFeatures`, `read_backbone_features`):
which features that signature reads and where the Trainer cached them.

The decision threshold the `label` output uses (the operating point the
Trainer chose for a target false-positive rate) is written beside the model as
assets/operating_point.json; `read_decision_threshold(model_dir)` is the one
reader (TFMA's EvalConfig, the FairnessGate, `fakefaces gate`, the model card).

Clients prepare photos with `fakefaces.components.face_preparation.faces` using the
parameters `face_preparation` returns, so a served model is always fed the
crops it learned from.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

from fakefaces.components.shared import features

# Signature names.
SERVING_SIGNATURE = 'serving_default'
EXAMPLES_SIGNATURE = 'from_examples'
EXPLAIN_SIGNATURE = 'explain'
FACE_PREPARATION_SIGNATURE = 'face_preparation'
BACKBONE_EXAMPLES_SIGNATURE = 'from_backbone_examples'

# Input keys.
IMAGE_BYTES_INPUT = 'image_bytes'
EXAMPLES_INPUT = 'examples'
QUERY_INPUT = 'query'

# Output keys.
PROBABILITY_KEY = 'fake_probability'
LABEL_KEY = 'label'
HEATMAP_KEY = 'heatmap'
PARAMETERS_KEY = 'parameters'

# Values of the `label` output.
REAL_LABEL = features.LABEL_NAMES[features.REAL]
FAKE_LABEL = features.LABEL_NAMES[features.FAKE]

# What a client sends to `face_preparation` (the value is ignored; empty strings are refused).
PREPARATION_QUERY = b'face_preparation'

# For each input, a value the model must refuse with INVALID_ARGUMENT (the ServingCanary
# sends it): bytes that are no image, no tf.Example, and an empty preparation query.
BAD_INPUTS = {IMAGE_BYTES_INPUT: b'not an image at all', EXAMPLES_INPUT: b'\x00 not a tf.Example',
              QUERY_INPUT: b''}

# Files written next to the SavedModel (under assets/).
PREPROCESSING_FILE = 'preprocessing.json'
OPERATING_POINT_FILE = 'operating_point.json'
# The key both files hold the threshold under (older models have only preprocessing.json).
DECISION_THRESHOLD_FIELD = 'decision_threshold'
# What BACKBONE_EXAMPLES_SIGNATURE reads (models with a frozen backbone only).
BACKBONE_FEATURES_FILE = 'backbone_features.json'


@dataclasses.dataclass(frozen=True)
class Signature:
  """One signature: its single string input and its outputs."""
  name: str
  input_key: str
  outputs: Tuple[str, ...]
  description: str


SIGNATURES: Dict[str, Signature] = {s.name: s for s in (
    Signature(SERVING_SIGNATURE, IMAGE_BYTES_INPUT, (PROBABILITY_KEY, LABEL_KEY),
              'P(fake) and label per encoded aligned face crop'),
    Signature(EXAMPLES_SIGNATURE, EXAMPLES_INPUT, (PROBABILITY_KEY,),
              'P(fake) per serialized tf.Example (TFMA)'),
    Signature(EXPLAIN_SIGNATURE, IMAGE_BYTES_INPUT, (PROBABILITY_KEY, LABEL_KEY, HEATMAP_KEY),
              'P(fake), label and a Grad-CAM heatmap per encoded aligned face crop'),
    Signature(FACE_PREPARATION_SIGNATURE, QUERY_INPUT, (PARAMETERS_KEY,),
              'JSON of the face preparation the model was trained with'),
)}

# Signatures only a model with a frozen backbone has; the Evaluator calls them, clients do not.
BACKBONE_SIGNATURES: Dict[str, Signature] = {s.name: s for s in (
    Signature(BACKBONE_EXAMPLES_SIGNATURE, EXAMPLES_INPUT, (PROBABILITY_KEY,),
              'P(fake) per serialized tf.Example, the head on its backbone_features (Evaluator)'),
)}


@dataclasses.dataclass(frozen=True)
class BackboneFeatures:
  """What BACKBONE_EXAMPLES_SIGNATURE reads as `backbone_features`, and where they are cached.

  Written by the Trainer to assets/BACKBONE_FEATURES_FILE; the Evaluator reads it
  to fill the feature from the same cache (image_encoder/embedding_cache.py).

  Attributes:
    kind: the feature kind (image_encoder/feature_kinds.py): 'embedding' or 'class_tokens'.
    blocks: for class tokens, the blocks (1..12) the head reads, in order; () for the embedding.
    width: d, the feature's length: 512 for the embedding, len(blocks) x 768 for class tokens.
    backbone_sha256: sha256 of the backbone's weights file (the cache's folder is named by it).
    backbone_weights: the weights file the Trainer read ('' = the installed package's).
    embedding_cache_dir: the cache folder the Trainer used, resolved ('' never).
    image_size: the tower's input side, px (the cache keeps each size apart).
  """
  kind: str
  blocks: Tuple[int, ...]
  width: int
  backbone_sha256: str
  backbone_weights: str
  embedding_cache_dir: str
  image_size: int

  def to_dict(self) -> Dict[str, Any]:
    return dict(dataclasses.asdict(self), blocks=list(self.blocks))


def read_backbone_features(model_dir: str) -> Optional[BackboneFeatures]:
  """The model's assets/BACKBONE_FEATURES_FILE, or None for a model without a backbone signature.

  Raises:
    ValueError: the file is not JSON or lacks a field (naming the file and the fields).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (the contract stays import-light)
  path = os.path.join(model_dir, 'assets', BACKBONE_FEATURES_FILE)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path) as f:
      content = json.load(f)
    return BackboneFeatures(**dict(content, blocks=tuple(content['blocks'])))
  except (ValueError, TypeError, KeyError) as e:
    fields = [f.name for f in dataclasses.fields(BackboneFeatures)]
    raise ValueError(f'{path}: not a backbone features file with fields {fields} ({e})') from None


def input_key(signature_name: str) -> str:
  """The input key of `signature_name` (KeyError naming the known ones otherwise)."""
  known = dict(SIGNATURES, **BACKBONE_SIGNATURES)
  try:
    return known[signature_name].input_key
  except KeyError:
    raise KeyError(f'unknown signature {signature_name!r}; the contract has '
                   f'{sorted(known)}') from None


def read_operating_point(model_dir: str) -> Dict[str, Any]:
  """The exported model's operating point (assets/operating_point.json) as a dict.

  Models exported before the operating point was chosen carry only the threshold,
  in assets/preprocessing.json; they get {'decision_threshold': t, 'chosen_by':
  'preprocessing.json'}. Raises ValueError naming the folder when neither file
  holds a threshold in (0, 1).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (the contract stays import-light)
  assets = os.path.join(model_dir, 'assets')
  for name in (OPERATING_POINT_FILE, PREPROCESSING_FILE):
    path = os.path.join(assets, name)
    if not tf.io.gfile.exists(path):
      continue
    try:
      with tf.io.gfile.GFile(path) as f:
        content = json.load(f)
    except ValueError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None
    threshold = content.get(DECISION_THRESHOLD_FIELD) if isinstance(content, dict) else None
    if threshold is None:
      continue
    if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
      raise ValueError(f'{path}: {DECISION_THRESHOLD_FIELD} must be a number in (0, 1), '
                       f'got {threshold!r}')
    if name == OPERATING_POINT_FILE:
      return content
    return {DECISION_THRESHOLD_FIELD: float(threshold), 'chosen_by': PREPROCESSING_FILE}
  raise ValueError(f'{model_dir}: no {DECISION_THRESHOLD_FIELD} in assets/{OPERATING_POINT_FILE} '
                   f'or assets/{PREPROCESSING_FILE}; is it a SavedModel exported by '
                   'fakefaces.components.trainer.export?')


def format_probability(value: float, threshold: Optional[float] = None) -> str:
  """The one way P(fake) and the decision threshold are printed (page, CLI, gate, card).

  Four significant digits ('1e-06', '0.5', '0.7342', '4.2e-05'), so a small
  threshold or score is never shown as 0.000. With `threshold`, more digits where
  four would put the shown value on the other side of it than `value` is: a verdict
  and its number never contradict each other.
  """
  value = float(value)
  for digits in range(4, 17):
    text = f'{value:.{digits}g}'
    if threshold is None or (float(text) >= threshold) == (value >= threshold):
      return text
  return repr(value)


def read_decision_threshold(model_dir: str) -> float:
  """The threshold the model's `label` output calls "fake" at (score >= threshold)."""
  return float(read_operating_point(model_dir)[DECISION_THRESHOLD_FIELD])
