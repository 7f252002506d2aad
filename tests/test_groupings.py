"""The groupings contract shared by the DataGate (coverage) and the FairnessGate (metrics)."""

import pytest

from fakefaces.components.shared import features, groupings
from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.data_gate import coverage
from fakefaces.components.fairness_gate import fairness
from fakefaces.components.shared.groupings import Group, GroupingConfig


def test_split_cross_and_groups_of():
  assert groupings.split_cross('race x gender') == ('race', 'gender')
  group, reference = groupings.groups_of(
      GroupingConfig(name='g', feature='race x gender', group='Black x Female'))
  assert group == Group(('race', 'gender'), ('Black', 'Female'))
  assert reference == Group(('race', 'gender'), ('Black', 'Female'), rest=True)
  with pytest.raises(ConfigError, match="group 'Black' does not match feature"):
    groupings.groups_of(GroupingConfig(name='g', feature='race x gender', group='Black'))


def test_rest_never_counts_unknown():
  rest = Group(('race',), ('Black',), rest=True)
  assert rest.contains({'race': 'White'})
  assert not rest.contains({'race': 'Black'})
  assert not rest.contains({'race': features.UNKNOWN})
  assert not rest.contains({})


def test_expand_adds_vocabulary_and_observed_values_but_never_unknown():
  expanded = groupings.expand([], ['race'], [(('race', 'Martian'),), (('race', 'unknown'),)])
  groups = [g.group for g in expanded]
  assert groups[:len(features.RACES)] == list(features.RACES)
  assert 'Martian' in groups and features.UNKNOWN not in groups


def test_both_gates_put_the_same_examples_in_each_group():
  """Coverage counts examples per group; the fairness gate sums slices: they must agree."""
  rows = [{'race': r, 'gender': g} for r in ('Black', 'White', 'unknown') for g in ('Male', 'Female')]
  labels = [0, 1] * 3
  grouping = GroupingConfig(name='Black x Female vs rest', feature='race x gender',
                            group='Black x Female')
  records = [{features.LABEL: label, 'race': row['race'].encode(), 'gender': row['gender'].encode()}
             for row, label in zip(rows, labels)]
  counts = coverage.count_examples(records, ['race', 'gender'])
  by_coverage = {row['group']: (row['real'], row['fake']) for row in coverage.check_coverage(
      counts, coverage.judged_groups([grouping]), min_per_class=1)}

  slices = fairness.slices_from_predictions(
      labels, [0.0] * len(labels), {'race': [r['race'] for r in rows],
                                    'gender': [r['gender'] for r in rows]},
      decision_threshold=0.5, crosses=[('race', 'gender')])
  group, reference, _, _ = fairness.group_counts(slices, grouping)
  assert by_coverage['race x gender=Black x Female'] == (group.negatives, group.positives)
  assert by_coverage['race x gender: not Black x Female'] == (reference.negatives,
                                                             reference.positives)
  assert (reference.negatives, reference.positives) == (2, 1)  # unknown rows excluded
