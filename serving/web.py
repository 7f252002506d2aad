"""The photo-check web page: upload a photo or give a URL, read "real" or "fake" per face.

    fakefaces serve --model-base-path runs/demo/serving_model &
    fakefaces web --server 127.0.0.1:8500 --gate-report 'runs/demo/pipeline_root/FairnessGate/report/*/report.json'

The page is a client of TF Serving like any other (gRPC, or REST with
`--rest`): it asks the served model for its face preparation, prepares the
photo with the ingestion's own code (`serving/photos.py`), and calls
`explain` for P(fake), the verdict and a Grad-CAM heatmap per face. It shows
the photo with every face boxed, each crop with its heatmap overlay, and a
note on what the model was checked for (the fairness gate's report).

Safety: uploads are capped (`max_upload_bytes`, checked from Content-Length
before reading, and while reading); URLs go through `serving/fetch.py`
(http(s) only, public addresses only unless allowed, size cap, timeout,
image Content-Type). Every failure is a message on the page, never a stack
trace; images dlib must not see are refused before it does, so one bad
photo cannot corrupt or stop the server.
"""

import base64
import dataclasses
import email.parser
import email.policy
import glob
import html
import http.server
import io
import json
import logging
import os
import threading
import urllib.parse
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from fakefaces.components.face_example_gen import faces as faces_lib
from fakefaces.serving import fetch, photos
from fakefaces.serving import status as status_lib

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_DISCARD_LIMIT = 64 * 1024 * 1024  # beyond this an oversized upload is not even drained
_PREVIEW_SIDE = 900
_CROP_SIDE = 192


@dataclasses.dataclass
class WebOptions:
  server: str  # host:port of TF Serving (gRPC, or REST with rest=True)
  rest: bool = False
  model_name: str = 'fakefaces'
  host: str = '127.0.0.1'
  port: int = 8080  # 0 picks a free port
  gate_report: str = ''  # path or glob of the FairnessGate's report.json (newest match used)
  max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
  allow_private_urls: bool = False
  fetch_timeout: float = 10.0
  timeout: float = 60.0
  max_faces: int = photos.MAX_FACES  # faces scored per photo, largest first (0: all)


class UserError(Exception):
  """Something about the request the person can fix; shown on the page."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} form{border:1px solid #ccc;padding:1em;border-radius:6px;margin-bottom:1em}
label{display:block;margin:.4em 0} input[type=url]{width:60%}
.error{background:#fde8e8;border:1px solid #d33;padding:.8em;border-radius:6px}
.noface{background:#fff7e0;border:1px solid #c90;padding:.8em;border-radius:6px}
.faces{display:flex;flex-wrap:wrap;gap:1em} .face{border:1px solid #ccc;padding:.5em;border-radius:6px}
.face img{display:block;width:192px;height:192px;image-rendering:auto}
.verdict{font-weight:bold;font-size:1.2em} .fake .verdict{color:#c00} .real .verdict{color:#070}
.photo img{max-width:100%} .note{font-size:.9em;color:#444;border-top:1px solid #ddd;margin-top:1.5em}
"""


def _page(body: str, title: str = 'fakefaces: is this face real?') -> bytes:
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
          f'<style>{_STYLE}</style></head><body><h1>Is this face real?</h1>{_FORM}{body}'
          '</body></html>').encode('utf-8')


_FORM = """
<form id="check" method="post" action="/check" enctype="multipart/form-data">
<label>Photo file: <input type="file" id="photo" name="photo" accept="image/*"></label>
<label>or its URL: <input type="url" id="url" name="url" placeholder="https://..."></label>
<button type="submit" id="submit">Check</button>
</form>
"""


