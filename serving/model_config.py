"""TF Serving's `model_config_list` text format, for the real `tensorflow_model_server`.

`serving/models.config` is the checked-in config for the official image
(`--model_config_file=/models/models.config`); `model_config_text` builds the
same for any name/base path/policy, e.g. when `fakefaces serve` execs the real
server with specific versions.
"""

import os
from typing import Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'models.config')
PLATFORM = 'tensorflow'


def build_model_server_config(name: str, base_path: str, policy: str = 'latest',
                              versions: Sequence[int] = ()) -> model_server_config_pb2.ModelServerConfig:
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add(name=name, base_path=base_path,
                                              model_platform=PLATFORM)
  if policy == 'latest':
    model.model_version_policy.latest.num_versions = 1
  elif policy == 'specific':
    model.model_version_policy.specific.versions.extend(versions)
  else:
    raise ValueError(f'version policy must be "latest" or "specific", got {policy!r}')
  return config


def model_config_text(name: str, base_path: str, policy: str = 'latest',
                      versions: Sequence[int] = ()) -> str:
  return text_format.MessageToString(build_model_server_config(name, base_path, policy, versions))


def read_model_server_config(path: str = MODELS_CONFIG) -> model_server_config_pb2.ModelServerConfig:
  """Parses a models.config; a syntax error names the file."""
  with open(path, encoding='utf-8') as f:
    text = f.read()
  try:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  except text_format.ParseError as e:
    raise ValueError(f'{path}: not a valid ModelServerConfig: {e}') from None
