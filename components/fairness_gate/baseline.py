"""Candidate vs the model in production: TFX's baseline convention, plus fairness.

The pipeline resolves "the model in production" with TFX's
`LatestBlessedModelStrategy` over the ServingCanary's blessings (blessed by
the FairnessGate AND answered in the serving stack: what the Pusher pushes)
and gives it to the Evaluator as `baseline_model`. TFMA then evaluates both
models on the same test split, and:

* the Evaluator's change thresholds refuse a candidate whose overall balanced
  accuracy or AUC drops by more than `baseline.max_accuracy_drop` / `max_auc_drop`
  (eval_config.py; TFX ignores them on the first run, when there is no
  baseline: the absolute bounds alone apply then);
* this module refuses a candidate for which any judged group's |FPR gap|,
  |FNR gap| or |AOD| grows by more than `baseline.max_gap_growth` against the
  production model, judged on the same groupings with the same code
  (fairness.judge on the production model's per-slice counts). A gap that can
  be measured for the candidate but not for production is "not comparable":
  shown, and still judged by the absolute bounds, never a pass of its own.

The balanced-accuracy/AUC comparison is also recomputed here (each model's
balanced accuracy at its own decision threshold), so the report shows both
models side by side and names every regression in its reasons.
"""

import html
import math
from typing import Any, Dict, List, Optional

from fakefaces.components.shared.config_base import ConfigError
from fakefaces.components.fairness_gate import fairness
from fakefaces.components.shared.thresholds import BaselineConfig, ThresholdsConfig

COMPARED_GAPS = (fairness.FPR_GAP, fairness.FNR_GAP, fairness.AVERAGE_ODDS_DIFFERENCE)
SIDE_BY_SIDE = ('n', 'balanced_accuracy', 'accuracy', 'auc', 'fpr', 'fnr')
# overall metric -> the tolerance field that bounds its drop (each model at its own threshold)
COMPARED_OVERALL = {'balanced_accuracy': 'max_accuracy_drop', 'auc': 'max_auc_drop'}
REGRESSED, NOT_COMPARABLE = 'regressed', 'not_comparable'
_EPSILON = 1e-9  # float noise: a change exactly at the tolerance passes


def validate(config: BaselineConfig, where: str = 'thresholds.baseline') -> None:
  for name in ('max_accuracy_drop', 'max_auc_drop', 'max_gap_growth'):
    if getattr(config, name) < 0:
      raise ConfigError(f'{where}.{name} must be >= 0, got {getattr(config, name)}')


