"""argparse types the commands share: a wrong value is a usage line and exit 2, never a traceback.

A TCP port is 16 bits: Python's bind raises OverflowError past 65535, and gRPC takes
99999 as 99999 mod 65536 (34463), listening or calling on a port nobody asked for.
"""

import argparse

MAX_PORT = 65535


def port(text: str) -> int:
  """A port to listen on: 0 (any free one) to 65535."""
  return _listening_port(_integer(text, 'port'), '0: any free one')


def rest_port(text: str) -> int:
  """A REST port to listen on: -1 (no REST), 0 (any free one) to 65535."""
  value = _integer(text, 'port')
  return value if value == -1 else _listening_port(value, '0: any free one, -1: no REST')


def _listening_port(value: int, meanings: str) -> int:
  if not 0 <= value <= MAX_PORT:
    raise argparse.ArgumentTypeError(f'port {value} is not in 0-{MAX_PORT} ({meanings})')
  return value


def server(text: str) -> str:
  """A server to call, as gRPC and urllib take it (HOST:PORT, [::1]:8500, dns:///host:8500); a
  trailing port must be 1 to 65535."""
  _, sep, digits = text.rpartition(':')
  if sep and digits.lstrip('-').isdigit() and not 1 <= int(digits) <= MAX_PORT:
    raise argparse.ArgumentTypeError(f'port {int(digits)} of {text!r} is not in 1-{MAX_PORT}')
  return text


def _integer(text: str, what: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{what} {text!r} is not a whole number') from None


def at_least(minimum: int):
  """An argparse type: a whole number >= `minimum` (sizes, counts, caps)."""
  def parse(text: str) -> int:
    value = _integer(text, 'value')
    if value < minimum:
      raise argparse.ArgumentTypeError(f'{value} is below the smallest allowed, {minimum}')
    return value
  parse.__name__ = f'integer >= {minimum}'
  return parse
