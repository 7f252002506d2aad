"""A source's own eval/test share (`ingest.sources[i].test_fraction`): checks, splits, caching.

The split shares are listed by the real ingestion code (`sources.list_inputs`) on a
planted manifest (listing reads no image), so they are exact and fast.
"""

import collections

import pytest

from fakefaces.components.face_example_gen import component, sources
from fakefaces.components.shared import component_keys as keys, features
from fakefaces.pipeline.config import IngestConfig, SourceConfig, load_config

N = 2000  # rows per planted source: the shares below are within ~0.03 of the fractions


def _manifest(tmp_path, name: str, label: str = 'fake', with_split: str = '') -> str:
  path = tmp_path / f'{name}.csv'
  lines = ['path,label,split'] + [f'images/{name}_{i}.jpg,{label},{with_split}' for i in range(N)]
  path.write_text('\n'.join(lines) + '\n')
  return str(path)


def _shares(records, source: str):
  counts = collections.Counter(r.split for r in records if r.source == source)
  return {split: counts[split] / N for split in (features.TRAIN, features.EVAL, features.TEST)}


def _yaml(tmp_path, source_line: str, extra: str = '') -> str:
  _manifest(tmp_path, 'sdfd')
  (tmp_path / 'data' / 'fairface').mkdir(parents=True)
  path = tmp_path / 'c.yaml'
  path.write_text('ingest:\n  sources:\n'
                  f'    - {{kind: fairface, path: {tmp_path}/data/fairface, role: audit}}\n'
                  f'    - {{kind: kaggle140k, path: {tmp_path}/data/k140, name: k140}}\n'
                  f'    - {{kind: folders, path: {tmp_path}/data/utk}}\n'
                  f'    - {source_line}\n' + extra)
  return str(path)


def test_a_source_test_fraction_sets_its_shares_and_no_other(tmp_path):
  sdfd, utk = _manifest(tmp_path, 'sdfd'), _manifest(tmp_path, 'utk', 'real')
  base = dict(eval_fraction=0.16, test_fraction=0.1)
  plain = sources.list_inputs(IngestConfig(
      sources=[SourceConfig('manifest', sdfd, name='sdfd'),
               SourceConfig('manifest', utk, name='utk')], **base))
  larger = sources.list_inputs(IngestConfig(
      sources=[SourceConfig('manifest', sdfd, name='sdfd', test_fraction=0.4),
               SourceConfig('manifest', utk, name='utk')], **base))
  shares = _shares(larger, 'sdfd')
  assert shares[features.TEST] == pytest.approx(0.4, abs=0.03)
  assert shares[features.EVAL] == pytest.approx(0.16, abs=0.03)  # the global eval_fraction
  assert _shares(plain, 'sdfd')[features.TEST] == pytest.approx(0.1, abs=0.03)
  # The other source is split exactly as before, image by image.
  assert ([r.split for r in plain if r.source == 'utk'] ==
          [r.split for r in larger if r.source == 'utk'])
  # Nested: every image in test at 0.1 is in test at 0.4; the extra test images left eval/train.
  before = {r.image_id: r.split for r in plain if r.source == 'sdfd'}
  after = {r.image_id: r.split for r in larger if r.source == 'sdfd'}
  assert all(after[i] == features.TEST for i, s in before.items() if s == features.TEST)
  assert all(before[i] == features.TRAIN for i, s in after.items() if s == features.TRAIN)


def test_a_source_eval_fraction_and_rows_with_their_own_split(tmp_path):
  own = _manifest(tmp_path, 'own', with_split='train')
  sdfd = _manifest(tmp_path, 'sdfd')
  records = sources.list_inputs(IngestConfig(sources=[
      SourceConfig('manifest', sdfd, name='sdfd', eval_fraction=0.3, test_fraction=0.2),
      SourceConfig('manifest', own, name='own', test_fraction=0.5)]))
  shares = _shares(records, 'sdfd')
  assert shares[features.EVAL] == pytest.approx(0.3, abs=0.03)
  assert shares[features.TEST] == pytest.approx(0.2, abs=0.03)
  assert _shares(records, 'own')[features.TRAIN] == 1.0  # a row's own split is kept


def test_configs_without_it_split_as_before(tmp_path):
  sdfd = _manifest(tmp_path, 'sdfd')
  config = IngestConfig(sources=[SourceConfig('manifest', sdfd, name='sdfd')],
                        eval_fraction=0.16)
  assert config.split_fractions(config.sources[0]) == (0.16, 0.1)
  assert ([r.split for r in sources.list_inputs(config)] ==
          [sources.hash_split(f'sdfd/images/sdfd_{i}', 0.16, 0.1) for i in range(N)])


@pytest.mark.parametrize('source_line, error', [
    ('{kind: manifest, path: %s/sdfd.csv, test_fraction: 1.2}',
     r'^ingest\.sources\[3\]\.test_fraction 1\.2 is not in \[0, 1\)$'),
    ('{kind: manifest, path: %s/sdfd.csv, eval_fraction: -0.1}',
     r'^ingest\.sources\[3\]\.eval_fraction -0\.1 is not in \[0, 1\)$'),
    ('{kind: manifest, path: %s/sdfd.csv, test_fraction: 0.9}',
     r'^ingest\.sources\[3\]\.test_fraction 0\.9: eval_fraction 0\.16 \+ test_fraction 0\.9 .*'
     'no room for train'),
    ('{kind: manifest, path: %s/sdfd.csv, role: audit, test_fraction: 0.4}',
     r'^ingest\.sources\[3\]\.test_fraction 0\.4 is set for a source with role: audit'),
    ('{kind: kaggle140k, path: %s/k140, test_fraction: 0.4}',
     r'^ingest\.sources\[3\]\.test_fraction 0\.4 is set for kind kaggle140k, whose inputs carry '
     'their own split'),
    ('{kind: fairface, path: %s/fairface, eval_fraction: 0.2}',
     r'^ingest\.sources\[3\]\.eval_fraction 0\.2 is set for kind fairface'),
])
def test_config_errors_name_the_field(tmp_path, source_line, error):
  path = _yaml(tmp_path, source_line % tmp_path, '  eval_fraction: 0.16\n')
  with pytest.raises(ValueError, match=error):
    load_config(path)


def test_a_changed_share_changes_what_the_ingestion_cache_keys_on(tmp_path):
  """TFX reuses an execution only for the same execution properties: the ingest config is one."""
  sdfd = _manifest(tmp_path, 'sdfd')
  properties = [
      component.FaceExampleGen(IngestConfig(sources=[
          SourceConfig('manifest', sdfd, name='sdfd', test_fraction=share)])).exec_properties[
              keys.INGEST_CONFIG_KEY] for share in (None, None, 0.4, 0.5)]
  assert properties[0] == properties[1]
  assert len(set(properties[1:])) == 3
