"""Floating-point work of a Keras model, derived from its layers.

Counts multiply-adds as 2 FLOPs in Conv2D and Dense layers, which hold all but
a fraction of a percent of the arithmetic of the paper's CNNs (batch norm,
ReLU and pooling are a few element-wise operations per activation: VGG10 at
128x128 grayscale has 1.83 GFLOP of convolutions and dense layers per image
and about 0.01 GFLOP of those). A training step costs the forward pass plus
the backward pass, which computes two products per layer (the gradient of the
weights and of the layer's input) except for the first layer, whose input
gradient nobody needs: about 3x the forward FLOPs.
"""

from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras as keras


def layer_forward_flops(layer) -> int:
  if isinstance(layer, keras.layers.Conv2D):
    out_h, out_w, out_c = layer.output_shape[1:4]
    in_c = layer.input_shape[-1]
    k_h, k_w = layer.kernel_size
    return 2 * out_h * out_w * out_c * k_h * k_w * in_c // layer.groups
  if isinstance(layer, keras.layers.Dense):
    return 2 * int(np.prod(layer.input_shape[1:])) * layer.units
  return 0


def model_flops(model: keras.Model) -> Dict[str, int]:
  """{'forward': FLOPs per image forward, 'train_step': FLOPs per image of a training step}."""
  forward = backward = 0
  inputs = {id(t) for t in model.inputs}
  for layer in model.layers:
    flops = layer_forward_flops(layer)
    forward += flops
    takes_model_input = any(id(node_input) in inputs for node in layer.inbound_nodes
                            for node_input in tf.nest.flatten(node.input_tensors))
    backward += flops if takes_model_input else 2 * flops
  return {'forward': forward, 'train_step': forward + backward}


def model_size(model: keras.Model) -> Dict[str, float]:
  """Parameters and GFLOP per image (forward, training step), as reports and benches show them.

  Returns:
    {'parameters': int, 'forward_gflop_per_image': float,
    'train_step_gflop_per_image': float}, GFLOP rounded to 4 decimals.
  """
  cost = model_flops(model)
  return {'parameters': int(model.count_params()),
          'forward_gflop_per_image': round(cost['forward'] / 1e9, 4),
          'train_step_gflop_per_image': round(cost['train_step'] / 1e9, 4)}