def _data_uri(image: Image.Image, quality: int = 88) -> str:
  buffer = io.BytesIO()
  image.convert('RGB').save(buffer, format='JPEG', quality=quality)
  return 'data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def heatmap_overlay(crop: Image.Image, heatmap: np.ndarray, side: int = _CROP_SIDE) -> Image.Image:
  """The crop with the heatmap blended in (transparent where 0, red-to-yellow where high)."""
  base = np.asarray(crop.convert('RGB').resize((side, side), Image.BILINEAR), dtype=np.float32)
  heat = np.asarray(Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize(
      (side, side), Image.BILINEAR), dtype=np.float32)[..., None] / 255.0
  colour = np.concatenate([np.full_like(heat, 255.0), heat * 255.0, np.zeros_like(heat)], axis=-1)
  alpha = 0.6 * heat
  return Image.fromarray(np.uint8(np.clip(base * (1 - alpha) + colour * alpha, 0, 255)))


def boxed_preview(image: Image.Image, verdicts: List[photos.FaceVerdict]) -> Image.Image:
  """The photo (at most _PREVIEW_SIDE) with each face boxed and numbered."""
  scale = min(1.0, _PREVIEW_SIDE / max(image.size))
  preview = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BILINEAR) if scale < 1 else image.copy()
  draw = ImageDraw.Draw(preview)
  width = max(2, round(max(preview.size) / 300))
  for i, face in enumerate(verdicts, start=1):
    box = [round(v * scale) for v in face.box]
    colour = (220, 0, 0) if face.label == 'fake' else (0, 160, 0)
    draw.rectangle(box, outline=colour, width=width)
    draw.text((box[0] + width + 1, box[1] + width + 1), str(i), fill=colour)
  return preview


def gate_note(pattern: str) -> str:
  """HTML: what the served model was checked for, from the newest FairnessGate report.json."""
  paths = sorted(glob.glob(pattern), key=os.path.getmtime) if pattern else []
  if not paths:
    return ('<div class="note" id="gate-note"><p>No fairness gate report was given to this page '
            '(<code>--gate-report</code>), so it cannot say what the model was checked for.</p></div>')
  path = paths[-1]
  try:
    with open(path, encoding='utf-8') as f:
      report = json.load(f)
    checks = report.get('checks', [])
    counts: Dict[str, int] = {}
    for check in checks:
      counts[check.get('status', '?')] = counts.get(check.get('status', '?'), 0) + 1
    groupings = [g.get('name', '') if isinstance(g, dict) else str(g)
                 for g in report.get('groupings', [])]
    not_measured = sorted({str(n).split(': ')[-1] for n in report.get('not_measured', [])})
    reasons = report.get('reasons', [])[:3]
  except (OSError, ValueError, AttributeError) as e:
    return f'<div class="note" id="gate-note"><p>The gate report {html.escape(path)} is unreadable: '\
           f'{html.escape(str(e))}</p></div>'
  verdict = str(report.get('verdict', 'unknown'))
  blessed = 'blessed (pushed)' if report.get('blessed') else 'NOT blessed'
  parts = [f'<p><b>What this model was checked for.</b> Fairness gate verdict: '
           f'<b id="gate-verdict">{html.escape(verdict)}</b>, {blessed}. '
           f'{len(checks)} checks (' + ', '.join(f'{n} {html.escape(s)}' for s, n in sorted(counts.items()))
           + ') of false-positive/false-negative gaps, disparate impact and average odds across '
           + html.escape(', '.join(g for g in groupings if g) or 'demographic groups')
           + ', on aligned face crops.</p>']
  if not_measured:
    parts.append('<p>Not measured (no evidence, not passed): ' + html.escape(', '.join(not_measured))
                 + '.</p>')
  if reasons:
    parts.append('<ul>' + ''.join(f'<li>{html.escape(str(r))}</li>' for r in reasons) + '</ul>')
  parts.append('<p>The verdict is the model\'s opinion of each aligned face; it can be wrong, '
               'and it was trained on 128 px crops of FairFace/FFHQ-like photos. Report: '
               f'<code>{html.escape(path)}</code></p>')
  return '<div class="note" id="gate-note">' + ''.join(parts) + '</div>'


