"""`train.head_ensemble`: N CLIP heads merged exactly into one (backbone.merge_heads), and the
config's checks. Heads on random features, no tower: the end-to-end run through export and
serving is tests/test_clip_backbone.py's (`trained`, two mlp heads).
"""

import numpy as np
import pytest
import tf_keras as keras

from fakefaces.components.shared.config_base import ConfigError, from_dict
from fakefaces.components.image_encoder import clip
from fakefaces.components.trainer import backbone, fused
from fakefaces.components.trainer.config import TrainConfig

CLIP = dict(architecture='clip_vit_b16', image_size=224, color_mode='rgb')


def _members(head, n, x, dropout=0.0):
  """`n` heads of kind `head` at seeds 0..n-1, a few steps each on `x` [64, 16] (shared standardisation)."""
  labels = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.float32)
  heads = []
  for seed in range(n):
    config = TrainConfig(head=head, seed=seed, dropout=dropout, learning_rate=1e-2, **CLIP)
    keras.utils.set_random_seed(seed)
    member = backbone.build_head(config, x)
    member.fit(x, labels, batch_size=16, epochs=2, verbose=0)
    heads.append(member)
  return heads


def _logits(head, x):
  """The head's fake logit [n]: its output layer without the sigmoid (fused.logit_model)."""
  return fused.logit_model(head, 'h')(x, training=False).numpy().reshape(-1)


@pytest.mark.parametrize('head,dropout', [('linear', 0.0), ('mlp', 0.0), ('mlp', 0.3)])
def test_the_merged_head_is_the_sigmoid_of_the_members_mean_logit(head, dropout):
  x = np.random.RandomState(0).randn(64, 16).astype(np.float32) * 3 + 1
  members = _members(head, 3, x, dropout)
  merged = backbone.merge_heads(members)
  expected = 1 / (1 + np.exp(-np.mean([_logits(m, x) for m in members], 0)))
  served = merged(x, training=False).numpy().reshape(-1)
  np.testing.assert_allclose(served, expected, atol=1e-5)
  # The members differ, so the mean is not any one of them.
  assert np.abs(served - members[0](x, training=False).numpy().reshape(-1)).max() > 1e-3
  assert [l.name for l in merged.layers] == [l.name for l in members[0].layers]
  if head == 'mlp':
    assert merged.get_layer(backbone.HIDDEN_LAYER).units == 3 * clip.MLP_HEAD_UNITS


def test_one_head_is_its_own_merge():
  x = np.random.RandomState(1).randn(32, 16).astype(np.float32)
  member, = _members('mlp', 1, x)
  assert backbone.merge_heads([member]) is member


def test_members_standardised_on_different_embeddings_are_refused():
  x = np.random.RandomState(2).randn(32, 16).astype(np.float32)
  config = TrainConfig(head='mlp', **CLIP)
  with pytest.raises(ValueError, match='member 1.s head_standardize differs'):
    backbone.merge_heads([backbone.build_head(config, x), backbone.build_head(config, x + 1)])
  with pytest.raises(ValueError, match='member 1 has layers'):
    backbone.merge_heads([backbone.build_head(config, x),
                          backbone.build_head(TrainConfig(head='linear', **CLIP), x)])


@pytest.mark.parametrize('value,problem', [
    (0, 'must be an integer >= 1'), ('5', 'expected int|must be an integer'),
    (True, 'must be an integer|expected int')])
def test_a_bad_head_ensemble_is_named(value, problem):
  with pytest.raises(ConfigError, match=rf'^train\.head_ensemble.*({problem})'):
    from_dict(TrainConfig, dict(CLIP, head_ensemble=value), 'train')


def test_head_ensemble_is_refused_for_a_cnn_and_one_head_is_the_default():
  with pytest.raises(ConfigError, match=r'^train\.head_ensemble applies to a head on a backbone'):
    from_dict(TrainConfig, {'architecture': 'vgg10', 'head_ensemble': 2}, 'train')
  assert TrainConfig().head_ensemble == 1 and from_dict(TrainConfig, CLIP, 'train').head_ensemble == 1
  assert from_dict(TrainConfig, dict(CLIP, head_ensemble=5), 'train').head_ensemble == 5
  fused_config = dict(architecture='fused', image_size=224, color_mode='rgb', head_ensemble=2)
  assert from_dict(TrainConfig, fused_config, 'train').head_ensemble == 2
