"""CLIP ViT-B/16's image tower in tf_keras, with the weights of the ONNX file in clip_weights.py.

The architecture (Radford et al. 2021; Hugging Face `CLIPVisionModelWithProjection`,
which the ONNX file was exported from):

    image [b, 224, 224, 3] in [0, 1] -> (x - CLIP mean) / CLIP std
    -> 16x16 patch convolution, stride 16, no bias: [b, 196, 768]
    -> class token prepended, learned position embedding added: [b, 197, 768]
    -> ln_pre -> 12 pre-LN blocks (12-head self-attention; MLP 768 -> 3072 -> 768, quick_gelu)
    -> ln_post on the class token -> 768 -> 512 projection, no bias: embedding [b, 512]

The same pass also gives the class token after each block, [b, 12, 768]
(`build_tower`'s CLASS_TOKENS output): the residual stream at token 0 before
any layer norm, the intermediate representations RINE (Koutlis and
Papadopoulos, ECCV 2024) trains its detector on. `head_input` turns either
kind into a head's input.

The file stores the 73 matrices of the projections and MLPs as INT8 with one
scale and zero point per output column; `read_weights` dequantises them,
W = (q - zero_point) * scale, and keeps everything else (patch kernel,
embeddings, layer norms, biases) as the float32 it is stored in. The tower
then computes in float32 (or the layers' policy): no activation quantisation,
so it equals `float_reference_graph` (onnxruntime on the same graph with float
MatMuls) up to float32 summation order, and differs from the INT8 graph's own
output by its dynamic activation quantisation (docs/clip_backbone.md measures both).

Other input sizes (feature_kinds.IMAGE_SIZES, multiples of 16 from 112 to
224): s px gives (s/16)^2 patch tokens, and the position embedding of the
14 x 14 grid is resampled to the (s/16) x (s/16) grid once, when the weights
are set (`resample_position_embedding`: bicubic, antialiased, the class
token's position kept; the usual way, as timm's `resample_abs_pos_embed` and
Hugging Face CLIP's `interpolate_pos_encoding`). At 224 nothing is resampled:
the tower is the one the reference route checks. At 128 px, the pipeline's
crop side, the tower reads the crop as it is: 64 tokens instead of 196.

The layers are frozen (`trainable=False`): the detector trains a head on the
512-d embedding or on the class tokens (trainer/backbone.py, `build_head`).
"""

import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from fakefaces.components.image_encoder import clip_weights, precision
from fakefaces.components.image_encoder.feature_kinds import (BLOCKS, CLASS_TOKENS, EMBEDDING,
                                                               IMAGE_SIZES, NATIVE_IMAGE_SIZE,
                                                               PATCH)

NAME = 'clip_vit_b16'
IMAGE_SIZE = NATIVE_IMAGE_SIZE  # the default input side, px; the ONNX file's
WIDTH = 768
HEADS = 12
LAYERS = BLOCKS
MLP_WIDTH = 3072
EMBEDDING_SIZE = 512
LAYER_NORM_EPSILON = 1e-5  # CLIPVisionConfig.layer_norm_eps
# The normalisation CLIP was trained with (openai/CLIP clip.py, `_transform`).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
EMBEDDING_LAYER = 'clip_projection'  # the tower's last layer: output [b, EMBEDDING_SIZE]
TOWER_INPUT_LAYER = 'clip_embeddings'  # the tower's first layer, in a model with either kind
CLASS_TOKENS_LAYER = 'clip_class_tokens'  # output [b, LAYERS, WIDTH]
# The head's input for class tokens: the chosen blocks' tokens, flattened [b, len(blocks) * WIDTH].
CLASS_TOKEN_FEATURES_LAYER = 'clip_class_token_features'
# The layer whose output a head of each kind reads (the served head starts after it).
FEATURES_LAYERS = {EMBEDDING: EMBEDDING_LAYER, CLASS_TOKENS: CLASS_TOKEN_FEATURES_LAYER}
HEADS_KINDS = ('linear', 'mlp')
MLP_HEAD_UNITS = 128  # as the CNNs' dense layer (model.DENSE_UNITS)


def quick_gelu(x):
  """x * sigmoid(1.702 x): CLIP's activation (CLIPVisionConfig.hidden_act 'quick_gelu')."""
  return x * tf.sigmoid(tf.cast(1.702, x.dtype) * x)


