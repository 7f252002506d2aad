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


class ServingCanaryReport(Artifact):
  """report.json: every signature's calls in the serving stack (real and bad inputs), the verdict."""
  TYPE_NAME = 'fakefaces.ServingCanaryReport'


class ModelCard(Artifact):
  """model_card.json + model_card.html: who the model fails, with what evidence (issue 14)."""
  TYPE_NAME = 'fakefaces.ModelCard'


class AnnotatorReport(Artifact):
  """HOOK for issue 11's DemographicAnnotator: report.json with the annotator's accuracy.

  The ModelCard reads it when wired (optional input); if the annotator component
  declares its own report type, replace this one with it.
  """
  TYPE_NAME = 'fakefaces.AnnotatorReport'
