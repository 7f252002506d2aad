"""Demographic groupings: the contract the DataGate and the FairnessGate share.

A grouping compares a `group` with a `reference` on one feature or a cross of
features ('race x gender', values joined the same way: 'Black x Female').
`reference: rest` means every other *known* value: examples without the
demographic ('unknown') never count as "the rest", so a grouping judges only
what is labelled.

The DataGate uses this module to count, before training, whether every judged
group holds both classes; the FairnessGate uses it to sum TFMA's per-slice
confusion counts into group and reference. One parser, one membership rule and
one expansion, so the two gates can never disagree on who is in a group.
"""

import dataclasses
import itertools
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, TypeVar

from fakefaces.components.shared import features
from fakefaces.components.shared.config_base import ConfigError

CROSS = ' x '
REST = 'rest'

# A slice as TFMA keys it: (('gender', 'Female'), ('race', 'Black')), sorted by feature.
SliceKey = Tuple[Tuple[str, str], ...]
_T = TypeVar('_T')


@dataclasses.dataclass
class GroupingConfig:
  """A fairness comparison: `group` against `reference` on one feature.

  Values are feature values; `reference: rest` means every other value. A
  `feature` such as 'race x gender' crosses features, values joined by ' x '.
  """
  name: str  # how reports and the gate's verdict name the comparison
  feature: str  # gender, race, age or source, or a cross of them ('race x gender')
  group: str  # the feature value(s) of the group judged ('Black x Female' for a cross)
  reference: str = REST  # the value(s) compared against; 'rest': every other known value


def split_cross(text: str) -> Tuple[str, ...]:
  """'race x gender' -> ('race', 'gender'); 'Black x Female' -> ('Black', 'Female')."""
  return tuple(part.strip() for part in text.split(CROSS))


@dataclasses.dataclass(frozen=True)
class Group:
  """Examples whose `feature_names` take `values` (or, with `rest`, any other known values)."""
  feature_names: Tuple[str, ...]
  values: Tuple[str, ...]
  rest: bool = False

  @property
  def name(self) -> str:
    feature, value = CROSS.join(self.feature_names), CROSS.join(self.values)
    return f'{feature}: not {value}' if self.rest else f'{feature}={value}'

  def contains(self, demographics: Mapping[str, str]) -> bool:
    observed = tuple(demographics.get(name, features.UNKNOWN) for name in self.feature_names)
    if self.rest:
      return observed != self.values and features.UNKNOWN not in observed
    return observed == self.values


def groups_of(grouping: GroupingConfig) -> Tuple[Group, Group]:
  """(group, reference) of a grouping; raises ConfigError when values do not match the feature."""
  names = split_cross(grouping.feature)
  members = []
  for role in ('group', 'reference'):
    text = getattr(grouping, role)
    if role == 'reference' and text == REST:
      members.append(Group(names, members[0].values, rest=True))
      continue
    values = split_cross(text)
    if len(values) != len(names):
      raise ConfigError(f'grouping {grouping.name!r}: {role} {text!r} does not match feature '
                        f'{grouping.feature!r} (join crossed values with {CROSS!r})')
    members.append(Group(names, values))
  return members[0], members[1]


def check_groupings(groupings: Sequence[GroupingConfig], judge_each_value_of: Sequence[str],
                    where: str) -> None:
  """Raises ConfigError naming the field for a grouping on unknown features or mismatched values."""
  known = set(features.DEMOGRAPHIC_FEATURES) | {features.SOURCE}
  for i, feature in enumerate(judge_each_value_of):
    unknown = [f for f in split_cross(feature) if f not in known]
    if unknown:
      raise ConfigError(f'{where}.judge_each_value_of[{i}]: {feature!r} names unknown '
                        f'feature(s) {unknown}; known: {sorted(known)} (cross with " x ")')
  for i, grouping in enumerate(groupings):
    names = split_cross(grouping.feature)
    unknown = [f for f in names if f not in known]
    if unknown:
      raise ConfigError(f'{where}.groupings[{i}].feature: {grouping.feature!r} names unknown '
                        f'feature(s) {unknown}; known: {sorted(known)}')
    for field in ('group', 'reference'):
      value = getattr(grouping, field)
      if field == 'reference' and value == REST:
        continue
      if len(split_cross(value)) != len(names):
        raise ConfigError(f'{where}.groupings[{i}].{field}: {value!r} needs one value per '
                          f'feature of {grouping.feature!r}, joined by " x "')


def _observed_values(slice_keys: Iterable[SliceKey], names: Tuple[str, ...]
                     ) -> List[Tuple[str, ...]]:
  wanted = set(names)
  return [tuple(dict(key)[n] for n in names) for key in slice_keys
          if {k for k, _ in key} == wanted]


def expand(groupings: Sequence[GroupingConfig], judge_each_value_of: Sequence[str],
           slice_keys: Iterable[SliceKey] = ()) -> List[GroupingConfig]:
  """The configured groupings plus one "<value> vs rest" per value of `judge_each_value_of`.

  Values come from the FairFace vocabularies (so a group missing from the data
  shows up as insufficient evidence rather than vanishing) plus any other
  value seen in `slice_keys`; 'unknown' is never a group.
  """
  slice_keys = list(slice_keys)
  expanded = list(groupings)
  seen = {(split_cross(g.feature), g.group, g.reference) for g in expanded}
  for feature in judge_each_value_of:
    names = split_cross(feature)
    vocab = [features.VOCABULARIES.get(n, ()) for n in names]
    values = list(itertools.product(*vocab)) if all(vocab) else []
    values += sorted(set(_observed_values(slice_keys, names)) - set(values))
    for value in values:
      if features.UNKNOWN in value:
        continue
      group = CROSS.join(value)
      if (names, group, REST) in seen:
        continue
      seen.add((names, group, REST))
      expanded.append(GroupingConfig(name=f'{group} vs rest', feature=CROSS.join(names),
                                     group=group, reference=REST))
  return expanded


def sum_members(slices: Mapping[SliceKey, _T], group: Group, zero: _T) -> _T:
  """Sums the values of the slices on exactly `group`'s features whose values are members."""
  key_set = set(group.feature_names)
  total = zero
  for key, value in slices.items():
    if {k for k, _ in key} == key_set and group.contains(dict(key)):
      total = total + value
  return total


def slice_keys_of(demographics: Iterable[Mapping[str, str]], crosses: Iterable[str]
                  ) -> Dict[SliceKey, None]:
  """The slice keys (as TFMA would key them) that `demographics` rows produce for `crosses`."""
  keys = {}
  crosses = [split_cross(cross) for cross in crosses]
  for row in demographics:
    for names in crosses:
      keys[tuple(sorted((name, row[name]) for name in names))] = None
  return keys
