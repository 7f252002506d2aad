"""Custom artifact types.

Type names follow KFP v2's `<namespace>.<Type>` rule. Every report these
artifacts hold is one JSON file in the artifact's folder, written and read by
`components/shared/reports.py` (which needs no TFX, so `serving/` can read them too).
"""

from tfx.types.artifact import Artifact


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
  """model_card.json + model_card.html: who the model fails, with what evidence."""
  TYPE_NAME = 'fakefaces.ModelCard'


class Annotations(Artifact):
  """DemographicAnnotator output: report.json, classifiers.pkl, predictions.csv."""
  TYPE_NAME = 'fakefaces.Annotations'
