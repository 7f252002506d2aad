"""The model card: the Model Card Toolkit's JSON schema, filled from the run, and its HTML.

model-card-toolkit 2.0.0 does not resolve against the project's pins in
reasonable time (pip backtracks through google-cloud packages), so the card
follows its schema (v0.0.2: model_details, model_parameters,
quantitative_analysis, considerations) without the package. Everything
measured comes from the run's own reports: the FairnessGate's report.json
(per-slice metrics with intervals, every fairness check, the comparison with
the production model), the ServingCanary's report.json, the IngestReport
(data sources with counts) and, when wired, the annotator's report.

A card must name what failed and what could not be measured: every check
whose status is not 'pass' becomes a limitation, with its reason.
"""

import datetime
import html
from typing import Any, Dict, List, Optional

SCHEMA_VERSION = '0.0.2'  # model-card-toolkit's model_card.schema.json version
NOT_PASSED = ('fail', 'insufficient_evidence', 'not_measurable')

LICENSES = [
    {'identifier': 'custom', 'custom_text':
     'Faces are aligned with dlib\'s 68-point landmark model '
     '(shape_predictor_68_face_landmarks.dat, from face-recognition-models), trained on '
     'iBUG 300-W, whose terms exclude commercial use. Using this model commercially needs '
     'your own licence review, or a landmark model trained on data that allows such use.'},
    {'identifier': 'CC-BY-4.0', 'custom_text': 'FairFace images and labels.'},
    {'identifier': 'CC-BY-NC-SA-4.0',
     'custom_text': 'FFHQ, the source of the real photos of the 140k Real and Fake Faces set.'},
]
SOURCE_CONFOUND = ('Source confound: FairFace contributes only real photos, so "real" partly '
                   'means "looks like FairFace"; read the per-source metrics. A model can '
                   'score well by telling the sources apart rather than by detecting GANs.')


def _interval(values: Optional[List[float]]) -> Optional[Dict[str, float]]:
  if not values or values[0] is None or values[1] is None:
    return None
  return {'lower_bound': values[0], 'upper_bound': values[1]}


