"""From a TFMA evaluation output folder to the gate's report.

Shared by the FairnessGate executor (the Evaluator's output) and the
`fakefaces gate` command (`tfma.run_model_analysis` output), so both judge
with exactly the same code. The report is a plain dict, written as
report.json plus a self-contained report.html (see report.py).
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma

from fakefaces.components.shared import features, reports, serving_contract
from fakefaces.components.fairness_gate import eval_config, fairness, report_html
from fakefaces.components.shared.thresholds import ThresholdsConfig

REPORT_HTML = 'report.html'  # beside report.json (reports.REPORT_JSON)
OVERALL = 'Overall'
# TFMA metric name -> report column (per-slice table, like the paper's Tables 4-8).
SLICE_METRICS = {'example_count': 'n', 'binary_accuracy': 'accuracy',
                 eval_config.BALANCED_ACCURACY: 'balanced_accuracy', 'precision': 'precision',
                 'recall': 'recall', 'auc': 'auc', 'fpr': 'fpr', 'fnr': 'fnr',
                 **{name: name for name in eval_config.TPR_AT_FPR}}
EVALUATOR_NOT_BLESSED = 'Evaluator did not bless the model'
CANDIDATE, BASELINE = tfma.CANDIDATE_KEY, tfma.BASELINE_KEY  # TFMA's model names


def _slice_key(metrics_for_slice) -> fairness.SliceKey:
  key = []
  for single in metrics_for_slice.slice_key.single_slice_keys:
    value = getattr(single, single.WhichOneof('kind'))
    key.append((single.column, value.decode('utf-8') if isinstance(value, bytes) else str(value)))
  return tuple(sorted(key))


def slice_label(key: fairness.SliceKey) -> str:
  return ', '.join(f'{k}={v}' for k, v in key) if key else OVERALL


def _double(value) -> Optional[float]:
  """A MetricValue as a float; None when absent or NaN (JSON has no NaN)."""
  kind = value.WhichOneof('type')
  number = (value.double_value.value if kind == 'double_value' else
            value.bounded_value.value.value if kind == 'bounded_value' else math.nan)
  return None if math.isnan(number) else number


def _is_model(key, model: str) -> bool:
  """Whether a TFMA MetricKey belongs to `model` (CANDIDATE or BASELINE), diffs excluded.

  With a baseline the Evaluator names the models 'candidate' and 'baseline' and
  adds candidate-minus-baseline diffs; without one the only model is unnamed.
  """
  if key.is_diff:
    return False
  if model == BASELINE:
    return key.model_name == BASELINE
  return key.model_name != BASELINE


def load_evaluation(evaluation_uri: str, thresholds: ThresholdsConfig, decision_threshold: float,
                    model: str = CANDIDATE
                    ) -> Tuple[Dict[fairness.SliceKey, fairness.Counts], List[Dict[str, Any]]]:
  """(per-slice confusion counts at `decision_threshold`, per-slice metric rows) of `model`.

  Counts include the slices by labelled_attributes; the rows leave them out.

  `decision_threshold` is `model`'s own (serving_contract.read_decision_threshold).
  """
  counts, rows = {}, []
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    if metrics_for_slice.HasField('cross_slice_key'):
      continue
    key = _slice_key(metrics_for_slice)
    row: Dict[str, Any] = {'slice': slice_label(key), 'features': dict(key), 'tfma_intervals': {}}
    for kv in metrics_for_slice.metric_keys_and_values:
      if not _is_model(kv.key, model):
        continue
      name = kv.key.name
      if name == eval_config.CONFUSION_METRIC:
        for matrix in kv.value.confusion_matrix_at_thresholds.matrices:
          if abs(matrix.threshold - decision_threshold) < 1e-6:
            counts[key] = fairness.Counts(tp=matrix.true_positives, fp=matrix.false_positives,
                                          tn=matrix.true_negatives, fn=matrix.false_negatives)
      elif name in SLICE_METRICS:
        row[SLICE_METRICS[name]] = _double(kv.value)
        if kv.HasField('confidence_interval'):
          row['tfma_intervals'][SLICE_METRICS[name]] = [
              _double(kv.confidence_interval.lower_bound),
              _double(kv.confidence_interval.upper_bound)]
    if key in counts:
      row.update(_rates_from_counts(counts[key], thresholds.confidence_level))
    if features.LABELLED_ATTRIBUTES not in row['features']:
      # The slices by labelled_attributes only feed the labelled-only judgement
      # (fairness.labelled_slices); the per-slice tables and the model card show the rest.
      rows.append(row)
  if not counts:
    raise ValueError(f'no {eval_config.CONFUSION_METRIC} of the {model} model at threshold '
                     f'{decision_threshold} in the evaluation at {evaluation_uri}; was it computed '
                     'with fakefaces.components.fairness_gate.eval_config.build_eval_config at '
                     'the model\'s own decision threshold?')
  rows.sort(key=lambda r: (len(r['features']), sorted(r['features']), r['slice']))
  return counts, rows


def _rates_from_counts(c: fairness.Counts, level: float) -> Dict[str, Any]:
  precision = c.tp / (c.tp + c.fp) if c.tp + c.fp else math.nan
  recall = c.tpr
  f1 = (2 * precision * recall / (precision + recall)
        if precision + recall and not math.isnan(precision + recall) else math.nan)
  # Every rate at the threshold from the counts at the model's own threshold: TFMA's
  # thresholded metrics use the candidate's, also for the production model.
  rates = {'counts': dataclasses.asdict(c), 'real': c.negatives, 'fake': c.positives,
           'f1': None if math.isnan(f1) else f1,
           **{name: None if math.isnan(value) else value for name, value in (
               ('accuracy', (c.tp + c.tn) / c.total if c.total else math.nan),
               ('balanced_accuracy', fairness.balanced_accuracy(c)),
               ('precision', precision), ('recall', recall), ('fpr', c.fpr), ('fnr', c.fnr))},
           'fpr_interval': fairness.rate_interval(c.fp, c.negatives, level),
           'fnr_interval': fairness.rate_interval(c.fn, c.positives, level)}
  rates['tpr'] = None if math.isnan(c.tpr) else c.tpr
  if not (c.negatives and c.positives):
    # TFMA reports AUC 0 and balanced accuracy NaN for a one-class slice: both are undefined.
    for name in eval_config.NEEDS_BOTH_CLASSES + tuple(eval_config.TPR_AT_FPR):
      rates[SLICE_METRICS[name]] = None
  return rates


def evaluator_failures(evaluation_uri: str,
                       counts: Optional[Dict[fairness.SliceKey, fairness.Counts]] = None
                       ) -> Tuple[List[str], List[str]]:
  """What TFMA's thresholds refused, one line each: (measured failures, undefined metrics).

  A bound on AUC or balanced accuracy over a slice that lacks a class (per
  `counts`) "fails" in TFMA only because the metric is undefined there (TFMA
  reports AUC 0 and balanced accuracy NaN): that is insufficient evidence, listed
  second, never a measured failure. Both lists are empty when validation passed
  or was not written.
  """
  try:
    result = tfma.load_validation_result(evaluation_uri)
  except Exception:  # pylint: disable=broad-except  (no validation written: no thresholds)
    return [], []
  lines, undefined = [], []
  for per_slice in result.metric_validations_per_slice:
    key = _slice_key(per_slice)
    where = slice_label(key)
    for failure in per_slice.failures:
      value = _double(failure.metric_value)
      c = (counts or {}).get(key)
      if (failure.metric_key.name in eval_config.NEEDS_BOTH_CLASSES and c is not None
          and not (c.negatives and c.positives)):
        undefined.append(f'{failure.metric_key.name} is undefined on {where}: it holds '
                         f'{c.negatives:g} real photos and {c.positives:g} fakes (needs both)')
        continue
      if failure.metric_threshold.HasField('change_threshold'):
        change = failure.metric_threshold.change_threshold
        allowed = change.absolute.value if change.HasField('absolute') else 0.0
        shown = 'missing' if value is None else f'{value:+.4f}'
        lines.append(f'{failure.metric_key.name} changed by {shown} against the production '
                     f'model on {where}, may change by no less than {allowed:g}')
        continue
      bound = failure.metric_threshold.value_threshold
      limits = []
      if bound.HasField('lower_bound'):
        limits.append(f'>= {bound.lower_bound.value:g}')
      if bound.HasField('upper_bound'):
        limits.append(f'<= {bound.upper_bound.value:g}')
      shown = 'missing' if value is None else f'{value:.4f}'
      lines.append(f'{failure.metric_key.name} {shown} on {where}, needs {" and ".join(limits)}')
  lines += [f'slice never materialised: {s}' for s in result.missing_slices]
  return lines, undefined


def _first(items: List[str], count: int) -> str:
  if not items:
    return ''
  more = f'; and {len(items) - count} more' if len(items) > count else ''
  return ': ' + '; '.join(items[:count]) + more


def validation_ok(evaluation_uri: str) -> bool:
  """The Evaluator's blessing rule: TFMA's validation result passed."""
  return tfma.load_validation_result(evaluation_uri).validation_ok


def build_report(evaluation_uri: str, thresholds: ThresholdsConfig, evaluator_blessed: bool,
                 model_uri: str, decision_threshold: float,
                 annotation_report: Optional[Dict[str, Any]] = None,
                 operating_point: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Judges the evaluation at the model's `decision_threshold`; returns what report.json holds.

  `operating_point`: the model's assets/operating_point.json, shown in the report.
  """
  counts, rows = load_evaluation(evaluation_uri, thresholds, decision_threshold)
  failures, undefined = ([], []) if evaluator_blessed else evaluator_failures(evaluation_uri,
                                                                             counts)
  return assemble_report(counts, rows, thresholds, evaluator_blessed, failures, model_uri,
                         evaluation_uri, annotation_report, evaluator_undefined=undefined,
                         decision_threshold=decision_threshold,
                         operating_point=operating_point)


