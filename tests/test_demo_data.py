"""The generated demo dataset: deterministic, fully labelled, with a real fingerprint."""

import csv
import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.pipeline import demo_data


def _rows(manifest):
  with open(manifest, newline='') as f:
    return list(csv.DictReader(f))


def _digest(directory):
  h = hashlib.sha256()
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      h.update(name.encode() + f.read())
  return h.hexdigest()


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
  a = demo_data.generate(str(tmp_path / 'a'), num_images=20, seed=5)
  b = demo_data.generate(str(tmp_path / 'b'), num_images=20, seed=5)
  demo_data.generate(str(tmp_path / 'c'), num_images=20, seed=6)
  assert _rows(a) == _rows(b)
  assert _digest(tmp_path / 'a' / 'images') == _digest(tmp_path / 'b' / 'images')
  assert _digest(tmp_path / 'a' / 'images') != _digest(tmp_path / 'c' / 'images')


def test_every_image_has_label_and_demographics_from_the_vocabularies(demo_dataset):
  rows = _rows(demo_dataset)
  assert len(rows) == 160
  base = os.path.dirname(demo_dataset)
  for row in rows:
    assert row['label'] in ('real', 'fake')
    assert row['gender'] in features.GENDERS
    assert row['race'] in features.RACES
    assert row['age'] in features.AGES
    assert row['split'] in features.SPLITS
    with Image.open(os.path.join(base, row['path'])) as image:
      assert image.size == (demo_data.IMAGE_SIZE, demo_data.IMAGE_SIZE)
  labels = [r['label'] for r in rows]
  assert labels.count('real') == labels.count('fake')
  # Every race x gender intersection and every split holds both classes.
  for split in features.SPLITS:
    assert {r['label'] for r in rows if r['split'] == split} == {'real', 'fake'}
  assert len({(r['race'], r['gender']) for r in rows}) == len(features.RACES) * len(features.GENDERS)


def test_fakes_carry_the_planted_fingerprint_after_jpeg(demo_dataset):
  base = os.path.dirname(demo_dataset)
  energy = {'real': [], 'fake': []}
  for row in _rows(demo_dataset)[:60]:
    with Image.open(os.path.join(base, row['path'])) as image:
      energy[row['label']].append(demo_data.nyquist_energy(np.asarray(image)))
  # Every fake has more energy at the 2-pixel period than every real.
  assert min(energy['fake']) > 5 * max(energy['real'])


def test_fingerprint_is_the_only_systematic_difference():
  # Without the fingerprint a fake is as smooth as a real: the pattern, not the
  # rendering, is what separates the classes.
  plain_fake, _ = demo_data.render_image(3, fake=True, seed=1, fingerprint_amplitude=0.0)
  real, _ = demo_data.render_image(3, fake=False, seed=1)
  assert demo_data.nyquist_energy(plain_fake) < 0.01
  assert demo_data.nyquist_energy(real) < 0.01


def test_rejects_too_few_images(tmp_path):
  with pytest.raises(ValueError, match='num_images'):
    demo_data.generate(str(tmp_path), num_images=1)


def test_jpeg_round_trip():
  pixels, _ = demo_data.render_image(0, fake=False, seed=0)
  decoded = np.asarray(Image.open(io.BytesIO(demo_data.encode_jpeg(pixels))))
  assert decoded.shape == pixels.shape
