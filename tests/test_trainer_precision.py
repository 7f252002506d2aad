"""`train.precision`: what `auto` picks where, and that mixed precision changes nothing clients see."""


import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fakefaces.components.shared.config_base import ConfigError, from_dict
from fakefaces.components.image_encoder import precision
from fakefaces.components.trainer import export, model, training
from fakefaces.components.shared.serving_contract import PROBABILITY_KEY, SERVING_SIGNATURE
from fakefaces.pipeline import demo_data
from fakefaces.pipeline.config import TrainConfig

IMAGE_SIZE = 32


def _cpuinfo(tmp_path, flags):
  path = tmp_path / 'cpuinfo'
  path.write_text(f'processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 avx2 {flags}\n\n')
  return str(path)


@pytest.mark.parametrize('flags, capability, expected', [
    ('avx512f', None, 'float32'),  # no bfloat16 instructions: emulated, slower
    ('avx512f avx512_bf16', None, 'mixed_bfloat16'),
    ('amx_tile amx_bf16', None, 'mixed_bfloat16'),
    ('avx512f', (8, 0), 'mixed_bfloat16'),  # Ampere and later have bfloat16
    ('avx512_bf16', (9, 0), 'mixed_bfloat16'),
    ('avx512_bf16', (7, 0), 'mixed_float16'),  # the GPU trains, and has float16 only
])
def test_auto_picks_bfloat16_only_where_the_hardware_has_it(tmp_path, flags, capability, expected):
  assert precision.resolve('auto', _cpuinfo(tmp_path, flags), capability) == expected


def test_explicit_values_are_kept_and_bad_ones_named(tmp_path):
  for name in ('float32', 'mixed_bfloat16', 'mixed_float16'):
    assert precision.resolve(name, _cpuinfo(tmp_path, ''), None) == name
  with pytest.raises(ConfigError, match="train.precision 'bf16' is not one of"):
    from_dict(TrainConfig, {'precision': 'bf16'}, 'train')
  assert precision.resolve('auto', str(tmp_path / 'absent'), None) == 'float32'


def test_bfloat16_training_exports_a_float32_model_with_the_same_signatures(tmp_path):
  jpegs = [demo_data.encode_jpeg(demo_data.render_image(i, fake=i % 2 == 1, seed=5)[0])
           for i in range(16)]
  labels = [i % 2 for i in range(16)]
  images = tf.stack([export.preprocess.decode_image(j, IMAGE_SIZE, 'grayscale') for j in jpegs])
  config = TrainConfig(architecture='baseline', image_size=IMAGE_SIZE, epochs=1, batch_size=8,
                       early_stopping_patience=0, precision='mixed_bfloat16')
  train_ds = tf.data.Dataset.from_tensor_slices((images, tf.constant(labels, tf.float32))).batch(8)
  trained, summary = training.train(config, train_ds, train_ds, {0: 8, 1: 8}, str(tmp_path / 'run'))
  assert summary['precision_policy'] == 'mixed_bfloat16'
  assert keras.mixed_precision.global_policy().name == 'float32'  # restored after training
  assert trained.get_layer('conv1').compute_dtype == 'bfloat16'
  assert trained.get_layer(model.OUTPUT_LAYER).compute_dtype == 'float32'

  export.export_saved_model(trained, str(tmp_path / 'mixed'), IMAGE_SIZE, 'grayscale')
  with precision.policy('float32'):
    reference = model.build_model('baseline', IMAGE_SIZE, 1)
  export.export_saved_model(reference, str(tmp_path / 'float32'), IMAGE_SIZE, 'grayscale')
  mixed = tf.saved_model.load(str(tmp_path / 'mixed'))
  plain = tf.saved_model.load(str(tmp_path / 'float32'))
  for name, signature in plain.signatures.items():
    other = mixed.signatures[name]
    assert other.structured_input_signature == signature.structured_input_signature, name
    assert ({k: v.dtype for k, v in other.structured_outputs.items()} ==
            {k: v.dtype for k, v in signature.structured_outputs.items()}), name
  # The exported graph computes in float32 with the trained weights: the float32
  # forward pass of the same weights, and within bfloat16 rounding of the training model.
  served = mixed.signatures[SERVING_SIGNATURE](image_bytes=tf.constant(jpegs))[PROBABILITY_KEY]
  copy = precision.float32_copy(trained)
  assert all(layer.compute_dtype == 'float32' for layer in copy.layers)
  np.testing.assert_allclose(served.numpy(), copy(images).numpy().reshape(-1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(served.numpy(), trained(images).numpy().reshape(-1), atol=0.05)
  assert not np.allclose(served.numpy(), reference(images).numpy().reshape(-1))  # trained weights