def assemble_report(counts: Dict[fairness.SliceKey, fairness.Counts], rows: List[Dict[str, Any]],
                    thresholds: ThresholdsConfig, evaluator_blessed: bool,
                    evaluator_failure_lines: List[str], model_uri: str,
                    evaluation_uri: str,
                    annotation_report: Optional[Dict[str, Any]] = None,
                    evaluator_undefined: Sequence[str] = (),
                    decision_threshold: Optional[float] = None,
                    operating_point: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """The report from per-slice counts and metric rows, however they were computed.

  `annotation_report`: the DemographicAnnotator's report.json, when the
  evaluated examples went through it (checks on predicted demographics are
  then marked and held to the annotator-precision rule).
  `evaluator_failure_lines` / `evaluator_undefined`: the Evaluator's refusals
  measured and undefined (evaluator_failures); a refusal with only undefined
  metrics is insufficient evidence, not a failure.
  """
  evidence = (fairness.AnnotationEvidence.from_report(annotation_report)
              if annotation_report and annotation_report.get('evaluated') else None)
  result = fairness.judge(counts, thresholds, annotation=evidence)
  auc = {tuple(sorted(r['features'].items())): r.get('auc') for r in rows}
  source_checks = [dataclasses.asdict(c) for c in fairness.judge_sources(counts, auc, thresholds)]
  reasons = []
  evaluator_verdict = fairness.PASS
  if not evaluator_blessed:
    failures = list(evaluator_failure_lines)
    evaluator_verdict = (fairness.INSUFFICIENT if evaluator_undefined and not failures
                         else fairness.FAIL)
    what = ('could not measure its bounds' if evaluator_verdict == fairness.INSUFFICIENT else
            'balanced accuracy or AUC below the thresholds')
    reasons.append(f'{EVALUATOR_NOT_BLESSED}: {what} '
                   f'(min_balanced_accuracy {thresholds.min_balanced_accuracy}, '
                   f'min_auc {thresholds.min_auc}) or too far below the production model\'s'
                   + _first(failures + list(evaluator_undefined), 5))
  checks = source_checks + result['checks']
  reasons += [f"{c['grouping']}: {c['reason']}" for c in checks
              if c['status'] in (fairness.FAIL, fairness.INSUFFICIENT)]
  fairness_verdict = result['verdict']
  data_warnings = _data_warnings(counts)
  verdict = fairness.verdict_of([evaluator_verdict, fairness_verdict]
                                + [c['status'] for c in source_checks])
  return dict(
      result, checks=checks, verdict=verdict, fairness_verdict=fairness_verdict,
      evaluator_verdict=evaluator_verdict, source_checks=source_checks,
      decision_threshold=decision_threshold, operating_point=operating_point,
      blessed=verdict == fairness.PASS, evaluator_blessed=evaluator_blessed, reasons=reasons,
      not_measured=[f"{c['grouping']}: {c['metric']}" for c in checks
                    if c['status'] == fairness.NOT_MEASURABLE],
      model_uri=model_uri, evaluation_uri=evaluation_uri, slices=rows,
      data_warnings=data_warnings,
      rests_on_predicted=[f"{c['grouping']}: {c['metric']}" for c in checks
                          if c.get('rests_on_predicted')],
      # Per kind of group label (fairness.LABEL_KINDS), the fairness checks resting on it.
      label_kinds={kind: [f"{c['grouping']}: {c['metric']}" for c in result['checks']
                          if (c.get('label_origins') or {}).get(kind)]
                   for kind in fairness.LABEL_KINDS} if evidence else None,
      # Checks judged on labelled faces only (the annotator's precision failed the rule),
      # and those of them that fail on all examples, predicted groups included.
      labelled_only=[f"{c['grouping']}: {c['metric']}" for c in result['checks']
                     if c.get('judged_on') == fairness.LABELLED_ONLY],
      fail_on_all_examples=[f"{c['grouping']}: {c['metric']}" for c in result['checks']
                            if (c.get('all_examples') or {}).get('status') == fairness.FAIL],
      annotator=_annotator_summary(annotation_report),
      thresholds=dataclasses.asdict(thresholds))


def _annotator_summary(annotation_report: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The annotator's accuracy per attribute, shown beside the numbers that rest on it."""
  if not annotation_report:
    return None
  return {'test_split': annotation_report.get('test_split'),
          'evaluation': {a: {k: e.get(k) for k in ('n', 'accuracy', 'coverage',
                                                   'confident_accuracy', 'min_confidence')}
                         for a, e in (annotation_report.get('evaluation') or {}).items()},
          'small_data': annotation_report.get('small_data', [])}


def _data_warnings(counts: Dict[fairness.SliceKey, fairness.Counts]) -> List[str]:
  """Demographics the data cannot speak about at all (said once, not per check)."""
  warnings = []
  for name in features.DEMOGRAPHIC_FEATURES:
    known = [c for key, c in counts.items()
             if len(key) == 1 and key[0][0] == name and key[0][1] != features.UNKNOWN]
    if not any(c.total for c in known):
      warnings.append(f'no evaluated example carries a known {name}: every {name} group is '
                      'insufficient evidence')
    elif not any(c.positives for c in known):
      warnings.append(f'no evaluated fake carries a known {name}: per-{name} FNR/TPR (fnr_gap, '
                      'average_odds_difference) cannot be measured; list them in '
                      'not_measurable to accept that knowingly')
  return warnings


def write_report(report: Dict[str, Any], out_dir: str) -> Tuple[str, str]:
  """Writes report.json and report.html under `out_dir`; returns both paths."""
  json_path = reports.write_report(out_dir, report, allow_nan=False)
  html_path = os.path.join(out_dir, REPORT_HTML)
  with tf.io.gfile.GFile(html_path, 'w') as f:
    f.write(report_html.render(report))
  return json_path, html_path


def format_summary(report: Dict[str, Any], max_lines: int = 8) -> str:
  """One screen: verdict, the blocking reasons (first few), what was not measured."""
  status = 'BLESSED' if report['blessed'] else 'NOT BLESSED'
  checks = report['checks']
  counted = {s: sum(c['status'] == s for c in checks)
             for s in (fairness.PASS, fairness.FAIL, fairness.INSUFFICIENT,
                       fairness.NOT_MEASURABLE)}
  overall = next((r for r in report['slices'] if r['slice'] == OVERALL), {})
  threshold = report.get('decision_threshold')
  lines = [f"fairness gate: {report['verdict'].upper()} ({status})",
           f"  model: {report['model_uri']}",
           f"  operating point: P(fake) >= "
           f"{'n/a' if threshold is None else serving_contract.format_probability(threshold)}"
           + _chosen_by(report.get('operating_point')),
           '  overall: ' + ', '.join(f'{k} {_fmt(overall.get(k))}'
                                     for k in ('n', 'balanced_accuracy', 'auc', 'fpr', 'fnr',
                                               'tpr_at_fpr_0.01', 'tpr_at_fpr_0.05')),
           f"  checks: {len(checks)} over {len(report['groupings'])} groupings: "
           + ', '.join(f'{v} {k}' for k, v in counted.items() if v)]
  lines += [f'  ! {warning}' for warning in report.get('data_warnings', [])]
  if not report['evaluator_blessed']:
    lines.append(f"  - {report['reasons'][0]}")
  ranked = fairness.refusals_by_grouping(checks)
  for grouping, text in ranked[:max_lines]:
    lines.append(f'  - {grouping}: {text}')
  if len(ranked) > max_lines:
    lines.append(f'  ... and {len(ranked) - max_lines} more groupings (see report.json)')
  production = report.get('production') or {}
  if production.get('production_model_uri'):
    lines.append(f"  vs production ({production['production_model_uri']}): "
                 + ('REGRESSED' if production['regressed'] else 'no regression'))
    lines += [f'  - {reason}' for reason in production['reasons'][:max_lines]]
  elif production:
    lines.append('  vs production: none yet (absolute bounds only)')
  if report.get('rests_on_predicted'):
    accuracy = ', '.join(f"{a} {_fmt(e.get('accuracy'))}" for a, e in
                         ((report.get('annotator') or {}).get('evaluation') or {}).items())
    lines.append(f"  {len(report['rests_on_predicted'])} checks rest on predicted demographics "
                 f"(annotator accuracy on labelled test faces: {accuracy or 'n/a'})")
  if report.get('labelled_only'):
    judged = [c for c in checks if c.get('judged_on') == fairness.LABELLED_ONLY]
    lines.append(f"  {len(judged)} checks judged on labelled faces only (the annotator's "
                 'precision for their groups fails min_annotator_precision; faces of unlabelled '
                 'sources are not in them): ' + ', '.join(
                     f'{n} {s}' for s in (fairness.PASS, fairness.FAIL, fairness.INSUFFICIENT,
                                          fairness.NOT_MEASURABLE)
                     if (n := sum(c['status'] == s for c in judged))))
    if report.get('fail_on_all_examples'):
      lines.append(f"    of them {len(report['fail_on_all_examples'])} fail on all examples, "
                   'predicted groups included (not evidence about the group at that precision)')
  if report.get('label_kinds'):
    lines.append('  fairness checks by kind of group label: ' + ', '.join(
        f'{kind} {len(names)}' for kind, names in report['label_kinds'].items()))
  if report['not_measured']:
    lines.append(f"  declared not measurable ({len(report['not_measured'])}), NOT passed: "
                 + ', '.join(sorted({n.split(': ')[-1] for n in report['not_measured']})))
  return '\n'.join(lines)


def _chosen_by(point: Optional[Dict[str, Any]]) -> str:
  if not point or point.get('chosen_by') != 'target_fpr':
    return ''
  return (f" (chosen for FPR {_fmt(point.get('target_fpr'))} on the {point.get('split')} split: "
          f"FPR {_fmt(point.get('fpr'))}, TPR {_fmt(point.get('tpr'))} there)")


def _fmt(value) -> str:
  if value is None:
    return 'n/a'
  return f'{value:g}' if float(value).is_integer() else f'{value:.4f}'