def render_result(source: str, result: photos.PhotoResult, note: str) -> bytes:
  body = [f'<div id="result"><p>Checked: <span id="source">{html.escape(source)}</span></p>',
          f'<p id="face-count">{html.escape(result.summary())}.</p>']
  if not result.faces:
    body.append(f'<p class="noface" id="no-face">No face found in this photo '
                f'({html.escape(result.no_face_reason)}).</p>')
  body.append(f'<div class="photo"><img id="photo-boxed" alt="the photo with faces boxed" '
              f'src="{_data_uri(boxed_preview(result.image, result.faces))}"></div>')
  body.append('<div class="faces">')
  for i, face in enumerate(result.faces, start=1):
    overlay = heatmap_overlay(face.crop, face.heatmap)
    body.append(
        f'<div class="face {html.escape(face.label)}" id="face-{i}" data-label="{html.escape(face.label)}" '
        f'data-fake-probability="{face.fake_probability:.6f}" data-box="{",".join(map(str, face.box))}">'
        f'<img class="heatmap" alt="face {i} with the heatmap of what looked fake" '
        f'src="{_data_uri(overlay)}">'
        f'<p>Face {i}: <span class="verdict">{html.escape(face.label)}</span><br>'
        f'P(fake) = <span class="probability">{face.fake_probability:.3f}</span></p></div>')
  body.append('</div>')
  if result.faces:
    body.append('<p>Heatmap: where the model saw evidence of a generated face (Grad-CAM; '
                'red to yellow = more).</p>')
  body.append('</div>')
  return _page(''.join(body) + note)


def _error_page(message: str, note: str = '') -> bytes:
  return _page(f'<p class="error" id="error">{html.escape(message)}</p>{note}')


class PhotoChecker:
  """The page's work, independent of HTTP: bytes or URL -> rendered result."""

  def __init__(self, options: WebOptions):
    from fakefaces.serving import client as client_lib  # pylint: disable=import-outside-toplevel
    self.options = options
    self._client_lib = client_lib
    self._lock = threading.Lock()  # dlib detectors are not shared across threads
    self._preparer: Optional[faces_lib.FacePreparer] = None

  def _client(self):
    return self._client_lib.ServingClient(self.options.server, model_name=self.options.model_name,
                                          rest=self.options.rest, timeout=self.options.timeout)

  def _preparer_for(self, client) -> faces_lib.FacePreparer:
    params = client.face_preparation()  # asked every time: a new version may prepare differently
    if self._preparer is None or self._preparer.params != params:
      self._preparer = faces_lib.FacePreparer(params)
    return self._preparer

  def fetch(self, url: str) -> bytes:
    try:
      data, _ = fetch.fetch_image(url, self.options.max_upload_bytes, self.options.fetch_timeout,
                                  self.options.allow_private_urls)
    except fetch.FetchError as e:
      raise UserError(f'Cannot use that URL: {e}') from None
    return data

  def check(self, data: bytes, source: str) -> bytes:
    with self._client() as client:
      try:
        with self._lock:
          preparer = self._preparer_for(client)
          photo = preparer.prepare(data, all_faces=True, max_faces=self.options.max_faces)
        result = photos.PhotoResult.of(photo, self.options.max_faces)
        if photo.faces:
          scored = client.explain([face.encoded for face in photo.faces])
          result.faces = [photos.FaceVerdict(face.box, p.fake_probability, p.label, face.crop, heat)
                          for face, (p, heat) in zip(photo.faces, scored)]
      except photos.ImageProblem as e:
        raise UserError(f'Cannot check this file: {e.reason}') from None
      except status_lib.ServingError as e:
        raise UserError(f'The model server ({self.options.server}) answered {e.code.name}: '
                        f'{e.message}', status=502) from None
    return render_result(source, result, gate_note(self.options.gate_report))


