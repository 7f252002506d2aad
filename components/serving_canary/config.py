"""The ServingCanary's configuration (the `canary:` section of the pipeline config)."""

import dataclasses

from fakefaces.components.shared.config_base import ConfigError

SERVERS = ('auto', 'builtin', 'tensorflow_model_server')


@dataclasses.dataclass
class CanaryConfig:
  """How the candidate is loaded in the serving stack and queried before the push."""
  # 'auto': tensorflow_model_server when it is on PATH, else the project's server
  # (`fakefaces serve --builtin`) in a subprocess on loopback.
  server: str = 'auto'
  num_examples: int = 4  # real test-split examples sent to every signature
  startup_timeout_seconds: float = 300.0  # server start + model load
  request_timeout_seconds: float = 60.0  # per gRPC request


def validate(config: CanaryConfig, where: str = 'canary') -> None:
  """Raises ConfigError naming the field (called when the pipeline is built)."""
  if config.server not in SERVERS:
    raise ConfigError(f'{where}.server must be one of {list(SERVERS)}, got {config.server!r}')
  if config.num_examples < 1:
    raise ConfigError(f'{where}.num_examples must be >= 1, got {config.num_examples}')
  for name in ('startup_timeout_seconds', 'request_timeout_seconds'):
    if getattr(config, name) <= 0:
      raise ConfigError(f'{where}.{name} must be > 0, got {getattr(config, name)}')