def grid_side(height, width=None) -> int:
  """Patches per side of a square input of `height` px: height / 16 (14 at 224, 8 at 128).

  Raises:
    ValueError: the input is not square or its side is not one of IMAGE_SIZES (names the sizes).
  """
  width = height if width is None else width
  if height != width or height not in IMAGE_SIZES:
    raise ValueError(f'the CLIP tower\'s image_size must be one of {list(IMAGE_SIZES)} (square, '
                     f'whole 16 px patches), got {height} x {width}')
  return height // PATCH


def resample_position_embedding(position_embedding: np.ndarray, side: int) -> np.ndarray:
  """CLIP's position embedding [1 + g^2, 768] -> [1 + side^2, 768] for a side x side patch grid.

  Row 0 (the class token's) is kept; the g x g grid's rows are resized to
  side x side, bicubic (Keys, a = -0.5), antialiased when shrinking (as timm's
  `resample_abs_pos_embed`, antialias=True), in float64 and returned float32.
  The same g is returned unchanged, bit for bit.
  """
  grid = int(round((position_embedding.shape[0] - 1)**0.5))
  if side == grid:
    return position_embedding
  patches = position_embedding[1:].reshape(grid, grid, -1).astype(np.float64)
  resized = tf.image.resize(patches[None], [side, side], method='bicubic', antialias=True)[0]
  return np.concatenate([position_embedding[:1],
                         resized.numpy().reshape(side * side, -1).astype(np.float32)])


@keras.utils.register_keras_serializable(package='fakefaces')
class ClipEmbeddings(keras.layers.Layer):
  """Pixels [b, s, s, 3] in [0, 1] -> tokens [b, (s/16)^2 + 1, 768]: normalise, patchify, class
  token, positions (s = 224: [b, 197, 768]; s = 128: [b, 65, 768]).

  s is the input's (build); its position embedding has (s/16)^2 + 1 rows.
  """

  def build(self, input_shape):
    fixed = dict(trainable=False, initializer='zeros')  # set by load_weights
    self.patch_kernel = self.add_weight('patch_kernel', [PATCH, PATCH, 3, WIDTH], **fixed)
    self.class_embedding = self.add_weight('class_embedding', [WIDTH], **fixed)
    tokens = grid_side(input_shape[1], input_shape[2])**2 + 1
    self.position_embedding = self.add_weight('position_embedding', [tokens, WIDTH], **fixed)
    super().build(input_shape)

  def call(self, images):
    mean = tf.constant(MEAN, images.dtype)
    std = tf.constant(STD, images.dtype)
    x = (images - mean) / std
    x = tf.nn.conv2d(x, tf.cast(self.patch_kernel, x.dtype), strides=PATCH, padding='VALID')
    batch = tf.shape(x)[0]
    x = tf.reshape(x, [batch, -1, WIDTH])
    cls = tf.tile(tf.reshape(tf.cast(self.class_embedding, x.dtype), [1, 1, WIDTH]), [batch, 1, 1])
    return tf.concat([cls, x], axis=1) + tf.cast(self.position_embedding, x.dtype)


