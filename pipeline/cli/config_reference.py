"""docs/configuration.md from the config dataclasses: every key, its type, default and meaning.

The meaning of a field is its comment in the dataclass: the comment lines directly
above it (no blank line between) and the comment after it on its own line(s), read
with `tokenize`. Comments rather than `dataclasses.field(metadata=...)`: a one-line
field with a trailing comment stays one line, and a paragraph of reasons stays a
comment, not a concatenated string. A field without a comment is an error naming
its file and line, so a new key cannot reach the reference undescribed.

`fakefaces config-reference --out docs/configuration.md` (`make docs-config`)
rewrites the file; tests/test_config_reference.py fails when it differs.
"""

import ast
import dataclasses
import functools
import inspect
import io
import os
import re
import textwrap
import tokenize
import typing
from typing import Any, Dict, Iterator, List, Tuple

from fakefaces.components.shared.config_base import PROJECT_ROOT
from fakefaces.pipeline.config import PipelineConfig, ThresholdsConfig

DOC_PATH = 'docs/configuration.md'
REFRESH_COMMAND = 'make docs-config'  # or: fakefaces config-reference --out docs/configuration.md
PIPELINE_PART = 'The pipeline configuration'
THRESHOLDS_PART = 'The thresholds file'
# Markdown pipes inside a table cell end the cell unless escaped.
_PIPE = str.maketrans({'|': r'\|'})


class MissingCommentError(ValueError):
  """A config field has no comment to take its meaning from; names the file, line and field."""


@dataclasses.dataclass
class Row:
  """One line of a section's table."""
  key: str  # dotted, from the top of the file; `[]` marks a list of mappings
  type: str
  default: str
  meaning: str


@functools.lru_cache(maxsize=None)
def _comments(path: str) -> Tuple[Dict[int, str], Dict[int, str]]:
  """({line: comment} of lines holding only a comment, {line: comment} after code), 1-based."""
  own, trailing = {}, {}
  with open(path, encoding='utf-8') as f:
    source = f.read()
  lines = source.splitlines()
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      line, column = token.start
      text = token.string.lstrip('#').strip()
      (own if not lines[line - 1][:column].strip() else trailing)[line] = text
  return own, trailing


