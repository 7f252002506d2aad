"""A free TCP port on the loopback interface, for the servers the project starts itself.

The ServingCanary's model server and the portable Beam runner's job service and
worker pool bind loopback ports that the operating system picks free.
"""

import socket


def free_loopback_port() -> int:
  """A port that nothing listens on now on 127.0.0.1 (another process may take it later)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]
