"""URL fetching for predict and the web page: public http(s) only, capped, typed, timed out."""

import http.server
import threading

import pytest

from fakefaces.serving import fetch

JPEG = b'\xff\xd8\xff' + b'0' * 5000


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):  # quiet
    pass

  def do_GET(self):  # pylint: disable=invalid-name
    routes = {
        '/photo.jpg': (200, 'image/jpeg', JPEG),
        '/page.html': (200, 'text/html', b'<html></html>'),
        '/big.jpg': (200, 'image/jpeg', b'\xff' * 200_000),
        '/missing.jpg': (404, 'text/plain', b'no'),
        '/octet-html': (200, 'application/octet-stream', b'<!DOCTYPE html><html></html>'),
    }
    if self.path == '/redirect-to-photo':
      self.send_response(302)
      self.send_header('Location', '/photo.jpg')
      self.end_headers()
      return
    if self.path == '/slow.jpg':
      self.send_response(200)
      self.send_header('Content-Type', 'image/jpeg')
      self.end_headers()
      self.wfile.write(b'\xff\xd8')
      self.wfile.flush()
      threading.Event().wait(3)
      return
    status, content_type, body = routes.get(self.path, (404, 'text/plain', b'no'))
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body)


@pytest.fixture(scope='module')
def site():
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  server.daemon_threads = True
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f'http://127.0.0.1:{server.server_address[1]}'
  server.shutdown()


def test_private_and_odd_urls_are_refused_by_default(site):
  for url, message in [(f'{site}/photo.jpg', 'loopback address: refused'),
                       ('http://169.254.169.254/latest/meta-data/', 'link-local address: refused'),
                       ('http://192.168.1.10/a.jpg', 'private address: refused'),
                       ('http://[::1]/a.jpg', 'loopback address: refused'),
                       ('ftp://example.com/a.jpg', 'only http and https'),
                       ('file:///etc/passwd', 'only http and https'),
                       ('http://user:pw@example.com/a.jpg', 'credentials')]:
    with pytest.raises(fetch.FetchError, match=message):
      fetch.fetch_image(url)


def test_allowed_private_fetch_checks_type_size_status_and_redirects(site):
  data, content_type = fetch.fetch_image(f'{site}/photo.jpg', allow_private=True)
  assert data == JPEG and content_type == 'image/jpeg'
  assert fetch.fetch_image(f'{site}/redirect-to-photo', allow_private=True)[0] == JPEG
  with pytest.raises(fetch.FetchError, match='not an image'):
    fetch.fetch_image(f'{site}/page.html', allow_private=True)
  with pytest.raises(fetch.FetchError, match='over the limit'):
    fetch.fetch_image(f'{site}/big.jpg', max_bytes=100_000, allow_private=True)
  with pytest.raises(fetch.FetchError, match='HTTP 404'):
    fetch.fetch_image(f'{site}/missing.jpg', allow_private=True)
  with pytest.raises(fetch.FetchError, match='timed out|longer than'):
    fetch.fetch_image(f'{site}/slow.jpg', timeout=1.0, allow_private=True)


def test_generic_or_missing_content_types_are_sniffed_explicit_others_refused(
    field_case, faces_data, site, tmp_path):
  """Field case url_octet_stream: a photo served as S3 serves objects uploaded without a type
  (`binary/octet-stream`), as `application/octet-stream` and with no Content-Type was "the URL
  is not an image". Browsers sniff those from the bytes; an explicit non-image type is refused."""
  import os  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  photo = os.path.join(faces_data, 'fairface', 'val', '1000.jpg')
  with open(photo, 'rb') as f:
    jpeg = f.read()
  with socket.socket() as probe:  # a free port for the field case's own server
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  server = subprocess.Popen([sys.executable, os.path.join(field_case('url_octet_stream'),
                                                          'octet_server.py'), str(port), photo])
  try:
    for _ in range(300):
      try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        break
      except OSError:
        time.sleep(0.1)
    base = f'http://127.0.0.1:{port}'
    for path in ('/s3.jpg', '/octet.jpg', '/none.jpg', '/typed.jpg'):
      data, content_type = fetch.fetch_image(base + path, allow_private=True)
      assert data == jpeg and content_type == 'image/jpeg', path
  finally:
    server.kill()
    server.wait()
  with pytest.raises(fetch.FetchError) as refused:
    fetch.fetch_image(f'{site}/page.html', allow_private=True)
  assert str(refused.value) == "the URL is not an image: its Content-Type is 'text/html'"
  with pytest.raises(fetch.FetchError) as refused:
    fetch.fetch_image(f'{site}/octet-html', allow_private=True)
  assert str(refused.value) == ("the URL is not an image: Content-Type 'application/octet-stream', "
                                'and its first bytes are an HTML page')
