"""What a local run produced, read back from MLMD: reports, blessing, pushed model."""

import os
from typing import Any, Dict

from tfx.types import standard_artifacts

from fakefaces.components import artifacts
from fakefaces.components.model_card import executor as card_executor
from fakefaces.components.reports import REPORT_JSON, read_report
from fakefaces.pipeline import run_metadata
from fakefaces.pipeline.config import PipelineConfig


def latest_run_summary(config: PipelineConfig) -> Dict[str, Any]:
  """The newest reports, blessing and push of the run in `config.metadata_path`.

  Raises:
    FileNotFoundError: the metadata file does not exist (no run has used it).
  """
  store = run_metadata.open_store(config.metadata_path)
  summary: Dict[str, Any] = {'pipeline_root': config.pipeline_root,
                             'metadata': config.metadata_path,
                             'serving_model_dir': config.serving_model_dir}
  ingest = run_metadata.latest_artifact(store, artifacts.IngestReport.TYPE_NAME)
  if ingest:
    summary['ingest_report'] = os.path.join(ingest.uri, REPORT_JSON)
    report = read_report(ingest.uri) or {}
    summary['ingest_counts'] = report.get('counts')
  validation = run_metadata.latest_artifact(store, artifacts.DataValidationReport.TYPE_NAME)
  if validation:
    summary['data_report'] = os.path.join(validation.uri, REPORT_JSON)
    report = read_report(validation.uri) or {}
    summary['data_short_groups'] = report.get('coverage', {}).get('short_groups', [])
  fairness = run_metadata.latest_artifact(store, artifacts.FairnessReport.TYPE_NAME)
  if fairness:
    summary['fairness_report'] = os.path.join(fairness.uri, REPORT_JSON)
    report = read_report(fairness.uri) or {}
    summary['blessed'] = report.get('blessed')
    summary['verdict'] = report.get('verdict')
    summary['reasons'] = report.get('reasons', [])
    summary['fairness'] = report
  canary = run_metadata.latest_artifact(store, artifacts.ServingCanaryReport.TYPE_NAME)
  if canary:
    report = read_report(canary.uri) or {}
    summary['canary_report'] = os.path.join(canary.uri, REPORT_JSON)
    summary['canary_passed'] = report.get('passed')
    summary['canary_problems'] = report.get('problems', [])
  card = run_metadata.latest_artifact(store, artifacts.ModelCard.TYPE_NAME)
  if card:
    summary['model_card'] = os.path.join(card.uri, card_executor.CARD_HTML)
  pushed = run_metadata.latest_artifact(store, standard_artifacts.PushedModel.TYPE_NAME)
  if pushed:
    props = pushed.custom_properties
    summary['pushed'] = bool(props['pushed'].int_value) if 'pushed' in props else False
    if summary['pushed']:
      summary['pushed_destination'] = props['pushed_destination'].string_value
  return summary


def format_summary(summary: Dict[str, Any]) -> str:
  lines = [f"pipeline root:   {summary['pipeline_root']}",
           f"metadata (MLMD): {summary['metadata']}"]
  if 'ingest_counts' in summary:
    lines.append(f"ingestion:       {summary['ingest_counts']}  ({summary['ingest_report']})")
  if 'data_report' in summary:
    short = summary['data_short_groups']
    lines.append(f"data validation: passed; {len(short)} group(s) short of examples  "
                 f"({summary['data_report']})")
  if 'fairness_report' in summary:
    from fakefaces.components.fairness_gate import evaluation  # pylint: disable=g-import-not-at-top
    lines.append(evaluation.format_summary(summary['fairness']))
    lines.append(f"  report: {summary['fairness_report']} (+ report.html)")
  if 'canary_report' in summary:
    state = 'passed' if summary['canary_passed'] else 'REFUSED'
    lines.append(f"serving canary:  {state}  ({summary['canary_report']})")
    lines += [f'  - {p}' for p in summary['canary_problems'][:5]]
  if 'model_card' in summary:
    lines.append(f"model card:      {summary['model_card']} (+ model_card.json)")
  if summary.get('pushed'):
    lines.append(f"PUSHED to {summary['pushed_destination']} (model_card.html beside it)")
  else:
    lines.append(f"NOT pushed; serving base dir {summary['serving_model_dir']} left unchanged")
  return '\n'.join(lines)