def _overall(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
  return next((r for r in rows if not r['features']), {})


def compare(candidate_checks: List[Dict[str, Any]], candidate_rows: List[Dict[str, Any]],
            production_counts: Dict[fairness.SliceKey, fairness.Counts],
            production_rows: List[Dict[str, Any]], thresholds: ThresholdsConfig,
            production_model_uri: str) -> Dict[str, Any]:
  """The side-by-side comparison (report['production']); its 'reasons' refuse the candidate."""
  tolerance = thresholds.baseline
  candidate_overall, production_overall = _overall(candidate_rows), _overall(production_rows)
  overall, reasons = [], []
  for metric in SIDE_BY_SIDE:
    cand, prod = candidate_overall.get(metric), production_overall.get(metric)
    row = {'metric': metric, 'candidate': cand, 'production': prod,
           'change': None if cand is None or prod is None else round(cand - prod, 6)}
    if metric in COMPARED_OVERALL:
      allowed = getattr(tolerance, COMPARED_OVERALL[metric])
      row['max_drop'] = allowed
      if row['change'] is None:
        row['status'] = NOT_COMPARABLE
      elif row['change'] < -allowed - _EPSILON:
        row['status'] = REGRESSED
        reasons.append(f'vs production: {metric} {cand:.4f} is {-row["change"]:.4f} below the '
                       f'production model\'s {prod:.4f} (may drop by {allowed:g})')
      else:
        row['status'] = fairness.PASS
    overall.append(row)

  production_checks = {(c['grouping'], c['metric']): c
                       for c in fairness.judge(production_counts, thresholds)['checks']}
  gaps = []
  for check in candidate_checks:
    if check['metric'] not in COMPARED_GAPS:
      continue
    prod_check = production_checks.get((check['grouping'], check['metric']), {})
    cand, prod = _magnitude(check.get('value')), _magnitude(prod_check.get('value'))
    row = {'grouping': check['grouping'], 'metric': check['metric'], 'candidate': cand,
           'production': prod, 'growth': None, 'max_growth': tolerance.max_gap_growth,
           'candidate_status': check['status'], 'production_status': prod_check.get('status')}
    if cand is None or prod is None:
      row['status'] = NOT_COMPARABLE
    else:
      row['growth'] = round(cand - prod, 6)
      if row['growth'] > tolerance.max_gap_growth + _EPSILON:
        row['status'] = REGRESSED
        reasons.append(f"vs production: {check['grouping']}: |{check['metric']}| grew from "
                       f'{prod:.4f} to {cand:.4f} (may grow by {tolerance.max_gap_growth:g})')
      else:
        row['status'] = fairness.PASS
    gaps.append(row)
  return {'production_model_uri': production_model_uri, 'overall': overall, 'gaps': gaps,
          'reasons': reasons, 'regressed': bool(reasons),
          'tolerances': {'max_accuracy_drop': tolerance.max_accuracy_drop,
                         'max_auc_drop': tolerance.max_auc_drop,
                         'max_gap_growth': tolerance.max_gap_growth}}


def _magnitude(value: Optional[float]) -> Optional[float]:
  if value is None or not math.isfinite(value):
    return None
  return abs(value)


def apply(report: Dict[str, Any], comparison: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """Adds the comparison to the gate's report; any regression refuses the candidate.

  `comparison` None means there was no model in production (first run): the
  report says so, and the absolute bounds alone decided.
  """
  if comparison is None:
    report['production'] = {'production_model_uri': None, 'reasons': [], 'regressed': False,
                            'note': 'no model in production yet: judged on the absolute '
                                    'bounds alone'}
    return report
  report['production'] = comparison
  if comparison['regressed']:
    report['reasons'] = list(report['reasons']) + comparison['reasons']
    report['verdict'] = fairness.FAIL
    report['blessed'] = False
  return report


def _cell(value: Any) -> str:
  if value is None:
    return '&ndash;'
  if isinstance(value, float):
    return f'{value:.4f}'
  return html.escape(str(value))


def render_html(comparison: Optional[Dict[str, Any]]) -> str:
  """The 'candidate vs production' section of report.html ('' for reports without one)."""
  if not comparison:
    return ''
  if comparison.get('production_model_uri') is None:
    return f'<h2>Candidate vs production</h2><p class="muted">{html.escape(comparison["note"])}</p>'
  out = ['<h2>Candidate vs production</h2>',
         f'<p class="muted">production model: {html.escape(comparison["production_model_uri"])}'
         f'<br>tolerances: {html.escape(str(comparison["tolerances"]))}</p>',
         '<table><thead><tr><th class="l">overall</th><th>candidate</th><th>production</th>'
         '<th>change</th><th>status</th></tr></thead><tbody>']
  for row in comparison['overall']:
    out.append(f'<tr><td class="l">{html.escape(row["metric"])}</td><td>{_cell(row["candidate"])}'
               f'</td><td>{_cell(row["production"])}</td><td>{_cell(row["change"])}</td>'
               f'<td class="{row.get("status", "")}">{_cell(row.get("status"))}</td></tr>')
  out.append('</tbody></table><table><thead><tr><th class="l">grouping</th><th class="l">metric'
             '</th><th>|candidate|</th><th>|production|</th><th>growth</th><th>status</th></tr>'
             '</thead><tbody>')
  for row in comparison['gaps']:
    out.append(f'<tr><td class="l">{html.escape(row["grouping"])}</td>'
               f'<td class="l">{html.escape(row["metric"])}</td><td>{_cell(row["candidate"])}'
               f'</td><td>{_cell(row["production"])}</td><td>{_cell(row["growth"])}</td>'
               f'<td class="{row["status"]}">{_cell(row["status"])}</td></tr>')
  out.append('</tbody></table>')
  return ''.join(out)
