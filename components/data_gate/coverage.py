"""Slice coverage: does the evaluated split hold both classes for every judged group?

The fairness gate compares error rates between demographic groups on the split
the Evaluator scores. A group without fakes has no false-negative rate and a
group with three real photos has a meaningless false-positive rate, so before
training (and spending hours) the DataGate counts real and fake examples per
group and says which groups fall short and by how much.

Judged groups: the group and reference of every grouping the fairness gate
judges (the configured ones and, via `judge_each_value_of`, each value against
the rest; a `rest` reference is every other known value, summed as the
fairness gate sums it), plus every race value and every race x gender
intersection whatever the thresholds say.
"""

import collections
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from fakefaces.components.shared import features
from fakefaces.components.shared import groupings as groupings_lib
from fakefaces.components.shared.groupings import Group, GroupingConfig, split_cross  # noqa: F401  (Group re-exported)
from fakefaces.components.shared.thresholds import ThresholdsConfig

# (sorted ((feature, value), ...), label) -> number of examples
CoverageCounts = Mapping[Tuple[Tuple[Tuple[str, str], ...], int], int]


def judged_groups(groupings: Iterable[GroupingConfig]) -> List[Group]:
  """Every group the fairness gate will judge, without duplicates, in a stable order."""
  groups = [member for grouping in groupings for member in groupings_lib.groups_of(grouping)]
  groups += [Group((features.RACE,), (race,)) for race in features.RACES]
  groups += [Group((features.RACE, features.GENDER), (race, gender))
             for race in features.RACES for gender in features.GENDERS]
  return list(dict.fromkeys(groups))


def needed_features(thresholds: ThresholdsConfig) -> List[str]:
  """Every feature a judged group can be defined on."""
  crosses = [g.feature for g in thresholds.groupings] + list(thresholds.judge_each_value_of)
  return sorted(set(features.DEMOGRAPHIC_FEATURES).union(
      *(split_cross(cross) for cross in crosses)))


def thresholds_groups(thresholds: ThresholdsConfig, counts: CoverageCounts) -> List[Group]:
  """The groups the fairness gate will judge on data with these counts."""
  observed = groupings_lib.slice_keys_of((dict(demographics) for demographics, _ in counts),
                                         thresholds.judge_each_value_of)
  return judged_groups(groupings_lib.expand(thresholds.groupings,
                                            thresholds.judge_each_value_of, observed))


def count_examples(records: Iterable[Mapping[str, object]], feature_names: Sequence[str]
                   ) -> Dict[Tuple[Tuple[Tuple[str, str], ...], int], int]:
  """Counts examples by (demographics, label); records without a 0/1 label are skipped

  (ExampleValidator reports them; they cannot count toward either class).
  """
  counts = collections.Counter()
  for record in records:
    label = record.get(features.LABEL)
    if label not in (features.REAL, features.FAKE):
      continue
    demographics = tuple(
        (name, record[name].decode('utf-8', 'replace') if record.get(name) is not None
         else features.UNKNOWN) for name in feature_names)
    counts[(demographics, label)] += 1
  return dict(counts)


def check_coverage(counts: CoverageCounts, groups: Iterable[Group],
                   min_per_class: int) -> List[Dict[str, object]]:
  """One row per group: real and fake counts, and the shortfall of each class."""
  rows = []
  for group in groups:
    per_class = {features.REAL: 0, features.FAKE: 0}
    for (demographics, label), n in counts.items():
      if group.contains(dict(demographics)):
        per_class[label] += n
    real, fake = per_class[features.REAL], per_class[features.FAKE]
    rows.append({
        'group': group.name, 'real': real, 'fake': fake,
        'short_by': {'real': max(0, min_per_class - real), 'fake': max(0, min_per_class - fake)},
    })
  return rows


def is_short(row: Mapping[str, object]) -> bool:
  return any(row['short_by'].values())


def describe_short(row: Mapping[str, object]) -> str:
  """'race=Black: 3 fake (short by 7)' for the classes that fall short."""
  parts = [f"{row[name]} {name} (short by {row['short_by'][name]})"
           for name in ('real', 'fake') if row['short_by'][name]]
  return f"{row['group']}: {', '.join(parts)}"