def _parse_form(content_type: str, body: bytes) -> Tuple[Optional[Tuple[str, bytes]], str]:
  """((filename, bytes) of the `photo` field or None, the `url` field) of a multipart or urlencoded form."""
  if content_type.startswith('application/x-www-form-urlencoded'):
    fields = urllib.parse.parse_qs(body.decode('utf-8', 'replace'))
    return None, (fields.get('url') or [''])[0].strip()
  if not content_type.startswith('multipart/form-data'):
    raise UserError(f'unsupported form encoding {content_type or "(none)"}')
  message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
      f'Content-Type: {content_type}\r\n\r\n'.encode('latin-1') + body)
  if not message.is_multipart():
    raise UserError('the form could not be read (malformed multipart body)')
  upload, url = None, ''
  for part in message.iter_parts():
    name = part.get_param('name', header='content-disposition')
    if name == 'photo':
      payload = part.get_payload(decode=True) or b''
      if payload:
        upload = (part.get_filename() or 'upload', payload)
    elif name == 'url':
      url = (part.get_payload(decode=True) or b'').decode('utf-8', 'replace').strip()
  return upload, url


class _Handler(http.server.BaseHTTPRequestHandler):
  server_version = 'fakefaces-web/0.1'
  checker: PhotoChecker = None  # set by make_server

  def log_message(self, fmt, *args):  # pylint: disable=arguments-differ
    log.info('%s %s', self.address_string(), fmt % args)

  def _send(self, status: int, body: bytes, content_type: str = 'text/html; charset=utf-8'):
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    self.send_header('X-Content-Type-Options', 'nosniff')
    self.send_header('Content-Security-Policy', "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'")
    self.end_headers()
    self.wfile.write(body)

  def do_GET(self):  # pylint: disable=invalid-name
    path = urllib.parse.urlsplit(self.path).path
    if path == '/':
      self._send(200, _page(gate_note(self.checker.options.gate_report)))
    elif path == '/healthz':
      self._send(200, b'ok\n', 'text/plain')
    else:
      self._send(404, _error_page(f'no page at {path}'))

  def _read_body(self) -> bytes:
    limit = self.checker.options.max_upload_bytes
    try:
      length = int(self.headers.get('Content-Length', ''))
    except ValueError:
      raise UserError('the request has no Content-Length', 411) from None
    if length > limit + 64 * 1024:  # form overhead on top of the file
      if length <= _DISCARD_LIMIT:  # drain it, so the browser shows our answer
        remaining = length
        while remaining > 0:
          remaining -= len(self.rfile.read(min(remaining, 1 << 20)) or b'x' * remaining)
      else:
        self.close_connection = True
      raise UserError(f'The upload is {length} bytes, over this page\'s limit of {limit} bytes.', 413)
    return self.rfile.read(length)

  def do_POST(self):  # pylint: disable=invalid-name
    if urllib.parse.urlsplit(self.path).path != '/check':
      self._send(404, _error_page('no form at this address'))
      return
    note = ''
    try:
      note = gate_note(self.checker.options.gate_report)
      upload, url = _parse_form(self.headers.get('Content-Type', ''), self._read_body())
      if upload is not None:
        name, data = upload
        if len(data) > self.checker.options.max_upload_bytes:
          raise UserError(f'The upload is {len(data)} bytes, over this page\'s limit of '
                          f'{self.checker.options.max_upload_bytes} bytes.', 413)
        body = self.checker.check(data, name)
      elif url:
        body = self.checker.check(self.checker.fetch(url), url)
      else:
        raise UserError('Choose a photo file or give its URL.')
      self._send(200, body)
    except UserError as e:
      self._send(e.status, _error_page(str(e), note))
    except Exception:  # pylint: disable=broad-except
      log.exception('web: request failed')
      self._send(500, _error_page('Something went wrong while checking this photo; it was logged. '
                                  'Try another photo.', note))


class WebServer(http.server.ThreadingHTTPServer):
  daemon_threads = True


def make_server(options: WebOptions) -> WebServer:
  handler = type('Handler', (_Handler,), {'checker': PhotoChecker(options)})
  return WebServer((options.host, options.port), handler)
