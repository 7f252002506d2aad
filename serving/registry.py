"""The models a server answers for, and how a request's model spec resolves."""

from typing import Dict, List, Optional, Sequence, Tuple

import grpc

from fakefaces.serving import status as status_lib
from fakefaces.serving.servable import Servable
from fakefaces.serving.versions import ModelManager, VersionStatus


class ModelRegistry:
  """name -> ModelManager; resolves (name, version, label) the way TF Serving does."""

  def __init__(self, managers: Sequence[ModelManager]):
    self._managers: Dict[str, ModelManager] = {m.name: m for m in managers}

  @property
  def names(self) -> List[str]:
    return sorted(self._managers)

  def manager(self, name: str, version: Optional[int] = None) -> ModelManager:
    if not name:
      raise status_lib.ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                    'Missing model name in request (model_spec.name)')
    if name not in self._managers:
      request = f'Specific({name}, {version})' if version is not None else f'Latest({name})'
      raise status_lib.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f'Servable not found for request: {request}; this server serves: {self.names}')
    return self._managers[name]

  def resolve(self, name: str, version: Optional[int] = None,
              version_label: str = '') -> Servable:
    manager = self.manager(name, version)
    if version_label:
      raise status_lib.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f'Unrecognized servable version label: {version_label} (model {name} has no labels; '
          'ask for a version number)')
    return manager.resolve(version)

  def status(self, name: str, version: Optional[int] = None) -> List[Tuple[int, VersionStatus]]:
    """[(version, status)] newest first; NOT_FOUND as GetModelStatus reports it."""
    states = self.manager(name, version).version_status()
    if version is not None:
      if version not in states:
        raise status_lib.ServingError(grpc.StatusCode.NOT_FOUND,
                                      f'Could not find version {version} of model {name}')
      return [(version, states[version])]
    if not states:
      raise status_lib.ServingError(grpc.StatusCode.NOT_FOUND,
                                    f'Could not find any versions of model {name}')
    return sorted(states.items(), reverse=True)
