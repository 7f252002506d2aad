"""The typed config: defaults, YAML loading, and errors that name the field."""

import pytest

from fakefaces.pipeline import config as config_lib


def _write(tmp_path, text):
  path = tmp_path / 'config.yaml'
  path.write_text(text)
  return str(path)


def test_shipped_configs_load():
  config = config_lib.load_config('pipeline/configs/demo.yaml')
  assert config.ingest.sources[0].kind == 'manifest'
  assert config.train.architecture == 'vgg10'
  for path in (config_lib.DEFAULT_THRESHOLDS, config.thresholds_file):
    thresholds = config_lib.load_thresholds(path)
    names = {g.name for g in thresholds.groupings}
    assert {'Male vs Female', 'White vs rest', 'Black vs rest', 'age 0-2 vs rest',
            'age 3-9 vs rest', 'age 70+ vs rest'} <= names


def test_unknown_key_is_named(tmp_path):
  with pytest.raises(config_lib.ConfigError, match=r"train: unknown key\(s\) \['epoch'\]"):
    config_lib.load_config(_write(tmp_path, 'train: {epoch: 3}\n'))


def test_wrong_type_is_named(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='train.batch_size: expected int'):
    config_lib.load_config(_write(tmp_path, 'train: {batch_size: "32"}\n'))
  with pytest.raises(config_lib.ConfigError, match=r'ingest.sources\[0\]: expected a mapping'):
    config_lib.load_config(_write(tmp_path, 'ingest: {sources: [oops]}\n'))


def test_invalid_yaml_and_missing_file_are_clear(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='not valid YAML'):
    config_lib.load_config(_write(tmp_path, 'train: [\n'))
  with pytest.raises(config_lib.ConfigError, match='cannot read config file'):
    config_lib.load_config(str(tmp_path / 'missing.yaml'))
  # The thresholds file is named as what it is (`fakefaces gate --thresholds`).
  with pytest.raises(config_lib.ConfigError, match='cannot read thresholds file .*missing_bounds.yaml'):
    config_lib.load_thresholds(str(tmp_path / 'missing_bounds.yaml'))
  with pytest.raises(config_lib.ConfigError, match='thresholds file .* is not valid YAML'):
    config_lib.load_thresholds(_write(tmp_path, 'max_fpr_gap: [\n'))


def test_relative_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = config_lib.load_config(_write(
      tmp_path, 'pipeline_root: gs://bucket/root\nserving_model_dir: out/models\n'))
  assert config.pipeline_root == 'gs://bucket/root'
  assert config.serving_model_dir == str(tmp_path / 'out' / 'models')


def test_canary_and_baseline_config_errors_name_the_field():
  from fakefaces.components.fairness_gate import baseline  # pylint: disable=g-import-not-at-top
  from fakefaces.components.serving_canary import config as canary_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(config_lib.ConfigError, match=r'canary\.server must be one of'):
    canary_config.validate(canary_config.CanaryConfig(server='docker'))
  with pytest.raises(config_lib.ConfigError, match=r'thresholds\.baseline\.max_gap_growth'):
    baseline.validate(config_lib.from_dict(
        config_lib.ThresholdsConfig, {'baseline': {'max_gap_growth': -1.0}}).baseline)
  with pytest.raises(config_lib.ConfigError, match=r"baseline: unknown key\(s\) \['max_drop'\]"):
    config_lib.from_dict(config_lib.ThresholdsConfig, {'baseline': {'max_drop': 0.1}})


def test_face_preparation_sits_under_ingest_face_and_its_errors_name_that_field(tmp_path):
  config = config_lib.load_config(_write(
      tmp_path, 'ingest:\n  face: {align: none, output_size: 64}\n  limit_per_source: 3\n'))
  assert config.ingest.face == config_lib.FacePreparation(align='none', output_size=64)
  assert config.ingest.limit_per_source == 3
  with pytest.raises(config_lib.ConfigError, match=r'^ingest\.face\.output_size 4 is too small'):
    config_lib.load_config(_write(tmp_path, 'ingest: {face: {output_size: 4}}\n'))
  with pytest.raises(config_lib.ConfigError, match=r'^ingest\.face\.crop_fraction 0.1 is not in'):
    config_lib.load_config(_write(tmp_path, 'ingest: {face: {crop_fraction: 0.1}}\n'))
  with pytest.raises(config_lib.ConfigError, match=r"ingest\.face: unknown key\(s\) \['dector'\]"):
    config_lib.load_config(_write(tmp_path, 'ingest: {face: {dector: hog}}\n'))
  # Built outside a config (as read back from a SavedModel), the same check names the class.
  with pytest.raises(config_lib.ConfigError, match=r'^face_preparation\.output_size 4 is too small'):
    config_lib.FacePreparation(output_size=4)


def test_a_face_key_left_directly_under_ingest_says_where_it_moved(tmp_path):
  with pytest.raises(config_lib.ConfigError,
                     match=r'ingest\.align has moved to ingest\.face\.align; ingest\.output_size '
                     r'has moved to ingest\.face\.output_size'):
    config_lib.load_config(_write(tmp_path, 'ingest: {align: none, output_size: 128}\n'))


def test_the_clip_generalisation_config_loads_with_its_training_and_audit_sources(monkeypatch):
  """pipeline/configs/shared_data_clip.yaml (docs/detection_quality.md): the CLIP head on three
  generators, UTKFace trained on, FairFace audited, SDFD's demographics prompted."""
  monkeypatch.chdir(config_lib.PROJECT_ROOT)  # its paths are relative to the repository root
  config = config_lib.load_config('pipeline/configs/shared_data_clip.yaml')
  assert (config.train.architecture, config.train.head) == ('clip_vit_b16', 'mlp')
  # The ensemble that won its confirmatory rule (docs/detection_quality.md).
  assert config.train.head_ensemble == 5
  by_name = {s.name or s.kind: s for s in config.ingest.sources}
  assert {k: s.role for k, s in by_name.items()} == {
      'fairface': 'audit', 'gan_faces': 'train', 'k140': 'train', 'sdfd': 'train',
      'utkface': 'train'}
  assert by_name['sdfd'].demographics == 'prompted'
  # Its own shares: the gate's labelled test fakes (docs/detection_quality.md, "SDFD's test share").
  assert config.ingest.split_fractions(by_name['sdfd']) == (0.07, 0.6)
  assert by_name['gan_faces'].align == by_name['k140'].align == 'none'
  # The shared JPEG generation that matches SDFD's processing to the reals' (DataGate).
  assert config.ingest.face.shared_jpeg_quality == 88
