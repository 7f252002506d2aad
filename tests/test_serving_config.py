"""serving/models.config for the real tensorflow_model_server, and the equivalent command line."""

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from fakefaces.pipeline.cli import cli
from fakefaces.serving import model_config
from fakefaces.serving import server as server_lib
from fakefaces.serving.versions import VersionPolicy, parse_versions


def test_models_config_parses_as_model_server_config():
  with open(model_config.MODELS_CONFIG, encoding='utf-8') as f:
    config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == 'fakefaces'
  assert model.base_path == '/models/fakefaces'
  assert model.model_platform == 'tensorflow'
  assert model.model_version_policy.WhichOneof('policy_choice') == 'latest'


def test_specific_versions_config_round_trips():
  text = model_config.model_config_text('fakefaces', '/srv/models', 'specific', [17, 42])
  config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
  assert list(config.model_config_list.config[0].model_version_policy.specific.versions) == [17, 42]


def test_broken_config_names_the_file(tmp_path):
  path = tmp_path / 'models.config'
  path.write_text('model_config_list { config { nmae: "x" } }')
  with pytest.raises(ValueError, match=str(path)):
    model_config.read_model_server_config(str(path))


def test_real_server_command_matches_our_flags(tmp_path):
  options = server_lib.ServerOptions(model_base_path=str(tmp_path), grpc_port=8500, rest_port=8501,
                                     max_request_bytes=1000)
  command = server_lib.model_server_command(options, '/usr/bin/tensorflow_model_server', str(tmp_path))
  assert command[0] == '/usr/bin/tensorflow_model_server'
  assert {'--port=8500', '--rest_api_port=8501', '--model_name=fakefaces',
          f'--model_base_path={tmp_path}',
          '--grpc_channel_arguments=grpc.max_receive_message_length=1000'} <= set(command)
  options.policy = VersionPolicy('specific', (7,))
  command = server_lib.model_server_command(options, 'tensorflow_model_server', str(tmp_path))
  (flag,) = [c for c in command if c.startswith('--model_config_file=')]
  config = model_config.read_model_server_config(flag.split('=', 1)[1])
  assert list(config.model_config_list.config[0].model_version_policy.specific.versions) == [7]


def test_parse_versions_names_the_bad_entry():
  assert parse_versions(['3', '5,7']) == (3, 5, 7)
  with pytest.raises(ValueError, match="'v2'"):
    parse_versions(['1,v2'])


def test_serve_command_refuses_a_missing_base_path(tmp_path, capsys):
  missing = tmp_path / 'nowhere'
  assert cli.main(['serve', '--builtin', '--model-base-path', str(missing)]) == 2
  assert str(missing) in capsys.readouterr().err


def test_serve_commands_defaults_are_the_servers():
  from fakefaces.pipeline.cli.commands import serve  # pylint: disable=import-outside-toplevel
  assert (serve.DEFAULT_HOST, serve.DEFAULT_PORT, serve.DEFAULT_REST_PORT) == (
      server_lib.DEFAULT_HOST, server_lib.DEFAULT_GRPC_PORT, server_lib.DEFAULT_REST_PORT)
