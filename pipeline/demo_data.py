"""Generates the built-in demo dataset: synthetic face-like images, labelled.

This exists so that a fresh clone can run the whole pipeline without any
download. It exercises the pipeline; it says nothing about how well a model
detects real GAN faces.

Every image is a drawn face (skin ellipse, hair, eyes, brows, nose, mouth) whose
appearance depends on synthetic `gender`, `race` and `age` tags using the
FairFace vocabularies, so that every demographic slice of the evaluation is
populated. "Fake" images carry the fingerprint GAN generators leave: the face
is rendered at half resolution and upsampled 2x, and a fixed 2x2 periodic
pattern (the checkerboard of transposed-convolution upsampling) is multiplied
in. That puts energy at the Nyquist frequency that reals do not have, which is
what a CNN can learn. Both classes get the same noise, lighting and JPEG
encoding, so the fingerprint is the only systematic difference.

The output is a manifest-layout source: `<out>/manifest.csv` with
`path,label,gender,race,age,split` and the images under `<out>/images/`.
"""

import csv
import os
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fakefaces.components.shared import features
from fakefaces.components.face_preparation import images

IMAGE_SIZE = 128
FINGERPRINT_AMPLITUDE = 0.12
# A 2x2 tile: the period-2 modulation transposed convolutions leave behind.
_CHECKERBOARD = np.array([[1.0, -1.0], [-0.6, 0.6]], dtype=np.float32)

# Synthetic skin tones per race tag (RGB); only there to make slices differ visually.
_SKIN = {
    'White': (232, 200, 180),
    'Black': (110, 75, 55),
    'East Asian': (235, 205, 165),
    'Southeast Asian': (200, 160, 120),
    'Indian': (170, 120, 90),
    'Middle Eastern': (205, 165, 130),
    'Latino_Hispanic': (195, 150, 115),
}
_HAIR = [(30, 20, 15), (90, 60, 30), (200, 170, 100), (120, 120, 120), (60, 40, 30)]


