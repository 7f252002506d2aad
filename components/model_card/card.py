"""The model card: the Model Card Toolkit's JSON schema, filled from the run, and its HTML.

model-card-toolkit 2.0.0 does not resolve against the project's pins in
reasonable time (pip backtracks through google-cloud packages), so the card
follows its schema without the package: schema/model_card.schema.json is the
toolkit's v0.0.2 schema, copied from the model-card-toolkit 2.0.0 wheel
(Apache 2.0) with one fix (its `"#definitions/graphic"` reference lacked the
slash JSON pointers need, so no validator could resolve it), and tests
validate cards against it. Its top level
allows only schema_version, model_details, model_parameters,
quantitative_analysis and considerations; the project's evidence (every
fairness check, the canary, the push) sits inside those objects as extra
properties, which the schema allows there. Metric values and interval bounds
are strings, as the schema says; integers print as integers. Everything
measured comes from the run's own reports: the FairnessGate's report.json
(per-slice metrics with intervals, every fairness check, the comparison with
the production model), the ServingCanary's report.json, the IngestReport
(data sources with counts) and, when wired, the annotator's report.

A card must name what failed and what could not be measured: every check
whose status is not 'pass' becomes a limitation, with its reason.
"""

import collections
import datetime
import html
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from fakefaces.components.shared import serving_contract
from fakefaces.components.shared.interval_plot import interval_plot

def _threshold_text(value) -> str:
  return 'n/a' if value is None else serving_contract.format_probability(value)


SCHEMA_VERSION = '0.0.2'  # model-card-toolkit's model_card.schema.json version
NOT_PASSED = ('fail', 'insufficient_evidence', 'not_measurable')
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema',
                           'model_card.schema.json')
STATUS_TITLES = {'fail': 'Failed', 'insufficient_evidence': 'Insufficient evidence',
                 'not_measurable': 'Not measured', 'pass': 'Passed'}
SLICE_COLUMNS = ('n', 'real', 'fake', 'accuracy', 'auc', 'precision', 'recall', 'fpr', 'fnr')
COUNT_COLUMNS = ('n', 'real', 'fake')

# The schema's `license` has either an SPDX identifier or a custom text, never both (oneOf):
# the licences of the data are custom texts that name their SPDX identifier.
LICENSES = [
    {'custom_text':
     'Faces are aligned with dlib\'s 68-point landmark model '
     '(shape_predictor_68_face_landmarks.dat, from face-recognition-models), trained on '
     'iBUG 300-W, whose terms exclude commercial use. Using this model commercially needs '
     'your own licence review, or a landmark model trained on data that allows such use.'},
    {'custom_text': 'FairFace images and labels: CC-BY-4.0.'},
    {'custom_text': 'FFHQ, the source of the real photos of the 140k Real and Fake Faces set: '
                    'CC-BY-NC-SA-4.0.'},
]


def source_confounds(sources: Sequence[Dict[str, Any]]) -> List[str]:
  """A confound per source that brought only one class while other sources brought the other.

  E.g. FairFace contributes only real photos, so "real" partly means "looks like
  FairFace": a model can score well by telling the sources apart.
  """
  if len(sources) < 2:
    return []
  items = []
  for source in sources:
    evaluated = source.get('evaluated') or {}
    for only, missing in (('real', 'fake'), ('fake', 'real')):
      if evaluated.get(only) and not evaluated.get(missing):
        items.append(f'Source confound: {source["name"]} contributes only {only} photos, so '
                     f'"{only}" partly means "looks like {source["name"]}"; read the per-source '
                     'metrics. A model can score well by telling the sources apart rather than '
                     'by detecting GANs.')
  return items