@keras.utils.register_keras_serializable(package='fakefaces')
class ClipEncoderBlock(keras.layers.Layer):
  """One pre-LN transformer block: x + attn(ln1(x)), then + mlp(ln2(x)); [b, 197, 768] -> same."""

  def build(self, input_shape):
    policy = self.dtype_policy
    self.ln1 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name='ln1', dtype=policy)
    self.ln2 = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name='ln2', dtype=policy)
    # Zeros: load_weights sets every value; a random 86M-parameter init costs seconds.
    dense = dict(dtype=policy, kernel_initializer='zeros')
    self.q, self.k, self.v, self.out = (keras.layers.Dense(WIDTH, name=name, **dense)
                                        for name in ('q_proj', 'k_proj', 'v_proj', 'out_proj'))
    self.fc1 = keras.layers.Dense(MLP_WIDTH, activation=quick_gelu, name='fc1', **dense)
    self.fc2 = keras.layers.Dense(WIDTH, name='fc2', **dense)
    shape = tf.TensorShape(input_shape)
    for layer in (self.ln1, self.ln2, self.q, self.k, self.v, self.out, self.fc1):
      layer.build(shape)
    self.fc2.build(shape[:-1].concatenate([MLP_WIDTH]))
    super().build(input_shape)

  def _heads(self, x):
    batch, tokens = tf.shape(x)[0], tf.shape(x)[1]
    return tf.transpose(tf.reshape(x, [batch, tokens, HEADS, WIDTH // HEADS]), [0, 2, 1, 3])

  def call(self, x):
    return self._block(x)

  # Keras converts a subclassed layer's `call` with autograph wherever it is traced
  # (model building, every tf.function, each SavedModel signature), and the block's
  # six Dense and two LayerNormalization calls with it: most of the tower's tracing
  # time. The block has no Python control flow to convert. (Decorating `call`
  # itself would hide its arguments from Keras, which would then pass `training`.)
  @tf.autograph.experimental.do_not_convert
  def _block(self, x):
    h = self.ln1(x)
    q = self._heads(self.q(h)) * tf.cast((WIDTH // HEADS)**-0.5, h.dtype)
    attention = tf.nn.softmax(tf.matmul(q, self._heads(self.k(h)), transpose_b=True), axis=-1)
    context = tf.transpose(tf.matmul(attention, self._heads(self.v(h))), [0, 2, 1, 3])
    x = x + self.out(tf.reshape(context, tf.shape(x)))
    return x + self.fc2(self.fc1(self.ln2(x)))


@keras.utils.register_keras_serializable(package='fakefaces')
class ClassToken(keras.layers.Layer):
  """Tokens [b, 197, 768] -> the class token [b, 768]."""

  def call(self, tokens):
    return tokens[:, 0]


@keras.utils.register_keras_serializable(package='fakefaces')
class ClassTokens(keras.layers.Layer):
  """The blocks' outputs, LAYERS x [b, 197, 768] -> their class tokens [b, LAYERS, 768], in block order."""

  def call(self, blocks):
    return tf.stack([tokens[:, 0] for tokens in blocks], axis=1)


@keras.utils.register_keras_serializable(package='fakefaces')
class ClassTokenFeatures(keras.layers.Layer):
  """Class tokens [b, LAYERS, 768] -> the chosen blocks' tokens, flattened [b, len(blocks) * 768].

  `blocks` are numbered 1..LAYERS (`train.clip_blocks`); block-major order, so
  feature j * 768 + c is channel c of the j-th chosen block. The Trainer applies
  this layer to the cached tokens and the served model to the tower's, so both
  select alike.
  """

  def __init__(self, blocks: Sequence[int], **kwargs):
    super().__init__(**kwargs)
    self.blocks = [int(b) for b in blocks]

  def call(self, class_tokens):
    chosen = tf.gather(class_tokens, [b - 1 for b in self.blocks], axis=1)
    return tf.reshape(chosen, [-1, len(self.blocks) * WIDTH])

  def get_config(self):
    return dict(super().get_config(), blocks=self.blocks)


def build_tower(inputs) -> Dict[str, tf.Tensor]:
  """The tower's layers built on `inputs` ([b, s, s, 3] in [0, 1], s in IMAGE_SIZES), one pass, both kinds.

  Returns {EMBEDDING: [b, 512], CLASS_TOKENS: [b, 12, 768]}. Built on the
  tensor, like model._application, so the layers are the model's own (named
  clip_*); weights are unset until `load_weights`. A model with only the
  class tokens as output leaves out ln_post and the projection.
  """
  x = ClipEmbeddings(name=TOWER_INPUT_LAYER, trainable=False)(inputs)
  x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name='clip_ln_pre',
                                      trainable=False)(x)
  blocks = []
  for i in range(LAYERS):
    x = ClipEncoderBlock(name=f'clip_block{i}', trainable=False)(x)
    blocks.append(x)
  class_tokens = ClassTokens(name=CLASS_TOKENS_LAYER)(blocks)
  x = ClassToken(name='clip_class_token')(x)
  x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name='clip_ln_post',
                                      trainable=False)(x)
  embedding = keras.layers.Dense(EMBEDDING_SIZE, use_bias=False, name=EMBEDDING_LAYER,
                                 kernel_initializer='zeros', trainable=False)(x)
  return {EMBEDDING: embedding, CLASS_TOKENS: class_tokens}


def head_input(tower: Dict[str, tf.Tensor], kind: str, blocks: Sequence[int]) -> tf.Tensor:
  """What a head of `kind` reads from `build_tower`'s outputs: the embedding [b, 512], or the
  class tokens of `blocks` (1..12) flattened [b, len(blocks) * 768] (ClassTokenFeatures)."""
  if kind == EMBEDDING:
    return tower[EMBEDDING]
  return ClassTokenFeatures(blocks, name=CLASS_TOKEN_FEATURES_LAYER)(tower[CLASS_TOKENS])


def _dequantised(initializers: Dict[str, np.ndarray], weight: str) -> np.ndarray:
  """(q - zero_point) * scale per output column, float32 [in, out]."""
  base = weight[:-len('_quantized')]
  q = initializers[weight].astype(np.float32)
  zero_point = initializers[base + '_zero_point'].astype(np.float32)
  scale = initializers[base + '_scale'].astype(np.float32)
  return (q - zero_point) * scale


_MATMUL = re.compile(r'^/(?:vision_model/encoder/layers\.(\d+)/(self_attn/\w+_proj|mlp/fc[12])'
                     r'|(visual_projection))/MatMul_quant$')


def read_weights(path: Optional[str] = None) -> Dict[str, np.ndarray]:
  """The tower's float32 weights from the ONNX file, by Hugging Face parameter name.

  Quantised matrices come from each MatMulInteger node's weight input (its node
  name says which projection it is), dequantised, as [in, out] (Keras' Dense
  layout) under '<module>.weight_t'. `path` defaults to the checked package file.

  Raises:
    BackboneWeightsError: the file is missing or its sha256 is wrong (clip_weights).
    ValueError: the graph lacks a weight the tower needs (names the weight and the file).
  """
  path = clip_weights.checked(path or '')
  graph = onnx.load(path).graph
  initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
  weights = {k: v for k, v in initializers.items() if k.startswith('vision_model.')}
  for node in graph.node:
    match = _MATMUL.match(node.name) if node.op_type == 'MatMulInteger' else None
    if match:
      module = (f'vision_model.encoder.layers.{match.group(1)}.{match.group(2).replace("/", ".")}'
                if match.group(1) is not None else 'visual_projection')
      weights[f'{module}.weight_t'] = _dequantised(initializers, node.input[1])
  expected = 12 * 6 + 1
  found = sum(1 for k in weights if k.endswith('.weight_t'))
  if found != expected:
    raise ValueError(f'{path}: {found} quantised projection matrices, the ViT-B/16 tower has '
                     f'{expected}')
  return weights


def load_weights(model: keras.Model, weights: Dict[str, np.ndarray]) -> None:
  """Sets the tower layers of `model` (built by `build_tower`) from `read_weights`' dict.

  ln_post and the projection only where the model has them (a class-token
  head's model has not). The position embedding is resampled to the model's
  input size (`resample_position_embedding`; none at 224).
  """
  w = weights
  prefix = 'vision_model.'
  embeddings = model.get_layer(TOWER_INPUT_LAYER)
  side = grid_side(embeddings.input_shape[1], embeddings.input_shape[2])
  embeddings.set_weights([
      np.transpose(w[prefix + 'embeddings.patch_embedding.weight'], [2, 3, 1, 0]),  # OIHW -> HWIO
      w[prefix + 'embeddings.class_embedding'],
      resample_position_embedding(w[prefix + 'embeddings.position_embedding.weight'], side)])
  model.get_layer('clip_ln_pre').set_weights([w[prefix + 'pre_layrnorm.weight'],
                                              w[prefix + 'pre_layrnorm.bias']])
  for i in range(LAYERS):
    p = f'{prefix}encoder.layers.{i}.'
    block = model.get_layer(f'clip_block{i}')
    block.ln1.set_weights([w[p + 'layer_norm1.weight'], w[p + 'layer_norm1.bias']])
    block.ln2.set_weights([w[p + 'layer_norm2.weight'], w[p + 'layer_norm2.bias']])
    for layer, name in ((block.q, 'self_attn.q_proj'), (block.k, 'self_attn.k_proj'),
                        (block.v, 'self_attn.v_proj'), (block.out, 'self_attn.out_proj'),
                        (block.fc1, 'mlp.fc1'), (block.fc2, 'mlp.fc2')):
      layer.set_weights([w[p + name + '.weight_t'], w[p + name + '.bias']])
  names = {layer.name for layer in model.layers}
  if 'clip_ln_post' in names:
    model.get_layer('clip_ln_post').set_weights([w[prefix + 'post_layernorm.weight'],
                                                 w[prefix + 'post_layernorm.bias']])
  if EMBEDDING_LAYER in names:
    model.get_layer(EMBEDDING_LAYER).set_weights([w['visual_projection.weight_t']])


def build_encoder(weights: Optional[Dict[str, np.ndarray]] = None,
                  image_size: int = IMAGE_SIZE) -> keras.Model:
  """The tower alone as a float32 model: image [b, s, s, 3] in [0, 1] -> `build_tower`'s
  {EMBEDDING: [b, 512], CLASS_TOKENS: [b, 12, 768]}, from one pass; s = `image_size`.

  `weights` defaults to `read_weights()` (the checked package file).

  Raises:
    ValueError: `image_size` is not one of IMAGE_SIZES.
  """
  grid_side(image_size)
  with precision.policy('float32'):
    inputs = keras.Input((image_size, image_size, 3), name='image')
    encoder = keras.Model(inputs, build_tower(inputs), name=f'{NAME}_encoder')
  load_weights(encoder, weights if weights is not None else read_weights())
  return encoder


def block_outputs(graph) -> List[str]:
  """The names of the ONNX graph's tensors holding each block's output [b, 197, 768], blocks 0..11.

  The Hugging Face export's residual Add after each block's MLP (node
  '/vision_model/encoder/layers.<i>/Add_1'); the last one is also the graph's
  `last_hidden_state` output.
  """
  by_name = {node.name: node for node in graph.node}
  return [by_name[f'/vision_model/encoder/layers.{i}/Add_1'].output[0] for i in range(LAYERS)]


def float_reference_graph(path: Optional[str] = None, with_blocks: bool = False):
  """The ONNX graph with every quantised MatMul replaced by a float MatMul on the dequantised weight.

  Each DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(scale) chain becomes
  MatMul(float activation, W) with W = (q - zero_point) * scale: the tower's own
  arithmetic, run by onnxruntime, so it verifies the Keras layers and the weight
  mapping without the INT8 graph's activation quantisation. Returns an
  onnx.ModelProto with the same inputs and outputs, and with `with_blocks`
  each block's output (`block_outputs`) as an output too, whose token 0 is the
  reference for the tower's class tokens.
  """
  path = clip_weights.checked(path or '')
  model = onnx.load(path)
  graph = model.graph
  if with_blocks:
    tokens = (IMAGE_SIZE // PATCH)**2 + 1
    outputs = {o.name for o in graph.output}
    graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                      ['batch', tokens, WIDTH])
                        for name in block_outputs(graph) if name not in outputs)
  initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
  producer = {out: node for node in graph.node for out in node.output}
  consumers = {}
  for node in graph.node:
    for name in node.input:
      consumers.setdefault(name, []).append(node)
  replaced, new_nodes = set(), []
  for node in graph.node:
    if node.op_type != 'MatMulInteger':
      new_nodes.append(node)
      continue
    quantize = producer[node.input[0]]  # DynamicQuantizeLinear of the float activation
    (cast,) = consumers[node.output[0]]
    (rescale,) = consumers[cast.output[0]]
    weight_name = node.input[1][:-len('_quantized')] + '_dequantised'
    graph.initializer.append(numpy_helper.from_array(
        _dequantised(initializers, node.input[1]), weight_name))
    new_nodes.append(helper.make_node('MatMul', [quantize.input[0], weight_name], rescale.output,
                                      name=node.name.replace('_quant', '_float')))
    replaced.update({cast.name, rescale.name})
  new_nodes = [n for n in new_nodes if n.name not in replaced]
  # Drop what no longer feeds an output (the quantisers, their scale products).
  needed = {o.name for o in graph.output}
  kept = []
  for node in reversed(new_nodes):
    if any(out in needed for out in node.output):
      kept.append(node)
      needed.update(node.input)
  del graph.node[:]
  graph.node.extend(reversed(kept))
  used = {name for node in graph.node for name in node.input}
  keep_inits = [i for i in graph.initializer if i.name in used]
  del graph.initializer[:]
  graph.initializer.extend(keep_inits)
  onnx.checker.check_model(model)
  return model


def preprocess_like_clip(image) -> np.ndarray:
  """A PIL image -> [1, 3, 224, 224] float32 as CLIP's own preprocessing (the ONNX file's input).

  RGB, bicubic resize of the shortest side to 224, centre crop 224, CLIP mean/std,
  NCHW (openai/CLIP `_transform`, the package's documented preprocessing).
  """
  image = image.convert('RGB')
  scale = IMAGE_SIZE / min(image.size)
  size = (max(IMAGE_SIZE, round(image.width * scale)), max(IMAGE_SIZE, round(image.height * scale)))
  image = image.resize(size, Image.BICUBIC)
  left, top = (image.width - IMAGE_SIZE) // 2, (image.height - IMAGE_SIZE) // 2
  image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
  pixels = np.asarray(image, np.float32) / 255.0
  pixels = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
  return pixels.transpose(2, 0, 1)[None]
