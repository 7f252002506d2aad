"""Fetches a photo from a URL without becoming a proxy into the private network.

Used by `fakefaces predict URL` and the web page. Rules, each failing with a
`FetchError` whose message says which:

* http and https only;
* every address the host resolves to must be public: loopback, private,
  link-local (cloud metadata at 169.254.169.254), multicast, reserved and
  unspecified addresses are refused unless `allow_private` is set. The
  connection goes to the address that was checked (no second DNS lookup a
  rebinding attacker could answer differently);
* redirects are followed by hand (at most MAX_REDIRECTS), each target checked
  by the same rules;
* one timeout per socket operation and one for the whole fetch;
* the body is read in chunks and refused beyond `max_bytes`, whatever
  Content-Length claims;
* an image/* Content-Type is taken as it is; a generic or missing one
  (`application/octet-stream`, S3's default `binary/octet-stream`, none) is
  sniffed from the first bytes, as browsers do, and the body must be an image
  format; any other explicit type (text/html, ...) is refused, naming it.
"""

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from typing import Tuple

from fakefaces.components.face_preparation import images

# Types that say nothing about the content: object stores' defaults and servers' fallbacks.
GENERIC_TYPES = ('', 'application/octet-stream', 'binary/octet-stream', 'application/binary',
                 'application/unknown', 'unknown/unknown', 'application/x-download',
                 'application/force-download')
MAX_REDIRECTS = 3
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0
_CHUNK = 64 * 1024
USER_AGENT = 'fakefaces/0.1 (+photo check)'


class FetchError(Exception):
  """The URL cannot or must not be fetched; the message says why."""


def _check_address(host: str, address: str, allow_private: bool) -> None:
  ip = ipaddress.ip_address(address.split('%')[0])
  if getattr(ip, 'ipv4_mapped', None):
    ip = ip.ipv4_mapped
  if allow_private:
    return
  for kind in ('loopback', 'link_local', 'private', 'multicast', 'reserved', 'unspecified'):
    if getattr(ip, f'is_{kind}'):
      raise FetchError(f'{host} resolves to {ip}, a {kind.replace("_", "-")} address: refused '
                       '(only public addresses may be fetched)')
  if not ip.is_global:
    raise FetchError(f'{host} resolves to {ip}, not a public address: refused')


def resolve_checked(url: str, allow_private: bool = False) -> Tuple[urllib.parse.SplitResult, str]:
  """(parsed url, vetted IP address to connect to). Raises FetchError."""
  try:
    parts = urllib.parse.urlsplit(url.strip())
    port = parts.port
  except ValueError as e:
    raise FetchError(f'not a valid URL: {e}') from None
  if parts.scheme not in ('http', 'https'):
    raise FetchError(f'only http and https URLs are fetched, not {parts.scheme or "(none)"!r}')
  if not parts.hostname:
    raise FetchError('the URL has no host')
  if parts.username or parts.password:
    raise FetchError('URLs with credentials are refused')
  port = port or (443 if parts.scheme == 'https' else 80)
  try:
    infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
  except (socket.gaierror, UnicodeError) as e:
    raise FetchError(f'cannot resolve {parts.hostname}: {e}') from None
  addresses = sorted({info[4][0] for info in infos})
  if not addresses:
    raise FetchError(f'{parts.hostname} resolves to no address')
  for address in addresses:  # every one: a host must not mix public and private answers
    _check_address(parts.hostname, address, allow_private)
  return parts, addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
  """Connects to a vetted address while sending the URL's Host header."""

  def __init__(self, host, address, **kwargs):
    super().__init__(host, **kwargs)
    self._address = address

  def connect(self):
    self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):

  def __init__(self, host, address, **kwargs):
    super().__init__(host, context=ssl.create_default_context(), **kwargs)
    self._address = address

  def connect(self):
    sock = socket.create_connection((self._address, self.port), self.timeout)
    self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _sniffed_type(data: bytes, declared: str) -> str:
  """'image/<format>' of a body served with a generic or no Content-Type; FetchError if no image."""
  kind = images.sniff_format(data)
  said = f'Content-Type {declared!r}' if declared else 'no Content-Type'
  if not kind or kind.endswith(('document', 'page', 'archive')) or kind.startswith('ISO media'):
    article = 'an' if kind[:1] in 'AEIOUH' else 'a'
    raise FetchError(f'the URL is not an image: {said}, and its first bytes are '
                     f'{f"{article} {kind}" if kind else "no image format"}')
  return 'image/' + kind.lower().replace(' ', '')


def fetch_image(url: str, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_TIMEOUT,
                allow_private: bool = False) -> Tuple[bytes, str]:
  """(body, content type) of an image URL, under the rules of the module doc."""
  deadline = time.monotonic() + timeout
  for _ in range(MAX_REDIRECTS + 1):
    parts, address = resolve_checked(url, allow_private)
    cls = _PinnedHTTPSConnection if parts.scheme == 'https' else _PinnedHTTPConnection
    connection = cls(parts.hostname, address, port=parts.port, timeout=timeout)
    path = urllib.parse.urlunsplit(('', '', parts.path or '/', parts.query, ''))
    try:
      connection.request('GET', path, headers={'User-Agent': USER_AGENT, 'Accept': 'image/*'})
      response = connection.getresponse()
      if response.status in (301, 302, 303, 307, 308):
        location = response.getheader('Location')
        if not location:
          raise FetchError(f'HTTP {response.status} redirect without a Location')
        url = urllib.parse.urljoin(url, location)
        continue
      if response.status != 200:
        raise FetchError(f'the server answered HTTP {response.status} {response.reason}')
      content_type = (response.getheader('Content-Type') or '').split(';')[0].strip().lower()
      if not content_type.startswith('image/') and content_type not in GENERIC_TYPES:
        raise FetchError(f'the URL is not an image: its Content-Type is {content_type!r}')
      length = response.getheader('Content-Length')
      if length and length.isdigit() and int(length) > max_bytes:
        raise FetchError(f'the image is {int(length)} bytes, over the limit of {max_bytes}')
      chunks, size = [], 0
      while True:
        if time.monotonic() > deadline:
          raise FetchError(f'fetching took longer than {timeout:.0f}s')
        chunk = response.read(_CHUNK)
        if not chunk:
          break
        size += len(chunk)
        if size > max_bytes:
          raise FetchError(f'the image is over the limit of {max_bytes} bytes')
        chunks.append(chunk)
      data = b''.join(chunks)
      if content_type in GENERIC_TYPES:
        content_type = _sniffed_type(data, content_type)
      return data, content_type
    except (OSError, http.client.HTTPException) as e:
      raise FetchError(f'cannot fetch {parts.hostname}: {type(e).__name__}: {e}') from None
    finally:
      connection.close()
  raise FetchError(f'more than {MAX_REDIRECTS} redirects')
