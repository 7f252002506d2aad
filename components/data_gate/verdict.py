"""The DataGate's verdict: from what the checks found to pass, or which error stops the run.

Pure (no TFX, no files), so every rule can be tested from hand-made findings;
the executor gathers the findings, calls `judge`, and writes the report or
raises the error it names.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from fakefaces.components.data_gate import coverage, shortcut
from fakefaces.components.data_gate.config import ValidationConfig

ON_SHORT_GROUP = ('stop', 'insufficient')  # ValidationConfig.on_short_group
# What stopped the run (Verdict.stopped_by), in the order they are reported.
ANOMALIES, COVERAGE, SHORTCUT = 'anomalies', 'coverage', 'shortcut'


@dataclasses.dataclass
class Verdict:
  passed: bool
  report: Dict[str, Any]  # report.json
  stopped_by: Optional[str] = None  # ANOMALIES | COVERAGE | SHORTCUT when not passed
  message: str = ''  # every finding that stops the run, one line each


def split_allowed(rows: Sequence[Dict[str, str]], allowed: Sequence[str]
                  ) -> Tuple[List[Dict[str, str]], List[Dict[str, str]]]:
  """(blocking rows, rows the allow-list accepts): entries are 'KIND' or 'feature:KIND'."""
  blocking, accepted = [], []
  for row in rows:
    ok = row['kind'] in allowed or f"{row['feature']}:{row['kind']}" in allowed
    (accepted if ok else blocking).append(row)
  return blocking, accepted


def judge(config: ValidationConfig, examples: Mapping[str, int],
          anomaly_rows: Sequence[Dict[str, str]], skew_rows: Sequence[Mapping[str, Any]],
          coverage_report: Mapping[str, Any], shortcut_report: Mapping[str, Any]) -> Verdict:
  """The verdict on the checks' findings.

  Args:
    config: the `validation:` section (allowed anomalies, what stops the run).
    examples: examples per split (from the statistics).
    anomaly_rows: schema anomalies, image-format and skew rows ({split, feature,
      kind, description}); those `config.allowed_anomalies` accepts are only reported.
    skew_rows: the split-skew table (skew.split_skew).
    coverage_report: the slice-coverage section, or {'split', 'error'} when it
      could not be computed (which stops the run).
    shortcut_report: the source-shortcut section (shortcut.check_source_shortcut),
      or {'split', 'error', 'findings': []}.

  Returns:
    The verdict; when it stops, `stopped_by` names the first of anomalies (and
    checks that could not read the data), short groups and source shortcut.
  """
  blocking, accepted = split_allowed(anomaly_rows, config.allowed_anomalies)
  stop_on_short = config.on_short_group == 'stop'
  stop_on_shortcut = config.source_shortcut.on_shortcut == 'stop' and (
      'error' in shortcut_report or bool(shortcut_report['findings']))
  short = stop_on_short and 'error' not in coverage_report and bool(
      coverage_report['short_groups'])
  stopped_by = (ANOMALIES if blocking or 'error' in coverage_report else
                COVERAGE if short else SHORTCUT if stop_on_shortcut else None)
  report = {'passed': stopped_by is None, 'examples': dict(examples),
            'anomalies': blocking, 'allowed_anomalies': accepted,
            'coverage': dict(coverage_report),
            'skew': {'baseline': config.skew_baseline_split, 'threshold': config.max_skew_linf,
                     'noise_z': config.skew_noise_z, 'rows': list(skew_rows)},
            'source_shortcut': dict(shortcut_report)}
  if stopped_by is None:
    return Verdict(True, report)
  return Verdict(False, report, stopped_by,
                 failure_message(blocking, coverage_report, stop_on_short,
                                 shortcut_report if stop_on_shortcut else None))


def failure_message(blocking: Sequence[Mapping[str, str]], coverage_report: Mapping[str, object],
                    stop_on_short: bool, shortcut_report: Optional[Mapping[str, object]] = None
                    ) -> str:
  """Names every anomaly (split, feature, kind, TFDV's description) and every short group."""
  sections = []
  if blocking:
    lines = '\n'.join(f"  [{r['split']}] {r['feature']}: {r['kind']}: {r['description']}"
                      for r in blocking)
    sections.append(f'{len(blocking)} data anomal{"y" if len(blocking) == 1 else "ies"} '
                    f'(accept one on purpose with validation.allowed_anomalies):\n{lines}')
  if 'error' in coverage_report:
    sections.append(f"slice coverage could not be computed: {coverage_report['error']}")
  elif stop_on_short and coverage_report['short_groups']:
    short = [row for row in coverage_report['groups'] if coverage.is_short(row)]
    lines = '\n'.join(f'  {coverage.describe_short(row)}' for row in short)
    sections.append(
        f"{len(short)} judged group(s) of split {coverage_report['split']!r} have fewer than "
        f"{coverage_report['min_examples_per_class']} real or fake examples (set "
        f"validation.on_short_group: insufficient to record them instead):\n{lines}")
  if shortcut_report and 'error' in shortcut_report:
    sections.append(f"the source-shortcut check could not run: {shortcut_report['error']}")
  elif shortcut_report and shortcut_report.get('findings'):
    sections.append(
        f"source shortcut in split {shortcut_report['split']!r} (set "
        f"validation.source_shortcut.on_shortcut: warn to only report it):\n"
        f"{shortcut.describe(shortcut_report)}")
  return 'The DataGate stopped the run before training.\n' + '\n'.join(sections)