def number(value: Any, name: str = '') -> str:
  """A metric as the schema wants it (a string): counts as integers, rates to 4 decimals."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  if name in COUNT_COLUMNS or (isinstance(value, float) and value.is_integer() and abs(value) >= 1
                               and name not in ('accuracy', 'auc', 'precision', 'recall', 'fpr',
                                                'fnr')):
    return str(int(round(value)))
  if isinstance(value, (int, float)):
    return f'{value:.4f}'
  return str(value)


def _interval(values: Optional[Sequence[float]]) -> Optional[Dict[str, str]]:
  if not values or values[0] is None or values[1] is None:
    return None
  return {'lower_bound': number(values[0]), 'upper_bound': number(values[1])}


def slice_intervals(row: Dict[str, Any]) -> Dict[str, Any]:
  intervals = dict(row.get('tfma_intervals') or {})
  intervals.setdefault('fpr', row.get('fpr_interval'))
  intervals.setdefault('fnr', row.get('fnr_interval'))
  return intervals


def performance_metrics(report: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Every per-slice metric of the gate's report, with its interval where there is one."""
  metrics = []
  for row in report.get('slices', []):
    intervals = slice_intervals(row)
    for name in ('n', 'accuracy', 'balanced_accuracy', 'auc', 'tpr_at_fpr_0.01', 'tpr_at_fpr_0.05',
                 'precision', 'recall', 'fpr', 'fnr'):
      if row.get(name) is None:
        continue
      metric = {'type': name, 'value': number(row[name], name), 'slice': row['slice']}
      interval = _interval(intervals.get(name))
      if interval:
        metric['confidence_interval'] = interval
      metrics.append(metric)
  return metrics


