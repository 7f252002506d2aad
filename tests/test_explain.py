"""The `explain` signature's Grad-CAM heatmap points at what made the model say "fake".

A small model learns a planted artefact: "fake" images carry a checkerboard
patch (a transposed-convolution trace) somewhere on a smooth background. The
exported SavedModel's `explain` signature must put the heat on the patch.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.trainer import export, model as model_lib

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

SIZE = 64
PATCH = 12


def _images(count, seed):
  """(encoded PNGs, labels, patch corners) of smooth backgrounds; odd ones carry a patch."""
  rng = np.random.default_rng(seed)
  encoded, labels, corners = [], [], []
  for i in range(count):
    coarse = rng.uniform(60, 190, (4, 4)).astype(np.float32)
    background = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC))
    pixels = np.clip(background + rng.normal(0, 3, (SIZE, SIZE)), 0, 255)
    corner = None
    if i % 2:
      y, x = rng.integers(2, SIZE - PATCH - 2, size=2)
      checker = (np.indices((PATCH, PATCH)).sum(axis=0) % 2) * 80.0 - 40.0
      pixels[y:y + PATCH, x:x + PATCH] = np.clip(pixels[y:y + PATCH, x:x + PATCH] + checker, 0, 255)
      corner = (int(y), int(x))
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(pixels)).save(buffer, 'PNG')
    encoded.append(buffer.getvalue())
    labels.append(i % 2)
    corners.append(corner)
  return encoded, np.array(labels, np.float32), corners


@pytest.fixture(scope='module')
def explained(tmp_path_factory):
  tf.keras.utils.set_random_seed(1)
  train_bytes, train_labels, _ = _images(600, seed=0)
  keras_model = model_lib.build_model('baseline', SIZE, 1, seed=1)
  from fakefaces.components.image_encoder import preprocess  # pylint: disable=import-outside-toplevel
  train_images = preprocess.decode_batch(tf.constant(train_bytes), SIZE, 'grayscale')
  keras_model.fit(train_images, train_labels, epochs=6, batch_size=32, verbose=0, shuffle=True)
  export_dir = str(tmp_path_factory.mktemp('explain') / 'model')
  export.export_saved_model(keras_model, export_dir, SIZE, 'grayscale')
  test_bytes, test_labels, corners = _images(40, seed=99)
  signatures = tf.saved_model.load(export_dir).signatures
  inputs = {contract.IMAGE_BYTES_INPUT: tf.constant(test_bytes)}
  outputs = signatures[contract.EXPLAIN_SIGNATURE](**inputs)
  served = signatures[contract.SERVING_SIGNATURE](**inputs)[contract.PROBABILITY_KEY].numpy()
  return {k: v.numpy() for k, v in outputs.items()}, test_labels, corners, served


def test_explain_outputs_follow_the_contract(explained):
  outputs, labels, _, served = explained
  assert set(outputs) == set(contract.SIGNATURES[contract.EXPLAIN_SIGNATURE].outputs)
  heatmaps = outputs[contract.HEATMAP_KEY]
  assert heatmaps.shape == (len(labels), SIZE, SIZE)
  assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
  # The explained probabilities are serving_default's (same loaded SavedModel, same bytes).
  np.testing.assert_allclose(outputs[contract.PROBABILITY_KEY], served, atol=1e-5)


def test_heatmap_highlights_the_planted_artefact(explained):
  outputs, labels, corners, _ = explained
  probabilities = outputs[contract.PROBABILITY_KEY]
  accuracy = np.mean((probabilities >= 0.5) == (labels == 1))
  assert accuracy >= 0.9, f'the model did not learn the artefact (accuracy {accuracy:.2f})'
  hits, ratios = 0, []
  fakes = [i for i, c in enumerate(corners) if c is not None]
  for i in fakes:
    heat = outputs[contract.HEATMAP_KEY][i]
    y, x = corners[i]
    inside = np.zeros_like(heat, dtype=bool)
    inside[max(0, y - 4):y + PATCH + 4, max(0, x - 4):x + PATCH + 4] = True
    ratios.append(heat[inside].mean() / max(heat[~inside].mean(), 1e-6))
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    hits += bool(inside[peak])
  assert hits >= 0.8 * len(fakes), f'peak on the patch in {hits}/{len(fakes)}; ratios {ratios}'
  assert np.median(ratios) > 3, ratios


def test_page_map_is_faint_on_confident_reals_and_strong_on_planted_fakes(explained):
  """What the page draws: the map scaled by P(fake) (serving/photos.py `evidence_map`)."""
  from fakefaces.serving import photos, web  # pylint: disable=import-outside-toplevel
  outputs, labels, corners, _ = explained
  probabilities, heatmaps = outputs[contract.PROBABILITY_KEY], outputs[contract.HEATMAP_KEY]
  test_bytes, _, _ = _images(40, seed=99)
  reals = [i for i in range(len(labels)) if labels[i] == 0 and probabilities[i] < 0.05]
  fakes = [i for i in range(len(labels)) if labels[i] == 1 and probabilities[i] > 0.9]
  assert len(reals) >= 5 and len(fakes) >= 5, (len(reals), len(fakes))

  def tint(i, evidence):  # mean change the overlay makes to the crop, in grey levels
    crop = Image.open(io.BytesIO(test_bytes[i]))
    plain = np.asarray(web.heatmap_overlay(crop, np.zeros_like(evidence)), dtype=np.float32)
    shown = np.asarray(web.heatmap_overlay(crop, evidence), dtype=np.float32)
    return np.abs(shown - plain).max()

  for i in reals:
    evidence = photos.evidence_map(heatmaps[i], probabilities[i])
    assert evidence.max() < 0.05, (i, probabilities[i], evidence.max())
    assert tint(i, evidence) < 0.05 * 255 * web._MAX_ALPHA + 1  # pylint: disable=protected-access
  on_patch = 0
  for i in fakes:
    evidence = photos.evidence_map(heatmaps[i], probabilities[i])
    assert evidence.max() > 0.9 * probabilities[i] > 0.8
    assert tint(i, evidence) > 60
    y, x = corners[i]
    peak = np.unravel_index(np.argmax(evidence), evidence.shape)
    on_patch += y - 4 <= peak[0] < y + PATCH + 4 and x - 4 <= peak[1] < x + PATCH + 4
  assert on_patch >= 0.8 * len(fakes), (on_patch, len(fakes))
