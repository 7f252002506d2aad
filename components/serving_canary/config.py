"""The ServingCanary's configuration (the `canary:` section of the pipeline config)."""

import dataclasses

SERVERS = ('auto', 'builtin', 'tensorflow_model_server')


@dataclasses.dataclass
class CanaryConfig:
  """How the candidate is loaded in the serving stack and queried before the push."""
  # 'auto': tensorflow_model_server when it is on PATH, else the project's server
  # (`fakefaces serve --builtin`) in a subprocess on loopback.
  server: str = 'auto'
  num_examples: int = 4  # real test-split examples sent to every signature
  startup_timeout_seconds: float = 300.0  # server start + model load
  request_timeout_seconds: float = 60.0
