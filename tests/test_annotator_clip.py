"""`annotator.features: clip_embedding`: the classifiers read the crops' CLIP embeddings, taken
through the embedding cache the Trainer reads.

The backbone is real (the package file, 86M parameters, float32); 22 demo crops
are embedded once (~0.3-1 s each on 2 cores), one of them broken.
"""

import csv
import pickle

import numpy as np
import pytest

from fakefaces.components.shared import features
from fakefaces.components.demographic_annotator import executor
from fakefaces.components.demographic_annotator.config import AnnotatorConfig
from fakefaces.components.image_encoder import clip_weights, embedding_cache
from fakefaces.pipeline.fixtures import demo_records

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini): the tower's load and 22 crops


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
  """24 demo crops; the fakes outside train lose their demographics (as GAN fakes come), and
  the first test fake's image is no image (it breaks its batch of the tower)."""
  root = tmp_path_factory.mktemp('annotator_clip')
  images, broken = {}, []

  def plant(split, example):
    fields = example.features.feature
    image_id = fields[features.IMAGE_ID].bytes_list.value[0].decode()
    if split != features.TRAIN and fields[features.LABEL].int64_list.value[0] == features.FAKE:
      for name in features.DEMOGRAPHIC_FEATURES:
        fields[name].bytes_list.value[:] = [b'unknown']
      if split == features.TEST and not broken:
        fields[features.IMAGE].bytes_list.value[:] = [b'not an image']
        broken.append(image_id)
    images[image_id] = fields[features.IMAGE].bytes_list.value[0]

  demo_records.write_edited(str(root / 'planted'), num_images=24, seed=7, edit=plant)
  cache = str(root / 'cache')
  config = AnnotatorConfig(features='clip_embedding', embedding_cache_dir=cache,
                           min_train_per_class=2, min_confidence_gender=0.5,
                           progress_interval_seconds=1e9)
  report = executor.run_standalone(str(root / 'planted'), str(root / 'out'), config)
  return root / 'out', report, images, cache, broken[0]


def test_the_report_names_the_features_and_their_dimension(annotated):
  out, report, _, cache, broken = annotated
  assert report['features'] == 'clip_embedding' and report['feature_dimension'] == 512
  assert 'CLIP ViT-B/16' in report['descriptor']
  # One face is no image: it alone is lost, the rest of its batch is embedded one by one.
  assert report['faces_described'] == 22
  assert [f['image_id'] for f in report['describe_failures']] == [broken]
  assert 'InvalidArgumentError' in report['describe_failures'][0]['reason']
  # A fresh cache: every other described crop was embedded once, none read back.
  assert report['embeddings_computed'] == 21 and report['embeddings_reused'] == 0
  assert report['embedding_cache'].startswith(cache)
  with open(out / 'annotations' / executor.CLASSIFIERS_FILE, 'rb') as f:
    gender = pickle.load(f)['classifiers']['gender']
  assert gender.n_features_in_ == 512


def test_proposals_are_the_classifiers_on_the_cached_embeddings(annotated):
  """What the annotator wrote is its gender classifier applied to the vectors in the Trainer's
  cache; a Trainer run over the same crops computes none of them again."""
  out, _, images, cache, broken = annotated
  with open(out / 'annotations' / executor.CLASSIFIERS_FILE, 'rb') as f:
    gender = pickle.load(f)['classifiers']['gender']
  with open(out / 'annotations' / executor.PREDICTIONS_FILE) as f:
    rows = {r['image_id']: r for r in csv.DictReader(f)}
  assert (rows[broken]['gender_source'], rows[broken]['gender_proposal']) == ('unknown', 'unknown')
  filled = [r for r in rows.values() if r['gender_source'] != features.HUMAN and
            r['image_id'] != broken]
  assert len(filled) == 3  # the other test and eval fakes

  def not_cached(batch):
    raise AssertionError(f'{len(batch)} crops were not in the cache the Trainer reads')

  vectors = embedding_cache.EmbeddingCache(cache, clip_weights.SHA256).embed(
      [images[r['image_id']] for r in filled], not_cached)
  assert vectors.shape == (3, 512)
  probabilities = gender.predict_proba(vectors)
  best = probabilities.argmax(1)
  assert [r['gender_proposal'] for r in filled] == [str(gender.classes_[i]) for i in best]
  np.testing.assert_allclose([float(r['gender_confidence']) for r in filled],
                             probabilities[np.arange(3), best], atol=1e-4)