def field_meanings(cls) -> Dict[str, str]:
  """{field name: its comment, lines joined by spaces} of dataclass `cls`.

  Raises:
    MissingCommentError: naming the file, line and field of each field that has
      neither a comment block directly above it nor a comment after it.
  """
  path = inspect.getsourcefile(cls)
  lines, first = inspect.getsourcelines(cls)
  own, trailing = _comments(path)
  # Each field's statement, from its name to its last line (a default may span lines).
  (class_node,) = ast.parse(textwrap.dedent(''.join(lines))).body
  statements = {node.target.id: (first + node.lineno - 1, first + node.end_lineno - 1)
                for node in class_node.body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
  meanings, missing = {}, []
  for name in [f.name for f in dataclasses.fields(cls)]:
    start, end = statements[name]
    above, number = [], start - 1
    while number in own:
      above.insert(0, own[number])
      number -= 1
    after = [trailing[n] for n in range(start, end + 1) if n in trailing]
    meanings[name] = ' '.join(above + after).strip()
    if not meanings[name]:
      missing.append(f'{os.path.relpath(path, PROJECT_ROOT)}:{start}: {cls.__name__}.{name}')
  if missing:
    raise MissingCommentError(f'config field(s) without a comment: {"; ".join(missing)}; write one '
                              f'above or after each, saying what it sets ({DOC_PATH} is generated '
                              'from them)')
  return meanings


def _type_name(annotation: Any) -> str:
  origin = typing.get_origin(annotation)
  if origin is typing.Union:  # Optional[X]
    (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return f'{_type_name(inner)} or null'
  if origin in (list, List):
    (inner,) = typing.get_args(annotation)
    return 'list of mappings' if dataclasses.is_dataclass(inner) else f'list of {_type_name(inner)}'
  if dataclasses.is_dataclass(annotation):
    return 'mapping'
  return annotation.__name__


def _yaml(value: Any) -> str:
  """`value` as YAML writes it; paths inside the project relative to its root."""
  if value is None:
    return 'null'
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, str):
    if value.startswith(PROJECT_ROOT + os.sep):
      value = os.path.relpath(value, PROJECT_ROOT)
    return "'" + value.replace("'", "''") + "'"
  if isinstance(value, list):
    return '[' + ', '.join(_yaml(v) for v in value) + ']'
  return repr(value)


def _anchor(title: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')


def _default(field: dataclasses.Field, key: str) -> str:
  if field.default is not dataclasses.MISSING:
    return f'`{_yaml(field.default)}`'
  if field.default_factory is not dataclasses.MISSING:
    value = field.default_factory()
    if dataclasses.is_dataclass(value):
      return f'[its table](#{_anchor(key)})'
    return f'`{_yaml(value)}`'
  return 'required'


def sections(cls, prefix: str = '') -> Iterator[Tuple[str, Any, List[Row]]]:
  """(dotted name, dataclass, rows) of section `cls` and of every section nested in it, in order."""
  hints = typing.get_type_hints(cls)
  meanings = field_meanings(cls)
  rows, nested = [], []
  for field in dataclasses.fields(cls):
    key = f'{prefix}.{field.name}' if prefix else field.name
    annotation = hints[field.name]
    rows.append(Row(key, _type_name(annotation), _default(field, key), meanings[field.name]))
    if dataclasses.is_dataclass(annotation):
      nested.append((key, annotation))
    elif typing.get_origin(annotation) in (list, List):
      (inner,) = typing.get_args(annotation)
      if dataclasses.is_dataclass(inner):
        nested.append((key + '[]', inner))
  yield prefix, cls, rows
  for key, inner in nested:
    yield from sections(inner, key)


def _table(title: str, cls, rows: List[Row]) -> List[str]:
  path = os.path.relpath(inspect.getsourcefile(cls), PROJECT_ROOT)
  out = [f'### {title}', '', f'`{cls.__name__}` in `{path}`.', '',
         '| key | type | default | meaning |', '|---|---|---|---|']
  for row in rows:
    cells = (f'`{row.key}`', row.type, row.default, row.meaning)
    out.append('| ' + ' | '.join(cell.translate(_PIPE) for cell in cells) + ' |')
  return out + ['']


_INTRO = """\
# Configuration reference

Every key of the pipeline configuration (`fakefaces run --config FILE`) and of the thresholds file
it names (`thresholds_file`; `fakefaces gate --thresholds FILE`), with its type, default and
meaning. Generated from the config dataclasses and their comments by `make docs-config`
(`fakefaces config-reference --out docs/configuration.md`); `tests/test_config_reference.py`
fails when this file differs from what the code says. A key written `a.b` sits under `a:` in the
YAML; `a[].b` is a key of each mapping in the list `a`. Default paths inside the project are
shown relative to its root. Complete examples: `pipeline/configs/`.
"""


def reference() -> str:
  """The text of docs/configuration.md."""
  out = [_INTRO]
  for part, cls in ((PIPELINE_PART, PipelineConfig), (THRESHOLDS_PART, ThresholdsConfig)):
    out += [f'## {part}', '']
    for name, section_cls, rows in sections(cls):
      out += _table(f'`{name}`' if name else 'top level', section_cls, rows)
  return '\n'.join(out).rstrip('\n') + '\n'


def documented_keys(text: str) -> Dict[str, List[str]]:
  """{part heading: the dotted keys its tables list} of a reference's text."""
  keys: Dict[str, List[str]] = {}
  part = None
  for line in text.splitlines():
    if line.startswith('## '):
      part = line[3:].strip()
      keys[part] = []
    elif part and line.startswith('| `'):
      keys[part].append(line[3:line.index('`', 3)])
  return keys
