"""ModelBlessing artifacts written the way TFX's Evaluator writes them.

The Pusher reads the BLESSED/NOT_BLESSED file and the `blessed` property; the
latest-blessed-model resolver reads `blessed` and `current_model_id`. The
FairnessGate and the ServingCanary both bless models, so both write them here.
"""

import os
from typing import Sequence

from tfx.components.evaluator import constants
from tfx.utils import io_utils


def write_model_blessing(blessing, model, blessed: bool, reasons: Sequence[str],
                         production_model=None) -> None:
  """Marks `blessing` for `model` (and the production model it was compared with)."""
  name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
  io_utils.write_string_file(os.path.join(blessing.uri, name), '')
  blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                   constants.BLESSED_VALUE if blessed
                                   else constants.NOT_BLESSED_VALUE)
  blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                      model.uri)
  blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
  if production_model is not None:
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                        production_model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                     production_model.id)
  blessing.set_string_custom_property('reasons', '\n'.join(reasons)[:4000])
