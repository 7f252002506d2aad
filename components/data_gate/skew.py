"""Split skew: how far each split's demographic mix is from the training split's.

The distance is TFDV's `infinity_norm` comparator: the largest absolute
difference, over feature values, between the two splits' value fractions. It is
computed here from StatisticsGen's per-split value counts (rather than by
re-running tfdv.validate_statistics with a comparator schema) so that the
report can also give the sampling noise of each difference: with a few hundred
examples per split, fractions of 10-20% wander by several points on their own,
and a gate that stops the demo on noise would be ignored. A difference is skew
when it exceeds `max_linf` AND `noise_z` standard errors of the difference of
two proportions.
"""

import math
from typing import Dict, List, Mapping, Sequence

from tensorflow_metadata.proto.v0 import statistics_pb2

# The TFDV anomaly kind for the same condition, so one allow-list names both.
SKEW_KIND = 'COMPARATOR_L_INFTY_HIGH'


def value_counts(stats: statistics_pb2.DatasetFeatureStatistics, feature: str
                 ) -> Dict[str, float]:
  """{value: count} of a string feature, from its rank histogram (all values, up to 1000)."""
  for feature_stats in stats.features:
    if list(feature_stats.path.step) == [feature] or feature_stats.name == feature:
      return {bucket.label: bucket.sample_count
              for bucket in feature_stats.string_stats.rank_histogram.buckets}
  return {}


def linf_distance(baseline: Mapping[str, float], other: Mapping[str, float],
                  max_linf: float, noise_z: float) -> Dict[str, object]:
  """The L-infinity distance, its worst value, and whether it is skew beyond noise."""
  n_base, n_other = sum(baseline.values()), sum(other.values())
  worst = {'linf': 0.0, 'value': None, 'baseline_fraction': None, 'fraction': None,
           'noise_margin': None, 'exceeded': False}
  if not n_base or not n_other:
    return worst
  for value in sorted(set(baseline) | set(other)):
    p_base, p_other = baseline.get(value, 0.0) / n_base, other.get(value, 0.0) / n_other
    diff = abs(p_base - p_other)
    pooled = (baseline.get(value, 0.0) + other.get(value, 0.0)) / (n_base + n_other)
    margin = noise_z * math.sqrt(pooled * (1 - pooled) * (1 / n_base + 1 / n_other))
    exceeded = diff > max_linf and diff > margin
    # Report the largest distance, but prefer a value that is actually skewed.
    if (exceeded, diff) > (worst['exceeded'], worst['linf']):
      worst = {'linf': round(diff, 6), 'value': value, 'baseline_fraction': round(p_base, 6),
               'fraction': round(p_other, 6), 'noise_margin': round(margin, 6),
               'exceeded': exceeded}
  return worst


def compared_splits(stats_by_split: Mapping[str, object], skew_splits: Sequence[str],
                    baseline_split: str) -> Dict[str, object]:
  """The splits the skew check compares: `skew_splits` (all when empty) and the baseline.

  An audit-only test split (validation.skew_splits: [eval]) differs from train
  by design, so it is left out rather than flagged.
  """
  return {split: stats for split, stats in stats_by_split.items()
          if not skew_splits or split in skew_splits or split == baseline_split}


def split_skew(stats_by_split: Mapping[str, statistics_pb2.DatasetFeatureStatistics],
               feature_names: Sequence[str], baseline_split: str, max_linf: float,
               noise_z: float) -> List[Dict[str, object]]:
  """One row per (other split, feature): distance to `baseline_split` and the verdict."""
  if baseline_split not in stats_by_split:
    raise ValueError(f'validation.skew_baseline_split {baseline_split!r} is not a split of '
                     f'the statistics (splits: {sorted(stats_by_split)})')
  rows = []
  for split in sorted(stats_by_split):
    if split == baseline_split:
      continue
    for feature in feature_names:
      row = {'baseline': baseline_split, 'split': split, 'feature': feature,
             'threshold': max_linf}
      row.update(linf_distance(value_counts(stats_by_split[baseline_split], feature),
                               value_counts(stats_by_split[split], feature), max_linf, noise_z))
      rows.append(row)
  return rows


def describe_skew(row: Mapping[str, object]) -> str:
  return (f"L-infinity distance to split {row['baseline']!r} is {row['linf']:.3f} at value "
          f"{row['value']!r} ({row['baseline_fraction']:.1%} in {row['baseline']}, "
          f"{row['fraction']:.1%} here), above the threshold {row['threshold']:g} and beyond "
          f"sampling noise ({row['noise_margin']:.3f})")