def _demographics(index: int, rng: np.random.RandomState) -> Dict[str, str]:
  # Cycle through race x gender so every intersection is balanced; draw ages
  # with extra weight on the paper's judged buckets (0-2, 3-9, 70+).
  race = features.RACES[index % len(features.RACES)]
  gender = features.GENDERS[(index // len(features.RACES)) % len(features.GENDERS)]
  age_weights = np.array([2, 2, 1, 1, 1, 1, 1, 1, 2], dtype=np.float64)
  age = features.AGES[rng.choice(len(features.AGES), p=age_weights / age_weights.sum())]
  return {features.GENDER: gender, features.RACE: race, features.AGE: age}


def _draw_face(size: int, demo: Dict[str, str], rng: np.random.RandomState) -> Image.Image:
  """Draws one face at `size` x `size` pixels."""
  s = size / IMAGE_SIZE
  background = tuple(int(c) for c in rng.randint(40, 220, size=3))
  img = Image.new('RGB', (size, size), background)
  draw = ImageDraw.Draw(img)
  age_index = features.AGES.index(demo[features.AGE])
  child = age_index <= 1
  old = age_index >= 7
  cx = size / 2 + rng.uniform(-3, 3) * s
  cy = size / 2 + rng.uniform(-2, 4) * s
  half_w = (30 if child else 34) * s * rng.uniform(0.92, 1.08)
  half_h = (36 if child else 44) * s * rng.uniform(0.92, 1.08)
  skin = np.array(_SKIN[demo[features.RACE]]) * rng.uniform(0.9, 1.1)
  skin = tuple(int(c) for c in np.clip(skin, 0, 255))
  hair = _HAIR[rng.randint(len(_HAIR))] if not old else (190, 190, 190)
  long_hair = demo[features.GENDER] == 'Female'
  if long_hair:
    draw.rectangle([cx - half_w * 1.15, cy - half_h * 0.6, cx + half_w * 1.15, cy + half_h * 1.1],
                   fill=hair)
  draw.ellipse([cx - half_w * 1.1, cy - half_h * 1.15, cx + half_w * 1.1, cy + half_h * 0.3],
               fill=hair)
  draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=skin)
  eye_y = cy - half_h * 0.15
  eye_dx = half_w * 0.42
  eye_r = (5.5 if child else 4.5) * s
  for ex in (cx - eye_dx, cx + eye_dx):
    draw.ellipse([ex - eye_r * 1.6, eye_y - eye_r, ex + eye_r * 1.6, eye_y + eye_r],
                 fill=(245, 245, 245))
    draw.ellipse([ex - eye_r * 0.7, eye_y - eye_r * 0.7, ex + eye_r * 0.7, eye_y + eye_r * 0.7],
                 fill=(40, 30, 20))
    brow_y = eye_y - eye_r * 2.2
    draw.line([ex - eye_r * 1.8, brow_y, ex + eye_r * 1.8, brow_y - rng.uniform(-1, 1) * s],
              fill=hair, width=max(1, int(2 * s)))
  nose_y = cy + half_h * 0.2
  draw.line([cx, eye_y + eye_r, cx - 3 * s, nose_y, cx + 2 * s, nose_y],
            fill=tuple(int(c * 0.8) for c in skin), width=max(1, int(2 * s)))
  mouth_y = cy + half_h * 0.5
  mouth_w = half_w * rng.uniform(0.35, 0.5)
  draw.arc([cx - mouth_w, mouth_y - 6 * s, cx + mouth_w, mouth_y + 6 * s], 20, 160,
           fill=(150, 60, 60), width=max(1, int(2 * s)))
  if old:  # wrinkles
    for k in range(3):
      y = cy - half_h * (0.55 + 0.08 * k)
      draw.line([cx - half_w * 0.5, y, cx + half_w * 0.5, y],
                fill=tuple(int(c * 0.85) for c in skin), width=1)
  if demo[features.GENDER] == 'Male' and age_index >= 3 and rng.rand() < 0.4:  # beard
    draw.chord([cx - half_w, cy, cx + half_w, cy + half_h * 1.02], 0, 180, fill=hair)
    draw.arc([cx - mouth_w, mouth_y - 6 * s, cx + mouth_w, mouth_y + 6 * s], 20, 160,
             fill=(150, 60, 60), width=max(1, int(2 * s)))
  return img


def _finish(pixels: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
  """Lighting and sensor noise, applied identically to both classes."""
  gain = rng.uniform(0.85, 1.15)
  gradient = np.linspace(rng.uniform(-12, 0), rng.uniform(0, 12), pixels.shape[1])[None, :, None]
  noise = rng.normal(0, 3.0, size=pixels.shape)
  return np.clip(pixels * gain + gradient + noise, 0, 255)


def render_image(index: int, fake: bool, seed: int,
                 fingerprint_amplitude: float = FINGERPRINT_AMPLITUDE,
                 image_size: int = IMAGE_SIZE) -> Tuple[np.ndarray, Dict[str, str]]:
  """Returns (uint8 HxWx3 pixels, demographics) for image `index`; deterministic.

  Train at the generated size: downscaling by 2 averages the 2x2 fingerprint away.
  """
  if image_size % 2:
    raise ValueError(f'image_size must be even, got {image_size}')
  rng = np.random.RandomState((seed * 1_000_003 + index) % (2**32))
  demo = _demographics(index, rng)
  if fake:
    small = _draw_face(image_size // 2, demo, rng).filter(ImageFilter.GaussianBlur(0.4))
    pixels = np.asarray(small, dtype=np.float32).repeat(2, axis=0).repeat(2, axis=1)
    tile = np.tile(_CHECKERBOARD, (image_size // 2, image_size // 2))[:, :, None]
    pixels = pixels * (1.0 + fingerprint_amplitude * tile)
  else:
    pixels = np.asarray(_draw_face(image_size, demo, rng).filter(ImageFilter.GaussianBlur(0.6)),
                        dtype=np.float32)
  return _finish(pixels, rng).astype(np.uint8), demo


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
  """A demo image ([h, w, 3] uint8 pixels) as JPEG bytes."""
  return images.encode_jpeg(Image.fromarray(pixels), quality)


def _split_of(index: int, num_images: int, eval_fraction: float, test_fraction: float) -> str:
  # Interleaved rather than contiguous so every split sees every demographic.
  position = (index * 7919) % num_images / num_images
  if position < test_fraction:
    return features.TEST
  if position < test_fraction + eval_fraction:
    return features.EVAL
  return features.TRAIN


def iter_demo_rows(num_images: int, seed: int, eval_fraction: float, test_fraction: float,
                   image_size: int = IMAGE_SIZE) -> Iterator[Dict[str, object]]:
  """Yields one dict per image: id, label, demographics, split, JPEG bytes."""
  for index in range(num_images):
    fake = index % 2 == 1
    pixels, demo = render_image(index // 2, fake, seed, image_size=image_size)
    yield dict(
        image_id=f'demo-{index:05d}',
        label=features.LABEL_NAMES[features.FAKE if fake else features.REAL],
        split=_split_of(index // 2, max(1, num_images // 2), eval_fraction, test_fraction),
        jpeg=encode_jpeg(pixels),
        **demo)


def generate(out_dir: str, num_images: int = 1000, seed: int = 0,
             eval_fraction: float = 0.15, test_fraction: float = 0.3,
             image_size: int = IMAGE_SIZE) -> str:
  """Writes the demo dataset under `out_dir`; returns the manifest path.

  Reals and fakes come in pairs drawn from the same demographics and split, so
  each slice is balanced between the classes.
  """
  if num_images < 2:
    raise ValueError(f'num_images must be at least 2, got {num_images}')
  image_dir = os.path.join(out_dir, 'images')
  os.makedirs(image_dir, exist_ok=True)
  manifest = os.path.join(out_dir, 'manifest.csv')
  tmp_manifest = manifest + '.tmp'
  with open(tmp_manifest, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'label', 'gender', 'race', 'age', 'split'])
    for row in iter_demo_rows(num_images, seed, eval_fraction, test_fraction, image_size):
      rel_path = os.path.join('images', f"{row['image_id']}.jpg")
      with open(os.path.join(out_dir, rel_path), 'wb') as img_file:
        img_file.write(row['jpeg'])
      writer.writerow([rel_path, row['label'], row[features.GENDER], row[features.RACE],
                       row[features.AGE], row['split']])
  os.replace(tmp_manifest, manifest)  # a manifest only ever describes finished images
  return manifest


def nyquist_energy(pixels: np.ndarray) -> float:
  """Share of spectral energy at the 2-pixel period, where the fingerprint lives."""
  gray = np.asarray(pixels, dtype=np.float64)
  if gray.ndim == 3:
    gray = gray.mean(axis=2)
  spectrum = np.abs(np.fft.fft2(gray - gray.mean()))**2
  n = gray.shape[0] // 2
  peak = spectrum[n, :].sum() + spectrum[:, n].sum()
  return float(peak / max(spectrum.sum(), 1e-12))


def default_demo_dir(root: Optional[str] = None) -> str:
  return os.path.join(root or 'runs', 'demo_data')
