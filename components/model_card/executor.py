"""ModelCard executor: builds the card from the run's reports and stores it in MLMD and beside
the pushed version.

The card is written to the ModelCard artifact for every candidate (a refused
one too: its card says why). When the Pusher pushed, `model_card.json` and
`model_card.html` are also copied into the pushed version directory
(`<serving_model_dir>/<version>/`, beside `saved_model.pb`; TF Serving ignores
files it does not know). The artifact's custom properties hold the verdict,
the push and the counts of failed and unmeasured checks, so MLMD queries can
find them without reading files.
"""

import base64
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fakefaces.components.shared import component_keys as keys, reports
from fakefaces.components.shared.config_base import from_json
from fakefaces.components.model_card import card as card_lib
from fakefaces.components.model_card.config import ModelCardConfig

CARD_JSON, CARD_HTML = 'model_card.json', 'model_card.html'


def _optional_report(input_dict, key: str) -> Optional[Dict[str, Any]]:
  inputs = input_dict.get(key) or []
  return reports.read_report(inputs[0].uri) if inputs else None


def curve_graphics(model_uri: str) -> List[Dict[str, str]]:
  """Schema graphics of the learning-curve PNGs the Trainer leaves in the model artifact, if any.

  Any `*curve*.png` directly in the model directory or one level below counts
  (the Trainer's plot of loss and metrics per epoch); none means the card says
  no curve was recorded.
  """
  graphics = []
  for pattern in ('*curve*.png', '*/*curve*.png'):
    for path in sorted(tf.io.gfile.glob(os.path.join(model_uri, pattern))):
      name = os.path.splitext(os.path.basename(path))[0].replace('_', ' ')
      with tf.io.gfile.GFile(path, 'rb') as f:
        graphics.append({'name': name, 'image': base64.b64encode(f.read()).decode('ascii')})
  return graphics


def write_card(card: Dict[str, Any], out_dir: str) -> None:
  reports.write_report(out_dir, card, CARD_JSON, default=str)  # creates out_dir
  io_utils.write_string_file(os.path.join(out_dir, CARD_HTML), card_lib.render_html(card))


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Builds the card, stores it in the artifact and, when pushed, beside the version.

    Args:
      input_dict: `model` (the candidate Model), `fairness_report`
        (FairnessReport), `canary_report` (ServingCanaryReport), `pushed_model`
        (the Pusher's PushedModel: whether and where it pushed); optional
        `ingest_report` (IngestReport: data sources with counts) and
        `annotations` (the DemographicAnnotator's Annotations).
      output_dict: `model_card` (ModelCard: model_card.json + model_card.html,
        and custom properties `verdict`, `pushed`, `failed_checks`,
        `unmeasured_checks`), one artifact.
      exec_properties: `config` (ModelCardConfig as JSON).

    Raises:
      ConfigError: a model_card field is invalid (named by its dotted path).
      ValueError: the FairnessReport artifact has no report.json.
    """
    config = from_json(ModelCardConfig, exec_properties[keys.CONFIG_KEY], 'model_card')
    model = artifact_utils.get_single_instance(input_dict[keys.MODEL_KEY])
    report = reports.read_report(artifact_utils.get_single_uri(input_dict[keys.FAIRNESS_REPORT_KEY]))
    if report is None:
      raise ValueError('the FairnessReport artifact has no report.json')
    canary = reports.read_report(artifact_utils.get_single_uri(input_dict[keys.CANARY_REPORT_KEY]))
    pushed_model = artifact_utils.get_single_instance(input_dict[keys.PUSHED_MODEL_KEY])
    pushed = {'pushed': pushed_model.get_int_custom_property('pushed') == 1}
    if pushed['pushed']:
      pushed['destination'] = pushed_model.get_string_custom_property('pushed_destination')
      pushed['version'] = pushed_model.get_string_custom_property('pushed_version')
    card = card_lib.build_card(config, model.uri, report, canary, pushed,
                               ingest=_optional_report(input_dict, keys.INGEST_REPORT_KEY),
                               annotator=_optional_report(input_dict, keys.ANNOTATIONS_KEY),
                               graphics=curve_graphics(model.uri))
    artifact = artifact_utils.get_single_instance(output_dict[keys.MODEL_CARD_KEY])
    write_card(card, artifact.uri)
    if pushed['pushed']:
      write_card(card, pushed['destination'])
    artifact.set_int_custom_property('model_id', model.id)
    artifact.set_string_custom_property('verdict', str(report.get('verdict')))
    artifact.set_int_custom_property('pushed', int(pushed['pushed']))
    artifact.set_string_custom_property('pushed_version', str(pushed.get('version', '')))
    artifact.set_int_custom_property('failed_checks', len(card_lib.fairness(card)['failed']))
    artifact.set_int_custom_property('unmeasured_checks', len(card_lib.fairness(card)['unmeasured']))
    artifact.set_string_custom_property('limitations', '\n'.join(
        item['description'] for item in card['considerations']['limitations'])[:4000])
