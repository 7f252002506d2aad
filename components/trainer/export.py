"""Exports a trained model as a TF Serving SavedModel with four signatures.

Names, inputs and outputs are the serving contract in
`components/shared/serving_contract.py`:

* `serving_default`: `image_bytes` (string [batch], encoded JPEG/PNG/GIF/BMP
  of any size and channel count, as gRPC sends them and REST decodes
  `{"b64": ...}`) -> `fake_probability` (float32 [batch]) and `label`
  (string [batch], 'real' or 'fake'). The model learned from aligned face
  crops: clients prepare photos with `fakefaces.components.face_preparation.faces`
  first. Bytes that are no image fail the request with InvalidArgumentError
  naming the batch index; the server stays up.
* `from_examples`: `examples` (string [batch], serialized tf.Example) ->
  `fake_probability`. TFMA and InfraValidator feed this one.
* `explain`: like `serving_default` plus `heatmap` (float32 [batch, size,
  size] in [0, 1]), computed in the graph so any TF Serving deployment serves
  it: for a CNN, Grad-CAM of the fake logit at the architecture's last feature
  map (`model.grad_cam_layer`); for a ViT backbone (clip.py), which has no
  spatial feature map, gradient x input per 16x16 patch (`_patch_saliency`).
* `face_preparation`: `query` (string [batch], any non-empty bytes) ->
  `parameters` (string [batch]): JSON of the `FacePreparation` (alignment,
  detector, crop size, JPEG quality) the training data was made with.

A model with a frozen backbone (`BackboneHead`: clip_vit_b16, fused) also gets
`from_backbone_examples` (serving_contract.BACKBONE_SIGNATURES), the Evaluator's:
`examples` -> `fake_probability`, the model's layers after the tower on each
example's `backbone_features` (the cached features), the whole model on the
image of an example without them; and assets/backbone_features.json saying
which features those are and where the Trainer cached them.

All decode through `preprocess.decode_batch`, which calls
`preprocess.decode_image`, the function the training input pipeline uses.
The loaded object also exposes `preprocess(image_bytes)` (not a signature) so
tests and debugging can see the exact tensor the model receives.
"""

import dataclasses
import json
import os
import types
from typing import Any, Dict, Optional

import tensorflow as tf

import tf_keras as keras

from fakefaces.components.shared import features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.face_preparation.faces import FacePreparation
from fakefaces.components.image_encoder import clip, precision, preprocess
from fakefaces.components.trainer import model as model_lib

# The classifier's final layer: its input and weights give the fake logit
# that Grad-CAM differentiates.
OUTPUT_LAYER = model_lib.OUTPUT_LAYER


@dataclasses.dataclass(frozen=True)
class BackboneHead:
  """A frozen-backbone model's layers after the tower, for the `from_backbone_examples` signature.

  Attributes:
    model: features [b, d] -> P(fake) [b, 1] (`backbone.served_part`), or
      [image [b, size, size, 3], features [b, d]] -> P(fake) [b, 1]
      (`fused.on_backbone_features`); its layers are the exported model's, so
      its weights are too.
    features: what the features are and where they are cached (assets/backbone_features.json).
  """
  model: keras.Model
  features: contract.BackboneFeatures


def _has_layer(model: keras.Model, name: str) -> bool:
  """Whether `model` or a model nested in it has a layer called `name`."""
  return any(layer.name == name or (isinstance(layer, keras.Model) and _has_layer(layer, name))
             for layer in model.layers)


def _signature(input_name: str):
  """tf.function over a [batch] string input named `input_name`, traced without autograph.

  The functions' only branches are explicit tf.cond calls; autograph would
  convert every Keras layer's call as well, the costliest part of tracing the
  CLIP tower (docs/clip_backbone.md).
  """
  return tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)],
                     autograph=False)


def _unless_empty(image_bytes, predict):
  """`predict()` ([batch] float32), or an empty answer to an empty request: oneDNN
  convolutions reject empty batches."""
  return tf.cond(tf.size(image_bytes) > 0, predict, lambda: tf.zeros([0], tf.float32))


