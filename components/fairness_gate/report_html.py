"""Renders the gate's report as one self-contained HTML page.

Inline CSS and inline SVG only (no scripts, fonts, images or CDN), so the page
opens from an artifact folder, a CI upload or an e-mail attachment as it is.
Sections: verdict and reasons; fairness per grouping (the paper's Table 9:
DI and AOD, plus FPR/FNR gaps) with interval plots against the bounds;
per-slice FPR and FNR with intervals; per-slice quality tables (the paper's
Tables 4-8: accuracy, precision, recall, F1, AUC).
"""

import html
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fakefaces.components.shared import serving_contract
from fakefaces.components.fairness_gate import baseline, fairness
from fakefaces.components.shared.interval_plot import interval_plot

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
max-width:1100px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}
.badge{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e7d32}.fail{background:#c62828}.insufficient_evidence{background:#ef6c00}
.not_measurable{background:#6d6d6d}
td.pass{background:#e8f5e9;color:#222}td.fail{background:#ffebee;color:#222}
td.insufficient_evidence{background:#fff3e0;color:#222}td.not_measurable{background:#eee;color:#222}
.muted{color:#666;font-size:12px}ul{margin:4px 0 4px 18px;padding:0}li{margin:2px 0}
svg{font-size:11px;font-family:inherit}
"""
_METRIC_TITLES = {'disparate_impact': 'Disparate impact (DI)',
                  'average_odds_difference': 'Average odds difference (AOD)',
                  'fpr_gap': 'FPR gap (group - reference)', 'fnr_gap': 'FNR gap (group - reference)'}
_QUALITY_COLUMNS = ('n', 'real', 'fake', 'accuracy', 'balanced_accuracy', 'precision', 'recall',
                    'f1', 'auc', 'tpr_at_fpr_0.01', 'tpr_at_fpr_0.05', 'fpr',
                    'fnr')


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _fmt(value: Optional[float], digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '&ndash;'
  if float(value).is_integer() and abs(value) >= 1:
    return f'{int(value)}'
  return f'{value:.{digits}f}'


def _threshold(value: Optional[float]) -> str:
  return '&ndash;' if value is None else serving_contract.format_probability(value)


def _interval(values: Optional[Sequence[float]]) -> str:
  if not values or values[0] is None:
    return ''
  return f' <span class="muted">[{_fmt(values[0])}, {_fmt(values[1])}]</span>'


def _table(headers: Sequence[str], rows: List[List[str]], left_columns: int = 1,
           cell_classes: Optional[List[List[str]]] = None) -> str:
  head = ''.join(f'<th class="l">{_e(h)}</th>' if i < left_columns else f'<th>{_e(h)}</th>'
                 for i, h in enumerate(headers))
  body = []
  for r, row in enumerate(rows):
    cells = []
    for i, cell in enumerate(row):
      classes = ['l'] if i < left_columns else []
      if cell_classes and cell_classes[r][i]:
        classes.append(cell_classes[r][i])
      cells.append(f'<td class="{" ".join(classes)}">{cell}</td>')
    body.append('<tr>' + ''.join(cells) + '</tr>')
  return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _section_head(title: str, note_html: str) -> str:
  return f'<h2>{_e(title)}</h2><p class="muted">{note_html}</p>'


def _titled_plot(title: str, items, **kwargs) -> str:
  return f'<h3>{_e(title)}</h3>' + interval_plot(items, **kwargs)


def _checks_by(report: Dict[str, Any]) -> Dict[Tuple[str, str], Dict[str, Any]]:
  return {(c['grouping'], c['metric']): c for c in report['checks']}


def _fairness_section(report: Dict[str, Any]) -> str:
  checks = _checks_by(report)
  metrics = list(_METRIC_TITLES)
  headers = ['grouping', 'group (n real / fake)', 'reference (n real / fake)'] + [
      _METRIC_TITLES[m].split(' (')[0] if m in ('disparate_impact', 'average_odds_difference')
      else m.replace('_', ' ') for m in metrics] + [
          'DI real (FPR ratio)', 'DI fake (TPR ratio)', 'labels (reals; fakes)',
          'on predicted demographics']
  rows, classes = [], []
  for g in report['groupings']:
    row = [_e(g['name']),
           f"{_e(g['group']['name'])} ({_fmt(g['group']['counts']['fp'] + g['group']['counts']['tn'])}"
           f" / {_fmt(g['group']['counts']['tp'] + g['group']['counts']['fn'])})",
           f"{_e(g['reference']['name'])} "
           f"({_fmt(g['reference']['counts']['fp'] + g['reference']['counts']['tn'])}"
           f" / {_fmt(g['reference']['counts']['tp'] + g['reference']['counts']['fn'])})"]
    row_classes = ['', '', '']
    for m in metrics:
      check = checks.get((g['name'], m), {})
      row.append(_value_cell(check, g[m], g.get(f'{m}_interval')))
      row_classes.append(check.get('status', ''))
    for m in ('disparate_impact_real', 'disparate_impact_fake'):
      check = checks.get((g['name'], m), {})
      row.append('0/0' if g.get(f'{m}_zero_events') and not _labelled_only(check) else
                 _value_cell(check, g.get(m), g.get(f'{m}_interval')))
      row_classes.append(checks.get((g['name'], m), {}).get('status', ''))
    row += [_label_kinds_cell(checks, g['name']), _predicted_cell(g)]
    row_classes += ['', '']
    rows.append(row)
    classes.append(row_classes)
  bounds = report['bounds']
  out = ['<h2>Fairness per grouping (Table 9: DI and AOD)</h2>',
         f'<p class="muted">Intervals: {report["confidence_level"]:.0%}, parametric bootstrap over '
         f'the confusion counts. Bounds: DI in [{bounds["disparate_impact"][0]:g}, '
         f'{bounds["disparate_impact"][1]:g}], |AOD| &le; {bounds["average_odds_difference"][1]:g}, '
         f'|FPR gap| &le; {bounds["fpr_gap"][1]:g}, |FNR gap| &le; {bounds["fnr_gap"][1]:g}; '
         f'groups need {report["min_group_size"]} examples of each class a rate uses. '
         'Cell colours: green pass, red fail, orange insufficient evidence, grey declared not '
         'measurable. &dagger; : judged on labelled faces only (human or prompted labels), '
         'because the annotator\'s precision for the group or the reference fails '
         'min_annotator_precision; the value on all examples follows in grey. '
         '* : the value rests on demographics predicted by the DemographicAnnotator '
         '(last column: predicted reals / fakes on each side, and the annotator\'s precision for '
         'the group and the reference on labelled test faces). Labels: which kinds of group label '
         'the reals and the fakes carry: human (a person\'s), prompted (what a generator was '
         'asked for), predicted (the annotator\'s). DI real (FPR ratio on real photos) '
         'and DI fake (TPR ratio on fakes) are judged against the DI bounds; the mixed DI also '
         'moves with each group\'s share of fakes, so it is judged only where the two sides\' '
         f'fake shares differ by at most {report["thresholds"]["max_fake_share_gap"]:g} '
         '(grey elsewhere).</p>',
         _table(headers, rows, left_columns=3, cell_classes=classes)]
  for m in metrics:
    items = [(g['name'], g[m], g.get(f'{m}_interval'), checks.get((g['name'], m), {}).get('status'))
             for g in report['groupings']]
    out.append(_titled_plot(f'{_METRIC_TITLES[m]} against its bounds', items, band=bounds[m],
                            reference=1.0 if m == 'disparate_impact' else 0.0,
                            axis_label='ratio of two rates (1: parity; may exceed 1)'
                            if m == 'disparate_impact' else
                            'difference of two rates (0: parity; from -1 to 1)'))
  return ''.join(out)


def _labelled_only(check: Dict[str, Any]) -> bool:
  return check.get('judged_on') == fairness.LABELLED_ONLY


def _value_cell(check: Dict[str, Any], value: Optional[float],
                interval: Optional[Sequence[float]]) -> str:
  """A check's value and interval: on labelled faces only (the value on all examples
  after it, muted) or on all examples (starred when it rests on predicted demographics)."""
  if _labelled_only(check):
    return (_fmt(check.get('value')) + _interval(check.get('interval')) + ' &dagger; '
            f'<span class="muted">all: {_fmt(value)}</span>')
  return _fmt(value) + _interval(interval) + (' *' if check.get('rests_on_predicted') else '')


def _labelled_only_section(report: Dict[str, Any]) -> str:
  """Each check judged on labelled faces only, with the judgement on all examples."""
  judged = [c for c in report['checks'] if _labelled_only(c)]
  if not judged:
    return ''
  rows = [[_e(c['grouping']), _e(c['metric']), _e(c['status']),
           _fmt(c['value']) + _interval(c['interval']), _e(fairness.label_kinds(c)),
           _fmt(c['excluded_predicted']), _e(c['all_examples']['status']),
           _fmt(c['all_examples']['value']), _e(c['reason'])] for c in judged]
  classes = [['', '', c['status'], '', '', '', c['all_examples']['status'], '', '']
             for c in judged]
  return (_section_head(
      'Judged on labelled faces only',
      'The annotator\'s precision for these groups fails min_annotator_precision, so who is '
      'in the group is uncertain among the faces with predicted demographics: they are left '
      'out, and group and reference are judged alike on the faces whose grouping attributes '
      'are human or prompted labels. Faces of sources without such labels are not in these '
      'judgements; the status is the labelled faces\' (the result on all examples is shown '
      'beside it, not judged).')
          + _table(['grouping', 'metric', 'status', 'value (labelled)', 'labels',
                    'predicted left out', 'on all examples', 'value (all)', 'reason'],
                   rows, left_columns=3, cell_classes=classes))


def _label_kinds_cell(checks: Dict[Tuple[str, str], Dict[str, Any]], grouping: str) -> str:
  """What the grouping's labels are on its reals (FPR gap) and fakes (FNR gap)."""
  return '; '.join(fairness.label_kinds(checks.get((grouping, m), {}))
                   for m in (fairness.FPR_GAP, fairness.FNR_GAP))


def _predicted_cell(g: Dict[str, Any]) -> str:
  annotation = g.get('annotation')
  if not annotation:
    return 'none'
  group, reference, precision = annotation['group'], annotation['reference'], annotation['precision']
  if not (group['predicted_real'] + group['predicted_fake'] + reference['predicted_real']
          + reference['predicted_fake']):
    return 'none'
  return (f"group {group['predicted_real']}/{group['predicted_fake']}, reference "
          f"{reference['predicted_real']}/{reference['predicted_fake']}; precision "
          f"{_fmt(precision['group'])} (n {precision['n_group']}) / "
          f"{_fmt(precision['reference'])} (n {precision['n_reference']})")


def _annotator_section(report: Dict[str, Any]) -> str:
  annotator = report.get('annotator')
  if not annotator:
    return ''
  rows = [[_e(a), _fmt(e.get('n')), _fmt(e.get('accuracy')), _fmt(e.get('min_confidence')),
           _fmt(e.get('coverage')), _fmt(e.get('confident_accuracy'))]
          for a, e in annotator['evaluation'].items()]
  small = ''.join(f'<li>{_e(w)}</li>' for w in annotator.get('small_data', []))
  return (_section_head(
      'Demographic annotator (what the starred numbers rest on)',
      f'Accuracy of the predicted demographics on the human-labelled {_e(annotator["test_split"])} '
      'faces it never trained on; coverage: share of faces whose prediction reaches the '
      'confidence threshold (the others stay unknown).')
          + _table(['attribute', 'n', 'accuracy', 'min confidence', 'coverage',
                    'accuracy when confident'], [[c for c in r] for r in rows])
          + (f'<ul>{small}</ul>' if small else ''))


def _slice_rate_section(report: Dict[str, Any]) -> str:
  out = [_section_head(
      'Per-slice error rates',
      'FPR: real photos called fake. FNR: fakes let through. Jeffreys '
      f'{report["confidence_level"]:.0%} intervals from the counts; slices without the class a '
      'rate needs show "not measured".')]
  rows = [r for r in report['slices'] if len(r['features']) <= 1]
  for rate in ('fpr', 'fnr'):
    items = [(r['slice'], r.get(rate) if r.get(f'{rate}_interval') else None,
              r.get(f'{rate}_interval'), None) for r in rows]
    out.append(_titled_plot(f'{rate.upper()} per slice', items, domain=(0.0, 1.0),
                            axis_label=f'{rate.upper()}: a rate, from 0 to 1'))
  return ''.join(out)


def _quality_section(report: Dict[str, Any]) -> str:
  out = [_section_head(
      'Detection quality per slice (Tables 4-8)',
      'Accuracy, precision, recall, F1 and AUC of the "fake" class at the decision threshold '
      f'{_fmt(report.get("decision_threshold"))} (the model\'s operating point); AUC, balanced '
      'accuracy and TPR at FPR 0.01/0.05 only where a slice has both classes. TFMA intervals '
      'are shown when '
      'tfma_confidence_intervals is on.')]
  by_features: Dict[str, List[Dict[str, Any]]] = {}
  for row in report['slices']:
    by_features.setdefault(' x '.join(sorted(row['features'])) or 'overall', []).append(row)
  for name, rows in by_features.items():
    table_rows = []
    for r in rows:
      tfma_intervals = r.get('tfma_intervals', {})
      table_rows.append([_e(r['slice'])] + [
          _fmt(r.get(c)) + _interval(tfma_intervals.get(c)) for c in _QUALITY_COLUMNS])
    out.append(f'<h3>{_e(name)}</h3>')
    out.append(_table(['slice'] + list(_QUALITY_COLUMNS), table_rows))
  return ''.join(out)


def render(report: Dict[str, Any]) -> str:
  verdict = report['verdict']
  # One bullet per refused grouping (report.json keeps one reason per check).
  evaluator = [] if report['evaluator_blessed'] else report['reasons'][:1]
  reasons = ''.join(f'<li>{_e(r)}</li>' for r in evaluator) + ''.join(
      f'<li><b>{_e(g)}</b>: {_e(text)}</li>'
      for g, text in fairness.refusals_by_grouping(report['checks'])) + ''.join(
      f'<li>{_e(r)}</li>' for r in (report.get('production') or {}).get('reasons', []))
  not_measured = ''.join(f'<li>{_e(n)}</li>' for n in report['not_measured'])
  head = [f'<h1>Fairness gate report <span class="badge {_e(verdict)}">{_e(verdict)}</span> '
          f'<span class="badge {"pass" if report["blessed"] else "fail"}">'
          f'{"blessed" if report["blessed"] else "not blessed"}</span></h1>',
          f'<p class="muted">model: {_e(report["model_uri"])}<br>evaluation: '
          f'{_e(report["evaluation_uri"])}<br>Evaluator thresholds (balanced accuracy &ge; '
          f'{report["thresholds"]["min_balanced_accuracy"]:g}, AUC &ge; '
          f'{report["thresholds"]["min_auc"]:g}): '
          f'{"passed" if report["evaluator_blessed"] else report.get("evaluator_verdict", "FAILED")}'
          f'<br>operating point: P(fake) &ge; {_threshold(report.get("decision_threshold"))}</p>',
          f'<h2>Why not blessed</h2><ul>{reasons}</ul>' if not report['blessed'] else
          '<h2>Blessed</h2><p>Every accuracy threshold and every judged fairness bound holds.</p>']
  if report.get('data_warnings'):
    head.insert(2, '<h3>Data warnings</h3><ul>'
                + ''.join(f'<li>{_e(w)}</li>' for w in report['data_warnings']) + '</ul>')
  if not_measured:
    head.append('<h3>Declared not measurable on this data (not passed, not judged)</h3>'
                f'<ul>{not_measured}</ul>')
  return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
          f'<title>Fairness gate: {_e(verdict)}</title><style>{_STYLE}</style></head><body>'
          + ''.join(head) + baseline.render_html(report.get('production'))
          + _fairness_section(report) + _labelled_only_section(report)
          + _annotator_section(report)
          + _slice_rate_section(report)
          + _quality_section(report) + '</body></html>')
