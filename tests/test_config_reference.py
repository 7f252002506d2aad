"""docs/configuration.md is what `make docs-config` writes, covers every key the shipped configs use,
and takes each meaning from the field's comment (pipeline/cli/config_reference.py)."""

import dataclasses
import glob
import os
from typing import Any, Iterator, List, Optional

import pytest
import yaml

from fakefaces.pipeline.cli import config_reference

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shipped configs; a file ending in `thresholds.yaml` is a thresholds file (`thresholds_file`).
SHIPPED_CONFIGS = sorted(glob.glob(os.path.join(PROJECT_ROOT, 'pipeline', 'configs', '*.yaml')) +
                         glob.glob(os.path.join(PROJECT_ROOT, 'kubeflow', 'configs', '*.yaml')))


def _doc() -> str:
  with open(os.path.join(PROJECT_ROOT, config_reference.DOC_PATH), encoding='utf-8') as f:
    return f.read()


def test_the_reference_is_what_the_generator_writes():
  assert _doc() == config_reference.reference(), (
      f'{config_reference.DOC_PATH} is out of date with the config dataclasses: run '
      f'`{config_reference.REFRESH_COMMAND}` (fakefaces config-reference --out '
      f'{config_reference.DOC_PATH}) and commit the result')


def _keys(value: Any, prefix: str = '') -> Iterator[str]:
  """The dotted keys of a loaded YAML mapping; a list of mappings as `key[].inner`."""
  for key, inner in value.items():
    dotted = f'{prefix}.{key}' if prefix else key
    yield dotted
    if isinstance(inner, dict):
      yield from _keys(inner, dotted)
    elif isinstance(inner, list):
      for item in inner:
        if isinstance(item, dict):
          yield from _keys(item, dotted + '[]')


def _used_keys(path: str) -> set:
  with open(path, encoding='utf-8') as f:
    return set(_keys(yaml.safe_load(f)))


def test_the_keys_checked_include_nested_sections_and_lists():
  demo = _used_keys(os.path.join(PROJECT_ROOT, 'pipeline', 'configs', 'demo.yaml'))
  assert {'ingest.face.align', 'ingest.sources[].kind', 'model_card.training_data_note'} <= demo
  thresholds = _used_keys(os.path.join(PROJECT_ROOT, 'pipeline', 'configs', 'thresholds.yaml'))
  assert {'min_auc', 'groupings[].feature', 'groupings[].reference'} <= thresholds


@pytest.mark.parametrize('path', SHIPPED_CONFIGS,
                         ids=[os.path.relpath(p, PROJECT_ROOT) for p in SHIPPED_CONFIGS])
def test_every_key_of_the_shipped_configs_is_in_the_reference(path):
  documented = config_reference.documented_keys(_doc())
  used = _used_keys(path)
  part = (config_reference.THRESHOLDS_PART if path.endswith('thresholds.yaml')
          else config_reference.PIPELINE_PART)
  missing = sorted(used - set(documented[part]))
  assert not missing, (f'{os.path.relpath(path, PROJECT_ROOT)} uses key(s) {missing} that '
                       f'{config_reference.DOC_PATH} ("{part}") does not list')


# The comment reader, on dataclasses of this file.
@dataclasses.dataclass
class _Commented:
  # A block directly above,
  # on two lines.
  above: int = 1
  after: str = 'x'  # a comment after it

  # A blank line ends a block: this one belongs to `both` alone.
  both: Optional[float] = None  # and its own
  spanning: List[str] = dataclasses.field(
      default_factory=list)  # after the last line of its statement


@dataclasses.dataclass
class _Uncommented:
  described: int = 0  # described
  bare: int = 0
  # An orphan comment, then a blank line.

  also_bare: str = ''


def test_meanings_join_the_block_above_and_the_comment_after():
  assert config_reference.field_meanings(_Commented) == {
      'above': 'A block directly above, on two lines.',
      'after': 'a comment after it',
      'both': 'A blank line ends a block: this one belongs to `both` alone. and its own',
      'spanning': 'after the last line of its statement',
  }


def test_a_field_without_a_comment_is_named_with_its_file_and_line():
  with pytest.raises(config_reference.MissingCommentError) as error:
    config_reference.field_meanings(_Uncommented)
  message = str(error.value)
  assert 'tests/test_config_reference.py' in message
  assert '_Uncommented.bare' in message and '_Uncommented.also_bare' in message
  assert '_Uncommented.described' not in message


def test_rows_give_type_default_and_nested_sections():
  sections = {name: rows for name, _, rows in config_reference.sections(
      config_reference.PipelineConfig)}
  assert list(sections)[:4] == ['', 'ingest', 'ingest.sources[]', 'ingest.face']
  rows = {row.key: row for rows in sections.values() for row in rows}
  kind = rows['ingest.sources[].kind']
  assert (kind.type, kind.default) == ('str', 'required')
  test_fraction = rows['ingest.sources[].test_fraction']
  assert (test_fraction.type, test_fraction.default) == ('float or null', '`null`')
  assert rows['ingest.sources'].type == 'list of mappings'
  assert rows['ingest.face'].default == '[its table](#ingestface)'
  # A default inside the project is shown relative to it, the same on every machine.
  assert rows['validation.schema_file'].default == "`'schema/schema.pbtxt'`"
  assert rows['beam_pipeline_args'].default == (
      "`['--direct_running_mode=in_memory', '--direct_num_workers=1']`")


def test_the_command_writes_the_reference(tmp_path, capsys):
  from fakefaces.pipeline.cli import cli  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'configuration.md'
  assert cli.main(['config-reference', '--out', str(out)]) == 0
  assert out.read_text(encoding='utf-8') == config_reference.reference()
  capsys.readouterr()
  assert cli.main(['config-reference']) == 0
  assert capsys.readouterr().out == config_reference.reference()