class _ServingModule(tf.Module):
  """Holds the Keras model and the preprocessing constants it was trained with."""

  def __init__(self, model, image_size: int, color_mode: str, decision_threshold: float,
               face_preparation: FacePreparation, backbone_head: Optional[BackboneHead] = None):
    super().__init__()
    # The SavedModel keeps the signatures' graphs and the variables they read, not
    # the Keras objects: tracked, each of their layers would be traced again for
    # Keras' own SavedModel metadata, which no loader here reads (serving/, the
    # canary, TFMA and the CLI call the signatures). A plain namespace is not
    # tracked; the variables are, as the checkpoint the graphs restore.
    self.keras = types.SimpleNamespace(model=model)
    self.model_variables = list(model.variables)
    self.image_size = image_size
    self.color_mode = color_mode
    self.decision_threshold = tf.Variable(decision_threshold, dtype=tf.float32, trainable=False,
                                          name='decision_threshold')
    self.face_preparation_json = tf.constant(face_preparation.to_json())
    output_layer = model.get_layer(OUTPUT_LAYER)
    # A ViT backbone, alone or inside the fused model (fused.py, a nested model).
    self.is_vit = _has_layer(model, clip.TOWER_INPUT_LAYER)
    # One model giving the last feature map (a CNN's) and the head's input: the
    # fake logit is head_input @ kernel + bias (before the sigmoid, which saturates
    # and would zero the gradient on confident predictions).
    if self.is_vit:
      self.keras.cam_model = keras.Model(model.inputs, output_layer.input)
    else:
      feature_map = model.get_layer(model_lib.grad_cam_layer(model)).output
      self.keras.cam_model = keras.Model(model.inputs, [feature_map, output_layer.input])
    self.keras.output_layer = output_layer
    # serving_default and from_examples call the model through this one function, so
    # the graph holds it once and the export traces it once (the CLIP tower's
    # tracing is most of its export time, docs/clip_backbone.md).
    images = tf.TensorSpec([None, image_size, image_size, preprocess.channels_for(color_mode)],
                           tf.float32)
    self.keras.probability = tf.function(lambda x: model(x, training=False),
                                         input_signature=[images], autograph=False)
    if backbone_head is not None:
      head = backbone_head.model
      self.backbone_width = backbone_head.features.width
      vectors = tf.TensorSpec([None, self.backbone_width], tf.float32)
      self.head_reads_image = len(head.inputs) == 2  # the fused model's CNN reads the image
      if self.head_reads_image:
        self.keras.on_features = tf.function(lambda x, v: head([x, v], training=False),
                                             input_signature=[images, vectors], autograph=False)
      else:
        self.keras.on_features = tf.function(lambda v: head(v, training=False),
                                             input_signature=[vectors], autograph=False)
      # An attribute only here: save() traces every tf.function the module holds.
      self.serve_backbone_examples = _signature(contract.EXAMPLES_INPUT)(
          self._serve_backbone_examples)

  @_signature(contract.IMAGE_BYTES_INPUT)
  def preprocess(self, image_bytes):
    return preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)

  def _predict(self, image_bytes):

    def predict():
      images = preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)
      return tf.reshape(tf.cast(self.keras.probability(images), tf.float32), [-1])

    return _unless_empty(image_bytes, predict)

  def _label(self, probability):
    return tf.where(probability >= self.decision_threshold, tf.constant(contract.FAKE_LABEL),
                    tf.constant(contract.REAL_LABEL))

  @_signature(contract.IMAGE_BYTES_INPUT)
  def serve_images(self, image_bytes):
    probability = self._predict(image_bytes)
    return {contract.PROBABILITY_KEY: probability, contract.LABEL_KEY: self._label(probability)}

  def _grad_cam(self, images):
    """(P(fake) [batch], heatmap [batch, size, size] in [0, 1]) by Grad-CAM.

    Channel weights are the spatial means of d(fake logit)/d(feature map); the
    map is the ReLU of their weighted sum, resized to the input and scaled to
    a maximum of 1 per image (all zeros when nothing points to "fake").
    """
    with tf.GradientTape() as tape:
      feature_map, head_input = self.keras.cam_model(images, training=False)
      logit = self._logit(head_input)
    gradients = tf.cast(tape.gradient(logit, feature_map), tf.float32)
    feature_map = tf.cast(feature_map, tf.float32)
    weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, [self.image_size, self.image_size], method='bilinear')[..., 0]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return tf.sigmoid(tf.reshape(logit, [-1])), tf.math.divide_no_nan(cam, peak)

  def _logit(self, head_input):
    kernel = tf.cast(self.keras.output_layer.kernel, tf.float32)
    bias = tf.cast(self.keras.output_layer.bias, tf.float32)
    return tf.matmul(tf.cast(head_input, tf.float32), kernel) + bias

  def _patch_saliency(self, images):
    """(P(fake) [batch], heatmap [batch, size, size] in [0, 1]) for a ViT: gradient x input per patch.

    Per pixel, d(fake logit)/d(pixel) x (pixel - CLIP mean), summed over the
    channels: each pixel's first-order contribution to the logit relative to
    the image the normalised input calls zero. Averaged over each 16x16 patch (the
    ViT's tokens, where per-pixel gradients are noisy), ReLU (evidence for
    "fake" only), resized to the input and scaled to a maximum of 1 per image
    (all zeros when nothing points to "fake").
    """
    with tf.GradientTape() as tape:
      tape.watch(images)
      logit = self._logit(self.keras.cam_model(images, training=False))
    gradients = tf.cast(tape.gradient(logit, images), tf.float32)
    contribution = tf.reduce_sum(gradients * (images - tf.constant(clip.MEAN)), axis=-1,
                                 keepdims=True)
    per_patch = tf.nn.avg_pool2d(contribution, clip.PATCH, clip.PATCH, 'VALID')
    cam = tf.image.resize(tf.nn.relu(per_patch), [self.image_size, self.image_size],
                          method='bilinear')[..., 0]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return tf.sigmoid(tf.reshape(logit, [-1])), tf.math.divide_no_nan(cam, peak)

  @_signature(contract.IMAGE_BYTES_INPUT)
  def explain(self, image_bytes):
    size = self.image_size

    def run():
      images = preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)
      return self._patch_saliency(images) if self.is_vit else self._grad_cam(images)

    probability, heatmap = tf.cond(
        tf.size(image_bytes) > 0, run,
        lambda: (tf.zeros([0], tf.float32), tf.zeros([0, size, size], tf.float32)))
    return {contract.PROBABILITY_KEY: probability, contract.LABEL_KEY: self._label(probability),
            contract.HEATMAP_KEY: heatmap}

  @_signature(contract.QUERY_INPUT)
  def face_preparation(self, query):
    # An empty query is refused like any bad input (contract.BAD_INPUTS): a client
    # sending nothing has a bug the canary should see.
    check = tf.debugging.Assert(tf.reduce_all(tf.strings.length(query) > 0),
                                ['face_preparation: every query element must be non-empty bytes'])
    with tf.control_dependencies([check]):
      return {contract.PARAMETERS_KEY: tf.fill(tf.shape(query), self.face_preparation_json)}

  @_signature(contract.EXAMPLES_INPUT)
  def serve_examples(self, examples):
    parsed = tf.io.parse_example(examples,
                                 {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
    return {contract.PROBABILITY_KEY: self._predict(parsed[features.IMAGE])}

  def _predict_on_features(self, image_bytes, vectors):
    """P(fake) [batch] of the layers after the tower on `vectors` [batch, d] (and the images)."""

    def predict():
      if self.head_reads_image:
        images = preprocess.decode_batch(image_bytes, self.image_size, self.color_mode)
        probability = self.keras.on_features(images, vectors)
      else:
        probability = self.keras.on_features(vectors)
      return tf.reshape(tf.cast(probability, tf.float32), [-1])

    return _unless_empty(image_bytes, predict)

  def _serve_backbone_examples(self, examples):
    parsed = tf.io.parse_example(
        examples, {features.IMAGE: tf.io.FixedLenFeature([], tf.string),
                   features.BACKBONE_FEATURES: tf.io.RaggedFeature(tf.float32)})
    images, ragged = parsed[features.IMAGE], parsed[features.BACKBONE_FEATURES]
    lengths = tf.cast(ragged.row_lengths(), tf.int32)
    check = tf.debugging.Assert(
        tf.reduce_all((lengths == 0) | (lengths == self.backbone_width)),
        [f'{features.BACKBONE_FEATURES} must hold {self.backbone_width} floats or be absent; '
         'per example:', lengths], summarize=8)
    with tf.control_dependencies([check]):
      vectors = ragged.to_tensor(default_value=0.0, shape=[None, self.backbone_width])
    given = tf.cast(tf.where(lengths > 0)[:, 0], tf.int32)
    absent = tf.cast(tf.where(lengths == 0)[:, 0], tf.int32)
    probability = tf.dynamic_stitch(
        [given, absent],
        [self._predict_on_features(tf.gather(images, given), tf.gather(vectors, given)),
         self._predict(tf.gather(images, absent))])
    return {contract.PROBABILITY_KEY: probability}


def export_saved_model(model, export_dir: str, image_size: int, color_mode: str,
                       decision_threshold: float = 0.5,
                       face_preparation: Optional[FacePreparation] = None,
                       operating_point: Optional[Dict[str, Any]] = None,
                       backbone_head: Optional[BackboneHead] = None) -> str:
  """Writes `model` with every signature to `export_dir` (TF SavedModel); returns it.

  `decision_threshold`: the `label` outputs call "fake" at P(fake) >= it.
  `operating_point`: how it was chosen and what it does on the eval split
  (`operating_point.OperatingPoint.to_dict()`), written with the threshold to
  assets/operating_point.json (`serving_contract.read_operating_point` reads it);
  without it the file holds the threshold alone ('chosen_by': 'explicit').
  `face_preparation` is how the training crops were made (the pipeline passes
  the ingestion's); the default is FacePreparation() with `output_size` set to
  `image_size`. `backbone_head`: a frozen-backbone model's layers after the
  tower (built on `model`'s layers, which must compute in float32), served as
  `from_backbone_examples`, and what it reads, written to assets/backbone_features.json.
  """
  if face_preparation is None:
    face_preparation = FacePreparation(output_size=image_size)
  preprocess.channels_for(color_mode)  # fail on a bad mode before tracing
  if not 0.0 < decision_threshold < 1.0:
    raise ValueError(f'decision_threshold must be in (0, 1), got {decision_threshold}')
  # A model trained in mixed precision serves in float32: same dtypes for clients, and
  # no emulated bfloat16 on serving machines without the instructions (precision.py).
  served = precision.float32_copy(model)
  if backbone_head is not None and served is not model:
    raise ValueError('export_saved_model: backbone_head needs a float32 model (its layers are '
                     "the model's); the frozen-backbone models are composed in float32")
  module = _ServingModule(served, image_size, color_mode, decision_threshold, face_preparation,
                          backbone_head)
  # The functions, not concrete functions traced here: `save` traces each once in
  # its save context, whose variable policy is part of the tracing cache key, so a
  # function traced beforehand would be traced a second time there.
  signatures = {
      contract.SERVING_SIGNATURE: module.serve_images,
      contract.EXAMPLES_SIGNATURE: module.serve_examples,
      contract.EXPLAIN_SIGNATURE: module.explain,
      contract.FACE_PREPARATION_SIGNATURE: module.face_preparation,
  }
  if set(signatures) != set(contract.SIGNATURES):
    raise AssertionError(f'export {sorted(signatures)} and serving_contract '
                         f'{sorted(contract.SIGNATURES)} disagree')
  if backbone_head is not None:
    signatures[contract.BACKBONE_EXAMPLES_SIGNATURE] = module.serve_backbone_examples
  tf.saved_model.save(module, export_dir, signatures=signatures)
  assets = os.path.join(export_dir, 'assets')
  tf.io.gfile.makedirs(assets)
  if backbone_head is not None:
    with tf.io.gfile.GFile(os.path.join(assets, contract.BACKBONE_FEATURES_FILE), 'w') as f:
      json.dump(backbone_head.features.to_dict(), f, indent=2)
  with tf.io.gfile.GFile(os.path.join(assets, contract.PREPROCESSING_FILE), 'w') as f:
    json.dump({'image_size': image_size, 'color_mode': color_mode,
               'decision_threshold': decision_threshold,
               'input': 'encoded JPEG/PNG/GIF/BMP bytes of face crops prepared as face_preparation says',
               'face_preparation': face_preparation.to_dict()}, f, indent=2)
  write_operating_point(export_dir, decision_threshold, operating_point)
  return export_dir


def write_operating_point(export_dir: str, decision_threshold: float,
                          operating_point: Optional[Dict[str, Any]] = None) -> str:
  """Writes assets/operating_point.json (what serving_contract.read_operating_point reads)."""
  point = dict(operating_point or {'chosen_by': 'explicit'},
               **{contract.DECISION_THRESHOLD_FIELD: float(decision_threshold)})
  assets = os.path.join(export_dir, 'assets')
  tf.io.gfile.makedirs(assets)
  path = os.path.join(assets, contract.OPERATING_POINT_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(point, f, indent=2)
  return path
