"""`fakefaces label` driven through stdin, and its CSV read back as a manifest source."""

import csv
import os
import subprocess
import sys

from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_example_gen import sources
from fakefaces.pipeline.config import IngestConfig, SourceConfig

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = (['image_id', 'split', 'label', 'demographics_source'] +
           [f'{a}_{k}' for a in features.DEMOGRAPHIC_FEATURES
            for k in ('value', 'source', 'proposal', 'confidence')])


def _setup(tmp_path):
  data = tmp_path / 'faces'
  for label in ('real', 'fake'):
    os.makedirs(data / label)
  for i in range(3):
    Image.new('RGB', (32, 32), (40 * i, 90, 200)).save(data / 'fake' / f'f{i}.jpg')
  Image.new('RGB', (32, 32)).save(data / 'real' / 'r0.jpg')
  config = IngestConfig(sources=[SourceConfig(kind='folders', path=str(data), name='gan')])
  records = sorted(sources.list_inputs(config), key=lambda r: r.image_id)
  rows = []
  for r in records:
    human = r.label == features.REAL  # pretend the real photo came with human labels
    row = {'image_id': r.image_id, 'split': r.split, 'label': r.label,
           'demographics_source': 'human' if human else 'predicted'}
    proposals = {'gender': ('Female', '0.9100', 'predicted'), 'race': ('Black', '0.6200', 'predicted'),
                 'age': ('20-29', '0.3000', 'unknown')}
    for attribute, (value, confidence, source) in proposals.items():
      row.update({f'{attribute}_value': value if source == 'predicted' else 'unknown',
                  f'{attribute}_source': 'human' if human else source,
                  f'{attribute}_proposal': value, f'{attribute}_confidence': confidence})
    rows.append(row)
  annotations = tmp_path / 'annotations' / '7'
  os.makedirs(annotations)
  with open(annotations / 'predictions.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  config_path = tmp_path / 'config.yaml'
  config_path.write_text(f'ingest:\n  sources:\n    - {{kind: folders, path: {data}, name: gan}}\n')
  return data, config, config_path, tmp_path / 'annotations'


def _label(config_path, annotations, out, answers):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
  return subprocess.run(
      [sys.executable, '-m', 'fakefaces.pipeline.cli', 'label', '--config', str(config_path),
       '--annotations', str(annotations), '--out', str(out), '--split', 'all'],
      input=answers, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)


def test_label_prompts_from_the_proposal_and_the_csv_relabels_as_a_manifest(tmp_path):
  data, config, config_path, annotations = _setup(tmp_path)
  out = tmp_path / 'labels.csv'
  # Face 1: accept every proposal (age proposal 20-29 below threshold, accepted by a person).
  # Face 2: gender '1' (Male), race typed 'indian', age 'u'. Face 3: skip. Then EOF.
  answers = '\n\n\n' + '1\nindian\nu\n' + 's\n'
  result = _label(config_path, annotations, out, answers)
  assert result.returncode == 0, result.stderr
  assert '3 faces to label' in result.stdout  # the human-labelled real photo is not asked
  assert '[Female 0.9100]' in result.stdout  # the annotator's proposal is shown
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert [(r['gender'], r['race'], r['age'], r['label']) for r in rows] == [
      ('Female', 'Black', '20-29', 'fake'), ('Male', 'Indian', 'unknown', 'fake')]
  # Resuming asks only for the face not labelled yet.
  again = _label(config_path, annotations, out, 'q\n')
  assert '1 faces to label (2 already' in again.stdout
  # Read back as a manifest source: it relabels the same images, adds no input.
  with_labels = IngestConfig(sources=config.sources + [
      SourceConfig(kind='manifest', path=str(out), name='labels')])
  before = {r.image_id: r for r in sources.list_inputs(config)}
  after = {r.image_id: r for r in sources.list_inputs(with_labels)}
  assert set(after) == set(before) and not any(r.problem for r in after.values())
  first, second = rows
  assert (after[first['image_id']].gender, after[first['image_id']].race,
          after[first['image_id']].age) == ('Female', 'Black', '20-29')
  assert after[second['image_id']].race == 'Indian'
  assert after[second['image_id']].age == features.UNKNOWN
  assert after[second['image_id']].split == before[second['image_id']].split
  # Listed first, the manifest relabels just the same.
  reversed_order = IngestConfig(sources=list(reversed(with_labels.sources)))
  assert {r.image_id: r.race for r in sources.list_inputs(reversed_order)} == {
      k: r.race for k, r in after.items()}