def operating_point(report: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """The decision threshold the model's label uses and how it was chosen, or None if not recorded.

  Read from the FairnessGate report, which read it from the model's
  `assets/operating_point.json` (serving_contract.read_operating_point): the one
  place the card, and through the card the web page, take it from.
  """
  if report.get('decision_threshold') is None:
    return None
  return dict(report.get('operating_point') or {},
              decision_threshold=float(report['decision_threshold']))


def data_sources(report: Dict[str, Any], ingest: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """One schema `dataset` per source: what was ingested (IngestReport) and evaluated (test split).

  `faces` is the number of face examples written for the source (all splits);
  `description` says the same in words for readers of the schema's fields only.
  """
  evaluated = {row['features']['source']: row for row in report.get('slices', [])
               if list(row.get('features', {})) == ['source']}
  names = sorted(set(evaluated) | set((ingest or {}).get('by_source', {})))
  sources = []
  for name in names:
    entry: Dict[str, Any] = {'name': name, 'sensitive': {'sensitive_data': [
        'face photos', 'gender, race and age labels (FairFace vocabulary)']}}
    words = []
    if ingest and name in ingest.get('by_source', {}):
      entry['ingested'] = ingest['by_source'][name]
      written = entry['ingested'].get('written') if isinstance(entry['ingested'], dict) else None
      if written is not None:
        entry['faces'] = int(written)
        words.append(f'{int(written)} faces ingested (train, eval and test splits)')
    if name in evaluated:
      row = evaluated[name]
      entry['evaluated'] = {'examples': row.get('n'), 'real': row.get('real'),
                            'fake': row.get('fake')}
      words.append(f'test split: {number(row.get("n"), "n")} faces ({number(row.get("real"), "n")} '
                   f'real, {number(row.get("fake"), "n")} fake)')
    entry['description'] = '; '.join(words) or 'no counts recorded'
    sources.append(entry)
  return sources


def limitations(report: Dict[str, Any], canary: Optional[Dict[str, Any]],
                annotator: Optional[Dict[str, Any]], sources: Sequence[Dict[str, Any]] = (),
                training_data_note: str = '') -> List[Dict[str, str]]:
  """Every failed, insufficient or unmeasured check, the data warnings and data actually used,
  and known confounds: generated from this run's reports, never fixed text alone."""
  items = [{'description': text} for text in source_confounds(sources)]
  if training_data_note:
    items.insert(0, {'description': training_data_note})
  if sources:
    items.append({'description': 'Trained and evaluated only on: ' + '; '.join(
        f"{s['name']} ({s['description']})" for s in sources)
        + '. Other photo sources, cameras and generators were not measured.'})
  for warning in report.get('data_warnings', []):
    items.append({'description': f'Not measurable on this data: {warning}'})
  # Checks with the same status, grouping, metric and reason are one line with their count
  # (judge_each_value_of gives one check per value: six identical lines otherwise).
  repeated = collections.Counter()
  for check in report.get('checks', []):
    if check['status'] in NOT_PASSED:
      label = {'fail': 'FAILED', 'insufficient_evidence': 'INSUFFICIENT EVIDENCE',
               'not_measurable': 'NOT MEASURED'}[check['status']]
      repeated[f"{label}: {check['grouping']}: {check['metric']}"
               + (f" ({check['reason']})" if check.get('reason') else '')] += 1
  for text, count in repeated.items():
    items.append({'description': text + (f' [{count} checks]' if count > 1 else '')})
  for kind, what in (('prompted', 'what a generator was asked for, not a person\'s judgement '
                                 'of the image'),
                     ('predicted', 'the demographic annotator\'s predictions')):
    resting = (report.get('label_kinds') or {}).get(kind) or []
    if resting:
      items.append({'description': f'{len(resting)} fairness checks rest on {kind} '
                                   f'demographics ({what}): ' + ', '.join(resting[:5])
                                   + (' ...' if len(resting) > 5 else '')})
  if not report.get('evaluator_blessed', True):
    items.append({'description': 'FAILED: the Evaluator\'s balanced accuracy/AUC thresholds'})
  for reason in (report.get('production') or {}).get('reasons', []):
    items.append({'description': f'FAILED: {reason}'})
  for problem in (canary or {}).get('problems', []):
    items.append({'description': f'Serving canary: {problem}'})
  if annotator is None or annotator.get('skipped'):
    items.append({'description': 'Demographics come from the datasets\' labels; no '
                                 'demographic annotator was used, so groups without labels '
                                 '(e.g. GAN fakes) are unknown.'})
  return items


def build_card(config, model_uri: str, report: Dict[str, Any], canary: Optional[Dict[str, Any]],
               pushed: Dict[str, Any], ingest: Optional[Dict[str, Any]] = None,
               annotator: Optional[Dict[str, Any]] = None,
               graphics: Sequence[Dict[str, str]] = ()) -> Dict[str, Any]:
  """The card as a dict (model_card.json), valid against SCHEMA_FILE.

  `graphics`: schema `graphic`s ({name, image: base64 PNG}), e.g. the Trainer's
  learning curves.
  """
  version = pushed.get('version') or 'not pushed'
  checks = report.get('checks', [])
  sources = data_sources(report, ingest)
  note = getattr(config, 'training_data_note', '') or ''
  card = {
      'schema_version': SCHEMA_VERSION,
      'model_details': {
          'name': config.name,
          'overview': config.overview,
          'owners': [{'name': owner} for owner in config.owners],
          'version': {'name': str(version),
                      'date': datetime.datetime.now(datetime.timezone.utc).date().isoformat()},
          'licenses': LICENSES,
          'references': [{'reference': model_uri}],
          'citations': [{'citation': 'Fighting Fakes Fairly (VGG10 detector, fairness on '
                                     'FairFace demographics)'}],
          # Project extensions: where the model went and what its serving canary saw.
          'deployment': pushed,
          'serving_canary': None if canary is None else {
              'passed': canary.get('passed'), 'server': canary.get('server'),
              'signatures': canary.get('signatures'), 'problems': canary.get('problems', []),
              'calls': [{k: c.get(k) for k in ('signature', 'input', 'code', 'ok')}
                        for c in canary.get('calls', [])]},
      },
      'model_parameters': {
          'model_architecture': 'VGG10 (or its 3-convolution baseline), tf_keras',
          'data': sources,
          'input_format': 'encoded JPEG/PNG image bytes (serving_default: image_bytes) or '
                          'serialized tf.Example (from_examples: examples)',
          'output_format': 'fake_probability (float in [0, 1]) and label (real/fake): fake when '
                           f'fake_probability >= {_threshold_text(report.get("decision_threshold"))}',
          # Project extensions, read by the web page.
          'training_data_note': note,
          'operating_point': operating_point(report),
          # ANNOTATOR HOOK: the DemographicAnnotator's report, when the pipeline used one.
          'demographic_annotator': annotator_section(annotator),
      },
      'quantitative_analysis': {
          'performance_metrics': performance_metrics(report),
          'graphics': {'description': 'Learning curves of the training run',
                       'collection': list(graphics)},
          # Project extension: the full evidence behind the push decision.
          'fairness': {
              'verdict': report.get('verdict'), 'blessed': report.get('blessed'),
              'reasons': report.get('reasons', []),
              'bounds': report.get('bounds'), 'confidence_level': report.get('confidence_level'),
              'checks': checks,
              'failed': [f"{c['grouping']}: {c['metric']}" for c in checks if c['status'] == 'fail'],
              'unmeasured': [f"{c['grouping']}: {c['metric']} ({c['status']})" for c in checks
                             if c['status'] in ('insufficient_evidence', 'not_measurable')],
              'production_comparison': report.get('production'),
              'slices': report.get('slices', []),
          },
      },
      'considerations': {
          'users': [{'description': 'trust-and-safety reviewers'}],
          'use_cases': [{'description': config.intended_use}],
          'limitations': limitations(report, canary, annotator, sources, note),
          'ethical_considerations': [{
              'name': 'A detector that flags real photos of one group as fake more often '
                      'harms that group.',
              'mitigation_strategy': 'The FairnessGate refuses models whose disparate impact, '
                                     'average odds difference or FPR/FNR gaps exceed the '
                                     'bounds, or grow against the model in production.'}],
      },
  }
  return card


def fairness(card: Dict[str, Any]) -> Dict[str, Any]:
  """The card's fairness evidence (quantitative_analysis.fairness)."""
  return card['quantitative_analysis']['fairness']


def annotator_section(annotator: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
  """The annotator's accuracy (overall and per group, as its report gives them), or None."""
  if annotator is None:
    return None
  per_attribute = {
      attribute: {k: result.get(k) for k in ('accuracy', 'n', 'coverage', 'min_confidence',
                                              'confident_accuracy')}
      for attribute, result in (annotator.get('evaluation') or {}).items()}
  if annotator.get('skipped'):
    return {'used': False, 'skipped': annotator['skipped']}
  return {'used': True, 'descriptor': annotator.get('descriptor'),
          'evaluated_on': annotator.get('test_split'), 'accuracy_by_attribute': per_attribute,
          'small_data': annotator.get('small_data')}


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _cell(row: Dict[str, Any], name: str, intervals: Dict[str, Any]) -> str:
  interval = _interval(intervals.get(name))
  text = _e(number(row.get(name), name))
  if interval:
    text += f' <span class="muted">[{interval["lower_bound"]}, {interval["upper_bound"]}]</span>'
  return text


def _slice_table(rows: Sequence[Dict[str, Any]], table_id: str) -> str:
  head = ''.join(f'<th>{_e(c)}</th>' for c in ('slice',) + SLICE_COLUMNS)
  body = ''.join(
      '<tr><td class="l">' + _e(r['slice']) + '</td>'
      + ''.join(f'<td>{_cell(r, c, slice_intervals(r))}</td>' for c in SLICE_COLUMNS) + '</tr>'
      for r in rows)
  return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _checks_by_status(checks: Sequence[Dict[str, Any]]) -> str:
  out = []
  for status in ('fail', 'insufficient_evidence', 'not_measurable', 'pass'):
    group = [c for c in checks if c.get('status') == status]
    if not group:
      continue
    out.append(f'<h3 id="checks-{status}"><span class="badge {status}">{STATUS_TITLES[status]}'
               f'</span> {len(group)} check{"s" if len(group) != 1 else ""}</h3>'
               '<table><thead><tr><th>grouping</th><th>metric</th><th>value</th>'
               '<th>interval</th><th>bound</th><th>reason</th></tr></thead><tbody>')
    for c in group:
      interval = _interval(c.get('interval'))
      bound = c.get('bound')
      bound_text = ('[' + ', '.join(number(b) for b in bound) + ']'
                    if isinstance(bound, (list, tuple)) else number(bound) if bound is not None
                    else '')
      out.append(f'<tr><td class="l">{_e(c.get("grouping"))}</td><td>{_e(c.get("metric"))}</td>'
                 f'<td>{_e(number(c.get("value")))}</td>'
                 f'<td>{"" if not interval else _e("[" + interval["lower_bound"] + ", " + interval["upper_bound"] + "]")}</td>'
                 f'<td>{_e(bound_text)}</td><td class="l">{_e(c.get("reason") or "")}</td></tr>')
    out.append('</tbody></table>')
  return ''.join(out) or '<p>No fairness checks were run.</p>'


def _rate_plots(slices: Sequence[Dict[str, Any]]) -> str:
  rows = [r for r in slices if len(r.get('features', {})) <= 1]
  if not rows:
    return '<p>No per-slice rates were measured.</p>'
  out = []
  for rate, what in (('fpr', 'real photos called fake'), ('fnr', 'fakes let through')):
    items = [(r['slice'], r.get(rate) if r.get(f'{rate}_interval') else None,
              r.get(f'{rate}_interval'), None) for r in rows]
    out.append(f'<h3>{rate.upper()} per group ({what}), with intervals</h3>'
               + interval_plot(items, domain=(0.0, 1.0)))
  return ''.join(out)


def _summary(card: Dict[str, Any]) -> str:
  details, params = card['model_details'], card['model_parameters']
  evidence = fairness(card)
  deployment = details.get('deployment') or {}
  canary = details.get('serving_canary')
  point = params.get('operating_point')
  verdict = str(evidence.get('verdict'))
  items = [f'<li>Fairness gate: <span class="badge {_e(verdict)}">{_e(verdict)}</span> '
           f'({"blessed" if evidence.get("blessed") else "not blessed"}; '
           f'{len(evidence.get("failed", []))} failed, {len(evidence.get("unmeasured", []))} '
           'not measured)</li>',
           '<li>Operating point: ' + (_operating_point_text(point) if point else 'not recorded')
           + '</li>',
           '<li>Pushed: ' + (f'yes, version {_e(deployment.get("version"))}'
                             if deployment.get('pushed') else 'no') + '</li>']
  if canary is not None:
    calls = canary.get('calls') or []
    items.append(f'<li>Serving canary: {sum(1 for c in calls if c.get("ok"))} of {len(calls)} '
                 'signature calls answered as the contract says'
                 + ('' if canary.get('passed') else ' (FAILED)') + '</li>')
  headline = [r for r in evidence.get('slices', [])
              if not r.get('features') or list(r.get('features', {})) == ['source']]
  return ('<h2>Summary</h2><ul id="summary">' + ''.join(items) + '</ul>'
          + ('<h3>Headline metrics, overall and per source (95% intervals where measured)</h3>'
             + _slice_table(headline, 'headline') if headline else ''))


def _operating_point_text(point: Dict[str, Any]) -> str:
  text = f'"fake" when P(fake) &ge; {_threshold_text(point["decision_threshold"])}'
  if point.get('chosen_by') == 'target_fpr':
    text += (f' (chosen for FPR {_e(number(point.get("target_fpr")))} on the '
             f'{_e(point.get("split"))} split: FPR {_e(number(point.get("fpr")))}, TPR '
             f'{_e(number(point.get("tpr")))}, AUC {_e(number(point.get("auc")))} there)')
  return text


def render_html(card: Dict[str, Any]) -> str:
  """A self-contained model_card.html: a document to read, in the schema's order."""
  details, params = card['model_details'], card['model_parameters']
  analysis, considerations = card['quantitative_analysis'], card['considerations']
  evidence = fairness(card)
  out = [f'<h1>Model card: {_e(details["name"])}</h1><p class="muted">version '
         f'{_e(details["version"]["name"])}, {_e(details["version"]["date"])}</p>']
  if params.get('training_data_note'):
    out.append(f'<p class="warn" id="training-note">{_e(params["training_data_note"])}</p>')
  out.append(f'<p>{_e(details["overview"])}</p>')
  out.append(_summary(card))
  out.append('<h2>Limitations</h2><p class="muted">Generated from this run: every failed, '
             'insufficient or unmeasured check, and the data actually used.</p><ul id="limitations">')
  out += [f'<li>{_e(item["description"])}</li>' for item in considerations['limitations']]
  out.append('</ul><h2>Intended use</h2><ul>')
  out += [f'<li>{_e(u["description"])}</li>' for u in considerations['use_cases']]
  out.append('</ul><h2>Data sources</h2><table id="sources"><thead><tr><th>source</th>'
             '<th>faces ingested</th><th>test faces</th><th>real</th><th>fake</th></tr></thead>'
             '<tbody>')
  for source in params['data']:
    evaluated = source.get('evaluated') or {}
    out.append(f'<tr><td class="l">{_e(source["name"])}</td>'
               f'<td>{_e(number(source.get("faces"), "n"))}</td>'
               + ''.join(f'<td>{_e(number(evaluated.get(k), "n"))}</td>'
                         for k in ('examples', 'real', 'fake')) + '</tr>')
  out.append('</tbody></table><h2>Metrics per slice</h2><p class="muted">Counts are faces of the '
             'test split; intervals are 95% where the gate measured them.</p>')
  out.append(_slice_table(evidence.get('slices', []), 'slices'))
  out.append('<h2>Plots</h2>')
  out.append(_rate_plots(evidence.get('slices', [])))
  graphics = (analysis.get('graphics') or {}).get('collection') or []
  if graphics:
    out += [f'<h3>{_e(g["name"])}</h3><img class="graphic" alt="{_e(g["name"])}" '
            f'src="data:image/png;base64,{g["image"]}">' for g in graphics]
  else:
    out.append('<p id="no-curves">No learning curve was recorded beside this model.</p>')
  out.append('<h2>Fairness checks, by verdict</h2>')
  out.append(_checks_by_status(evidence.get('checks', [])))
  comparison = evidence.get('production_comparison') or {}
  if comparison.get('production_model_uri'):
    out.append('<h2>Candidate vs production</h2><table><thead><tr><th>metric</th>'
               '<th>candidate</th><th>production</th><th>change</th><th>status</th></tr></thead>'
               '<tbody>')
    for row in comparison.get('overall', []):
      out.append(f'<tr><td class="l">{_e(row["metric"])}</td><td>{_e(number(row["candidate"]))}</td>'
                 f'<td>{_e(number(row["production"]))}</td><td>{_e(number(row["change"]))}</td>'
                 f'<td>{_e(row.get("status", ""))}</td></tr>')
    out.append('</tbody></table>')
  elif comparison:
    out.append(f'<h2>Candidate vs production</h2><p>{_e(comparison.get("note", ""))}</p>')
  annotator = params.get('demographic_annotator')
  out.append('<h2>Demographic annotator</h2>')
  if not annotator:
    out.append('<p>Not used: demographics come from the datasets\' labels.</p>')
  elif not annotator.get('used'):
    out.append(f'<p>Skipped: {_e(annotator.get("skipped"))}.</p>')
  else:
    out.append('<table><thead><tr><th>attribute</th><th>accuracy</th><th>labelled test faces</th>'
               '<th>coverage</th><th>min confidence</th><th>accuracy when confident</th></tr>'
               '</thead><tbody>')
    for attribute, result in annotator['accuracy_by_attribute'].items():
      out.append(f'<tr><td class="l">{_e(attribute)}</td><td>{_e(number(result.get("accuracy")))}</td>'
                 f'<td>{_e(number(result.get("n"), "n"))}</td><td>{_e(number(result.get("coverage")))}</td>'
                 f'<td>{_e(number(result.get("min_confidence")))}</td>'
                 f'<td>{_e(number(result.get("confident_accuracy")))}</td></tr>')
    out.append('</tbody></table>')
  out.append('<h2>Ethical considerations</h2><ul>')
  out += [f'<li>{_e(r["name"])} {_e(r["mitigation_strategy"])}</li>'
          for r in considerations['ethical_considerations']]
  out.append('</ul><h2>Licences</h2><ul>')
  out += [f'<li>{_e(lic.get("identifier") or lic.get("custom_text"))}</li>'
          for lic in details['licenses']]
  out.append('</ul>')
  style = ('body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;'
           'color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;'
           'padding:2px 6px;font-size:13px;text-align:right}td.l{text-align:left}'
           '.muted{color:#666;font-size:12px}.warn{background:#fff7e0;border:1px solid #c90;'
           'padding:.6em;border-radius:6px}.badge{padding:2px 8px;border-radius:4px;color:#fff}'
           '.pass{background:#2e7d32}.fail{background:#c62828}.insufficient_evidence{background:'
           '#ef6c00}.not_measurable{background:#6d6d6d}img.graphic{max-width:100%}'
           'svg{font-size:11px;font-family:inherit;max-width:100%}'
           '@media (max-width:600px){table{display:block;overflow-x:auto}}')
  return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
          '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Model card: '
          f'{_e(details["name"])}</title><style>{style}</style></head><body>'
          + ''.join(out) + '</body></html>')