def performance_metrics(report: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Every per-slice metric of the gate's report, with its interval where there is one."""
  metrics = []
  for row in report.get('slices', []):
    intervals = dict(row.get('tfma_intervals') or {})
    intervals.setdefault('fpr', row.get('fpr_interval'))
    intervals.setdefault('fnr', row.get('fnr_interval'))
    for name in ('n', 'accuracy', 'balanced_accuracy', 'auc', 'tpr_at_fpr_0.01', 'tpr_at_fpr_0.05',
                 'precision', 'recall', 'fpr', 'fnr'):
      if row.get(name) is None:
        continue
      metric = {'type': name, 'value': row[name], 'slice': row['slice']}
      interval = _interval(intervals.get(name))
      if interval:
        metric['confidence_interval'] = interval
      metrics.append(metric)
  return metrics


def operating_point(report: Dict[str, Any]) -> Dict[str, Any]:
  """The decision threshold the model's label uses, and what it does where it was chosen."""
  return dict(report.get('operating_point') or {},
              decision_threshold=report.get('decision_threshold'))


def data_sources(report: Dict[str, Any], ingest: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """One entry per data source: what was ingested (IngestReport) and evaluated (test split)."""
  evaluated = {row['features']['source']: row for row in report.get('slices', [])
               if list(row.get('features', {})) == ['source']}
  names = sorted(set(evaluated) | set((ingest or {}).get('by_source', {})))
  sources = []
  for name in names:
    entry: Dict[str, Any] = {'name': name, 'sensitive': {'sensitive_data': [
        'face photos', 'gender, race and age labels (FairFace vocabulary)']}}
    if ingest and name in ingest.get('by_source', {}):
      entry['ingested'] = ingest['by_source'][name]
    if name in evaluated:
      row = evaluated[name]
      entry['evaluated'] = {'examples': row.get('n'), 'real': row.get('real'),
                            'fake': row.get('fake')}
    sources.append(entry)
  return sources


def limitations(report: Dict[str, Any], canary: Optional[Dict[str, Any]],
                annotator: Optional[Dict[str, Any]]) -> List[Dict[str, str]]:
  """Every failed, insufficient or unmeasured check, the data warnings, and known confounds."""
  items = [{'description': SOURCE_CONFOUND}]
  for warning in report.get('data_warnings', []):
    items.append({'description': f'Not measurable on this data: {warning}'})
  for check in report.get('checks', []):
    if check['status'] in NOT_PASSED:
      label = {'fail': 'FAILED', 'insufficient_evidence': 'INSUFFICIENT EVIDENCE',
               'not_measurable': 'NOT MEASURED'}[check['status']]
      items.append({'description': f"{label}: {check['grouping']}: {check['metric']}"
                                   + (f" ({check['reason']})" if check.get('reason') else '')})
  if not report.get('evaluator_blessed', True):
    items.append({'description': 'FAILED: the Evaluator\'s balanced accuracy/AUC thresholds'})
  for reason in (report.get('production') or {}).get('reasons', []):
    items.append({'description': f'FAILED: {reason}'})
  for problem in (canary or {}).get('problems', []):
    items.append({'description': f'Serving canary: {problem}'})
  if annotator is None:
    items.append({'description': 'Demographics come from the datasets\' labels; no '
                                 'demographic annotator was used, so groups without labels '
                                 '(e.g. GAN fakes) are unknown.'})
  return items


def build_card(config, model_uri: str, report: Dict[str, Any], canary: Optional[Dict[str, Any]],
               pushed: Dict[str, Any], ingest: Optional[Dict[str, Any]] = None,
               annotator: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """The card as a dict (model_card.json)."""
  version = pushed.get('version') or 'not pushed'
  checks = report.get('checks', [])
  card = {
      'schema_version': SCHEMA_VERSION,
      'model_details': {
          'name': config.name,
          'overview': config.overview,
          'owners': [{'name': owner} for owner in config.owners],
          'version': {'name': str(version),
                      'date': datetime.datetime.now(datetime.timezone.utc).isoformat()},
          'licenses': LICENSES,
          'references': [{'reference': model_uri}],
          'citations': [{'citation': 'Fighting Fakes Fairly (VGG10 detector, fairness on '
                                     'FairFace demographics)'}],
      },
      'model_parameters': {
          'model_architecture': 'VGG10 (or its 3-convolution baseline), tf_keras',
          'data': data_sources(report, ingest),
          'input_format': 'encoded JPEG/PNG image bytes (serving_default: image_bytes) or '
                          'serialized tf.Example (from_examples: examples)',
          'output_format': 'fake_probability (float in [0, 1]) and label (real/fake): fake when '
                           f'fake_probability >= {report.get("decision_threshold")}',
          # Project extension: the decision threshold and how it was chosen (the model's
          # assets/operating_point.json, as the FairnessGate read it).
          'operating_point': operating_point(report),
      },
      'quantitative_analysis': {'performance_metrics': performance_metrics(report)},
      'considerations': {
          'users': [{'description': 'trust-and-safety reviewers'}],
          'use_cases': [{'description': config.intended_use}],
          'limitations': limitations(report, canary, annotator),
          'ethical_considerations': [{
              'name': 'A detector that flags real photos of one group as fake more often '
                      'harms that group.',
              'mitigation_strategy': 'The FairnessGate refuses models whose disparate impact, '
                                     'average odds difference or FPR/FNR gaps exceed the '
                                     'bounds, or grow against the model in production.'}],
      },
      # Project extension of the schema: the full evidence behind the push decision.
      'fairness': {
          'verdict': report.get('verdict'), 'blessed': report.get('blessed'),
          'reasons': report.get('reasons', []),
          'bounds': report.get('bounds'), 'confidence_level': report.get('confidence_level'),
          'checks': checks,
          'failed': [f"{c['grouping']}: {c['metric']}" for c in checks if c['status'] == 'fail'],
          'unmeasured': [f"{c['grouping']}: {c['metric']} ({c['status']})" for c in checks
                         if c['status'] in ('insufficient_evidence', 'not_measurable')],
          'production_comparison': report.get('production'),
      },
      'serving_canary': None if canary is None else {
          'passed': canary.get('passed'), 'server': canary.get('server'),
          'signatures': canary.get('signatures'), 'problems': canary.get('problems', []),
          'calls': [{k: c.get(k) for k in ('signature', 'input', 'code', 'ok')}
                    for c in canary.get('calls', [])]},
      # ANNOTATOR HOOK: the DemographicAnnotator's report, when the pipeline used one.
      'annotator': annotator_section(annotator),
      'deployment': pushed,
  }
  return card


def annotator_section(annotator: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The annotator's accuracy (overall and per group, as its report gives them), or None."""
  if annotator is None:
    return None
  per_attribute = {
      attribute: {k: result.get(k) for k in ('accuracy', 'n', 'coverage', 'min_confidence',
                                              'confident_accuracy')}
      for attribute, result in (annotator.get('evaluation') or {}).items()}
  return {'used': True, 'descriptor': annotator.get('descriptor'),
          'evaluated_on': annotator.get('test_split'), 'accuracy_by_attribute': per_attribute,
          'small_data': annotator.get('small_data')}


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4f}'
  return _e(value)


def _operating_point_html(point: Dict[str, Any]) -> str:
  text = f'<p><b>Operating point:</b> called fake at P(fake) &ge; {_num(point.get("decision_threshold"))}'
  if point.get('chosen_by') == 'target_fpr':
    text += (f' (chosen for FPR {_num(point.get("target_fpr"))} on the {_e(point.get("split"))} '
             f'split: FPR {_num(point.get("fpr"))}, TPR {_num(point.get("tpr"))}, AUC '
             f'{_num(point.get("auc"))} there)')
  return text + '</p>'


def render_html(card: Dict[str, Any]) -> str:
  """A self-contained model_card.html."""
  details, params = card['model_details'], card['model_parameters']
  fairness = card['fairness']
  out = [f'<h1>Model card: {_e(details["name"])} <small>version {_e(details["version"]["name"])}'
         f'</small></h1><p>{_e(details["overview"])}</p>',
         f'<p><b>Fairness gate:</b> {_e(fairness["verdict"])} '
         f'({"blessed" if fairness["blessed"] else "not blessed"}); <b>serving canary:</b> '
         f'{_e((card["serving_canary"] or {}).get("passed"))}; <b>pushed:</b> '
         f'{_e(card["deployment"].get("pushed"))} {_e(card["deployment"].get("destination", ""))}'
         '</p>',
         _operating_point_html(params.get('operating_point') or {}),
         '<h2>Limitations (every failed or unmeasured check)</h2><ul>']
  out += [f'<li>{_e(item["description"])}</li>' for item in card['considerations']['limitations']]
  out.append('</ul><h2>Intended use</h2><ul>')
  out += [f'<li>{_e(u["description"])}</li>' for u in card['considerations']['use_cases']]
  out.append('</ul><h2>Data sources</h2><table><tr><th>source</th><th>ingested</th>'
             '<th>evaluated</th></tr>')
  for source in params['data']:
    out.append(f'<tr><td>{_e(source["name"])}</td><td>{_e(source.get("ingested", "-"))}</td>'
               f'<td>{_e(source.get("evaluated", "-"))}</td></tr>')
  out.append('</table><h2>Metrics per slice</h2><table><tr><th>slice</th><th>metric</th>'
             '<th>value</th><th>interval</th></tr>')
  for m in card['quantitative_analysis']['performance_metrics']:
    ci = m.get('confidence_interval')
    out.append(f'<tr><td>{_e(m["slice"])}</td><td>{_e(m["type"])}</td><td>{_num(m["value"])}</td>'
               f'<td>{"" if not ci else "[" + _num(ci["lower_bound"]) + ", " + _num(ci["upper_bound"]) + "]"}'
               '</td></tr>')
  out.append('</table><h2>Fairness checks</h2><table><tr><th>grouping</th><th>metric</th>'
             '<th>value</th><th>interval</th><th>bound</th><th>status</th></tr>')
  for c in fairness['checks']:
    out.append(f'<tr class="{_e(c["status"])}"><td>{_e(c["grouping"])}</td><td>{_e(c["metric"])}'
               f'</td><td>{_num(c["value"])}</td><td>{_e(c.get("interval"))}</td>'
               f'<td>{_e(c.get("bound"))}</td><td>{_e(c["status"])}</td></tr>')
  out.append('</table>')
  comparison = fairness.get('production_comparison') or {}
  if comparison.get('production_model_uri'):
    out.append('<h2>Candidate vs production</h2><table><tr><th>metric</th><th>candidate</th>'
               '<th>production</th><th>change</th><th>status</th></tr>')
    for row in comparison.get('overall', []):
      out.append(f'<tr><td>{_e(row["metric"])}</td><td>{_num(row["candidate"])}</td>'
                 f'<td>{_num(row["production"])}</td><td>{_num(row["change"])}</td>'
                 f'<td>{_e(row.get("status", ""))}</td></tr>')
    out.append('</table>')
  elif comparison:
    out.append(f'<h2>Candidate vs production</h2><p>{_e(comparison.get("note", ""))}</p>')
  if card['annotator']:
    out.append(f'<h2>Demographic annotator</h2><p>{_e(card["annotator"])}</p>')
  out.append('<h2>Licences</h2><ul>')
  out += [f'<li>{_e(lic["identifier"])}: {_e(lic["custom_text"])}</li>'
          for lic in details['licenses']]
  out.append('</ul>')
  style = ('body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:'
           'collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}'
           'tr.fail{background:#fdd}tr.insufficient_evidence,tr.not_measurable{background:#ffd}')
  return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Model card: '
          f'{_e(details["name"])}</title><style>{style}</style></head><body>'
          + ''.join(out) + '</body></html>')
