"""Custom artifact types, and the one reader and writer of their JSON reports.

Type names follow KFP v2's `<namespace>.<Type>` rule. Every report this
project's components write is one JSON file in the artifact's folder
(`report.json` unless named otherwise); the components that write them, the
ones that read another's (FairnessGate, ModelCardGen) and the run summary all
go through `write_report` and `read_report`.
"""

import json
import os
from typing import Any, Callable, Dict, Optional

import tensorflow as tf
from tfx.types.artifact import Artifact

REPORT_JSON = 'report.json'


class IngestReport(Artifact):
  """report.json: what happened to every input file (written / no face / unreadable / filtered)."""
  TYPE_NAME = 'fakefaces.IngestReport'


class DataValidationReport(Artifact):
  """report.json: anomalies found, slice coverage, skew/drift; written only when data passes."""
  TYPE_NAME = 'fakefaces.DataValidationReport'


class FairnessReport(Artifact):
  """report.json + report.html: per-group rates, DI/AOD, and the gate's verdict."""
  TYPE_NAME = 'fakefaces.FairnessReport'


class ServingCanaryReport(Artifact):
  """report.json: every signature's calls in the serving stack (real and bad inputs), the verdict."""
  TYPE_NAME = 'fakefaces.ServingCanaryReport'


class ModelCard(Artifact):
  """model_card.json + model_card.html: who the model fails, with what evidence (issue 14)."""
  TYPE_NAME = 'fakefaces.ModelCard'


class Annotations(Artifact):
  """DemographicAnnotator output: report.json, classifiers.pkl, predictions.csv."""
  TYPE_NAME = 'fakefaces.Annotations'


def write_report(uri: str, report: Dict[str, Any], name: str = REPORT_JSON, *,
                 allow_nan: bool = True, ensure_ascii: bool = True,
                 default: Optional[Callable[[Any], Any]] = None) -> str:
  """Writes `report` as indented JSON to `<uri>/<name>` (local or remote) and returns that path.

  The folder is created when missing (nothing orders a report after the writers of
  its artifact's other files). The keyword arguments are `json.dump`'s:
  `allow_nan=False` refuses NaN and infinity, which are not JSON (a browser's
  `JSON.parse` rejects them); `ensure_ascii=False` keeps non-ASCII file names
  readable; `default` serializes what JSON has no type for.

  Raises:
    ValueError: `allow_nan` is False and the report holds NaN or infinity.
    TypeError: the report holds a value JSON cannot encode and `default` is None.
  """
  path = os.path.join(uri, name)
  # Encoded before the file is opened: a report that cannot be written leaves no half file.
  text = json.dumps(report, indent=2, allow_nan=allow_nan, ensure_ascii=ensure_ascii,
                    default=default)
  tf.io.gfile.makedirs(uri)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)
  return path


def read_report(uri: str, name: str = REPORT_JSON, *,
                missing_ok: bool = True) -> Optional[Dict[str, Any]]:
  """The JSON report `<uri>/<name>` (local or remote), or None when there is none.

  Args:
    uri: the artifact's folder (or any folder holding the file).
    name: the file's name in it.
    missing_ok: False raises when the file is absent, for callers that just wrote it.

  Raises:
    FileNotFoundError: the file is absent and `missing_ok` is False.
    ValueError: the file is not valid JSON (json.JSONDecodeError, naming the position).
  """
  path = os.path.join(uri, name)
  if not tf.io.gfile.exists(path):
    if missing_ok:
      return None
    raise FileNotFoundError(f'no report at {path}')
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)
