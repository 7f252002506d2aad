"""What a local run produced, read back from MLMD: reports, blessing, pushed model."""

import os
from typing import Any, Callable, Dict, Tuple

from tfx.types import standard_artifacts

from fakefaces.components.shared import artifacts
from fakefaces.components.model_card import executor as card_executor
from fakefaces.components.shared.reports import REPORT_JSON, read_report
from fakefaces.pipeline import run_metadata
from fakefaces.pipeline.config import PipelineConfig


# What the summary takes from each artifact's newest version: (artifact type, the
# summary key of its file's path, that file, {summary key: field read from its report}).
_REPORTS: Tuple[Tuple[str, str, str, Dict[str, Callable[[Dict[str, Any]], Any]]], ...] = (
    (artifacts.IngestReport.TYPE_NAME, 'ingest_report', REPORT_JSON,
     {'ingest_counts': lambda r: r.get('counts')}),
    (artifacts.DataValidationReport.TYPE_NAME, 'data_report', REPORT_JSON,
     {'data_short_groups': lambda r: r.get('coverage', {}).get('short_groups', [])}),
    (artifacts.FairnessReport.TYPE_NAME, 'fairness_report', REPORT_JSON,
     {'blessed': lambda r: r.get('blessed'), 'verdict': lambda r: r.get('verdict'),
      'reasons': lambda r: r.get('reasons', []), 'fairness': lambda r: r}),
    (artifacts.ServingCanaryReport.TYPE_NAME, 'canary_report', REPORT_JSON,
     {'canary_passed': lambda r: r.get('passed'),
      'canary_problems': lambda r: r.get('problems', [])}),
    (artifacts.ModelCard.TYPE_NAME, 'model_card', card_executor.CARD_HTML, {}),
)


def latest_run_summary(config: PipelineConfig) -> Dict[str, Any]:
  """The newest reports, blessing and push of the run in `config.metadata_path`.

  Raises:
    FileNotFoundError: the metadata file does not exist (no run has used it).
  """
  store = run_metadata.open_store(config.metadata_path)
  summary: Dict[str, Any] = {'pipeline_root': config.pipeline_root,
                             'metadata': config.metadata_path,
                             'serving_model_dir': config.serving_model_dir}
  for type_name, path_key, file_name, fields in _REPORTS:
    artifact = run_metadata.latest_artifact(store, type_name)
    if not artifact:
      continue
    summary[path_key] = os.path.join(artifact.uri, file_name)
    if fields:
      report = read_report(artifact.uri) or {}
      summary.update({key: read(report) for key, read in fields.items()})
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
