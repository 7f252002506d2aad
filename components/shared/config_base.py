"""The typed-config machinery every component's config uses.

Each component owns its config dataclass (`components/<name>/config.py`);
`pipeline/config.py` only assembles them into one pipeline config. This module
is what they share: YAML/JSON loading that rejects unknown keys and wrong types
with the dotted name of the field, so a typo fails loudly instead of silently
using a default.
"""

import dataclasses
import json
import os
import typing
from typing import Any, Dict, List

import yaml

# The project's files next to the packages: the curated schema (schema/).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SCHEMA = os.path.join(PROJECT_ROOT, 'schema', 'schema.pbtxt')


class ConfigError(ValueError):
  """A config file or value is invalid; the message names the field."""


class FieldError(ConfigError):
  """A config dataclass's own check (`__post_init__`) refused one of its fields.

  `field` is relative to the dataclass, so one check serves wherever the dataclass
  sits: `from_dict` re-raises it as a ConfigError with the dotted name
  from the top of the file (`ingest.face.detector`); raised elsewhere (a dataclass
  built directly, or read back from a SavedModel) it names `owner.field`.
  """

  def __init__(self, owner: str, field: str, problem: str):
    self.field, self.problem = field, problem
    super().__init__(f'{_dotted(owner, field)} {problem}')


def _dotted(where: str, key: str) -> str:
  return f'{where}.{key}' if where else key


def _coerce(value: Any, annotation: Any, where: str) -> Any:
  """Checks `value` against a dataclass field annotation, building nested dataclasses."""
  origin = typing.get_origin(annotation)
  if origin is typing.Union:  # Optional[X]
    if value is None:
      return None
    (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _coerce(value, inner, where)
  if origin in (list, List):
    if not isinstance(value, list):
      raise ConfigError(f'{where}: expected a list, got {value!r}')
    (inner,) = typing.get_args(annotation)
    return [_coerce(v, inner, f'{where}[{i}]') for i, v in enumerate(value)]
  if dataclasses.is_dataclass(annotation):
    if not isinstance(value, dict):
      raise ConfigError(f'{where}: expected a mapping, got {value!r}')
    return from_dict(annotation, value, where)
  if annotation is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if annotation in (int, float, str, bool):
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
      raise ConfigError(f'{where}: expected {annotation.__name__}, got {value!r}')
  return value


def from_dict(cls, data: Dict[str, Any], where: str = ''):
  """Builds dataclass `cls` from a mapping, naming any unknown, moved or mistyped key.

  A dataclass may list keys that moved elsewhere in a class attribute
  `MOVED_KEYS` (old key -> new dotted key, relative to it): an old config then
  fails with where the key went, instead of a bare "unknown key".
  """
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - names)
  moved_keys = getattr(cls, 'MOVED_KEYS', {})
  moved = [key for key in unknown if key in moved_keys]
  if moved:
    raise ConfigError('; '.join(f'{_dotted(where, key)} has moved to '
                                f'{_dotted(where, moved_keys[key])}' for key in moved) +
                      ': move the key(s) there')
  if unknown:
    raise ConfigError(f'{where or cls.__name__}: unknown key(s) {unknown}; '
                      f'known keys are {sorted(names)}')
  kwargs = {
      key: _coerce(value, hints[key], f'{where}.{key}' if where else key)
      for key, value in data.items()
  }
  try:
    return cls(**kwargs)
  except FieldError as e:
    raise ConfigError(f'{_dotted(where, e.field)} {e.problem}') from None


def to_json(config) -> str:
  """A config dataclass as the JSON string components take as an execution property."""
  return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(cls, text: str, where: str):
  """The inverse of `to_json`, with the same field-naming checks as YAML loading."""
  return from_dict(cls, json.loads(text), where)


def load_yaml(path: str, what: str = 'config file') -> Dict[str, Any]:
  """The mapping in the YAML file `path`; errors name it as `what` ('thresholds file', ...)."""
  try:
    with open(path, encoding='utf-8') as f:
      data = yaml.safe_load(f) or {}
  except OSError as e:
    raise ConfigError(f'cannot read {what} {path}: {e}') from e
  except yaml.YAMLError as e:
    raise ConfigError(f'{what} {path} is not valid YAML: {e}') from e
  if not isinstance(data, dict):
    raise ConfigError(f'{what} {path}: top level must be a mapping')
  return data
