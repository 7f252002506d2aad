"""Custom artifact types. Names follow KFP v2's `<namespace>.<Type>` rule."""

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


class Annotations(Artifact):
  """DemographicAnnotator output: report.json, classifiers.pkl, predictions.csv."""
  TYPE_NAME = 'fakefaces.Annotations'
