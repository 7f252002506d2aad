"""The photo-check web page: upload a photo or give a URL, read "real" or "fake" per face.

    fakefaces serve --model-base-path runs/demo/serving_model &
    fakefaces web --server 127.0.0.1:8500 --model-dir runs/demo/serving_model \
        --gate-report 'runs/demo/pipeline_root/FairnessGate/report/*/report.json'

The page is a client of TF Serving like any other (gRPC, or REST with
`--rest`): it asks the served model for its face preparation, prepares the
photo with the ingestion's own code (`serving/photos.py`), and calls
`explain` for P(fake), the verdict and a Grad-CAM heatmap per face. It shows
the verdicts first, then the photo with every face boxed, each crop with its
heatmap overlay (scaled by the evidence: `photos.evidence_map`), and what is
known about the served model: read from the model card pushed beside the
version the server reports (`--model-dir`), never fixed text, and from the
fairness gate's report. The page links both (`/model-card`, `/gate-report`).

Safety: uploads are capped (`max_upload_bytes`, checked from Content-Length
before reading, and while reading); URLs go through `serving/fetch.py`
(http(s) only, public addresses only unless allowed, size cap, timeout,
image Content-Type). Every failure is a message on the page, never a stack
trace; images dlib must not see are refused before it does, so one bad
photo cannot corrupt or stop the server.
"""

import base64
import concurrent.futures
import dataclasses
import email.parser
import email.policy
import glob
import html
import http.server
import logging
import os
import threading
import urllib.parse
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from fakefaces.components.shared import reports
from fakefaces.components.shared import serving_contract as contract
from fakefaces.components.face_preparation import faces as faces_lib
from fakefaces.components.face_preparation import images as images_lib
from fakefaces.serving import fetch, photos
from fakefaces.serving import status as status_lib

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_DISCARD_LIMIT = 64 * 1024 * 1024  # beyond this an oversized upload is not even drained
_PREVIEW_SIDE = 900
MODEL_CARD_JSON, MODEL_CARD_HTML = 'model_card.json', 'model_card.html'  # the ModelCard component's
_CROP_SIDE = 192


@dataclasses.dataclass
class WebOptions:
  server: str  # host:port of TF Serving (gRPC, or REST with rest=True)
  rest: bool = False
  model_name: str = 'fakefaces'
  host: str = '127.0.0.1'
  port: int = 8080  # 0 picks a free port
  gate_report: str = ''  # path or glob of the FairnessGate's report.json (newest match used)
  # The TF Serving base path of the served model (`serve --model-base-path`): the page reads
  # <model_dir>/<served version>/model_card.json, which the ModelCard component pushes there.
  model_dir: str = ''
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
.summary{font-size:1.3em;margin:.3em 0 1em} .summary li{margin:.2em 0}
.faces{display:flex;flex-wrap:wrap;gap:1em} .face{border:1px solid #ccc;padding:.5em;border-radius:6px}
.face img{display:block;width:192px;height:192px;image-rendering:auto}
.verdict{font-weight:bold;font-size:1.2em} .fake .verdict{color:#c00} .real .verdict{color:#070}
.photo img{max-width:100%} .note{font-size:.9em;color:#444;border-top:1px solid #ddd;margin-top:1.5em}
.legend{display:flex;gap:.3em;align-items:center;flex-wrap:wrap;font-size:.9em}
.legend span.swatch{display:inline-block;width:2.2em;height:1.1em;border:1px solid #999}
.warn{background:#fff7e0;border:1px solid #c90;padding:.6em;border-radius:6px;color:#222}
@media (max-width:600px){body{margin:.5em auto;padding:0 .5em} input[type=url]{width:100%}
 .face{width:100%} .face img{width:100%;height:auto} h1{font-size:1.2em}}
"""


def _page(body: str, title: str = 'fakefaces: is this face real?', form_first: bool = True) -> bytes:
  """The page: the form, then `body`; a result page puts the verdicts before the form."""
  content = _FORM + body if form_first else body + _FORM
  return (f'<!doctype html><html><head><meta charset="utf-8">'
          '<meta name="viewport" content="width=device-width, initial-scale=1">'
          f'<title>{html.escape(title)}</title>'
          f'<style>{_STYLE}</style></head><body><h1>Is this face real?</h1>{content}'
          '</body></html>').encode('utf-8')


_FORM = """
<form id="check" method="post" action="/check" enctype="multipart/form-data">
<label>Photo file: <input type="file" id="photo" name="photo" accept="image/*"></label>
<label>or its URL: <input type="url" id="url" name="url" placeholder="https://..."></label>
<button type="submit" id="submit">Check</button>
</form>
"""


def _data_uri(image: Image.Image, quality: int = 88) -> str:
  jpeg = images_lib.encode_jpeg(image.convert('RGB'), quality)
  return 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode('ascii')


_MAX_ALPHA = 0.6  # tint opacity at value 1: the face stays visible under the strongest evidence
LEGEND_VALUES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _tint(base: np.ndarray, value: np.ndarray) -> np.ndarray:
  """`base` RGB (float) tinted by `value` in [0, 1]: none at 0, red to yellow up to 1."""
  value = np.clip(value, 0.0, 1.0)
  colour = np.stack([np.full_like(value, 255.0), value * 255.0, np.zeros_like(value)], axis=-1)
  alpha = (_MAX_ALPHA * value)[..., None]
  return np.clip(base * (1 - alpha) + colour * alpha, 0, 255)


def heatmap_overlay(crop: Image.Image, heatmap: np.ndarray, side: int = _CROP_SIDE) -> Image.Image:
  """The crop tinted by `heatmap` (values in [0, 1] on one scale: `photos.evidence_map`)."""
  base = np.asarray(crop.convert('RGB').resize((side, side), Image.BILINEAR), dtype=np.float32)
  heat = np.asarray(Image.fromarray(np.float32(np.clip(heatmap, 0, 1)), mode='F').resize(
      (side, side), Image.BILINEAR), dtype=np.float32)
  return Image.fromarray(np.uint8(np.round(_tint(base, heat))))


def legend_html() -> str:
  """What the tint means, in numbers: swatches of the overlay's colours over mid grey."""
  grey = np.full((len(LEGEND_VALUES), 3), 128.0)
  colours = _tint(grey, np.array(LEGEND_VALUES))
  swatches = ''.join(
      f'<span class="swatch" style="background:rgb({r:.0f},{g:.0f},{b:.0f})"></span>{v:g}'
      for v, (r, g, b) in zip(LEGEND_VALUES, colours))
  return ('<div id="legend"><p class="legend">Tint: ' + swatches + '</p><p>The tint at a spot is '
          'the share of the face\'s P(fake) that Grad-CAM puts there: P(fake) times the map '
          'scaled to its peak. A face scored P(fake) = 0.02 is tinted at most 0.02 (no visible '
          'tint); yellow (1) needs a certain "fake" and the strongest evidence. Where the '
          'verdict is real the tint is faint or absent.</p></div>')


def preview_of(image: Image.Image) -> Image.Image:
  """`image` shrunk (bilinear) to at most _PREVIEW_SIDE; itself where it is that small."""
  scale = min(1.0, _PREVIEW_SIDE / max(image.size))
  if scale == 1.0:
    return image
  return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                      Image.BILINEAR)


def boxed_preview(image: Image.Image, verdicts: List[photos.FaceVerdict],
                  size: Optional[Tuple[int, int]] = None) -> Image.Image:
  """The photo (at most _PREVIEW_SIDE) with each face boxed and numbered.

  `image`: the photo, or its `preview_of` copy; `size`: the photo's (width, height), in
  whose pixels the face boxes are (None: `image`'s).
  """
  size = size or image.size
  scale = min(1.0, _PREVIEW_SIDE / max(size))
  preview = preview_of(image)
  if preview is image:
    preview = image.copy()
  draw = ImageDraw.Draw(preview)
  width = max(2, round(max(preview.size) / 300))
  for i, face in enumerate(verdicts, start=1):
    box = [round(v * scale) for v in face.box]
    colour = (220, 0, 0) if face.label == 'fake' else (0, 160, 0)
    draw.rectangle(box, outline=colour, width=width)
    draw.text((box[0] + width + 1, box[1] + width + 1), str(i), fill=colour)
  return preview


def gate_note(pattern: str, card_verdict: Optional[str] = None) -> str:
  """HTML: what the served model was checked for, from the newest FairnessGate report.json.

  `card_verdict`: the gate verdict the model card states (shown above), so that a page
  without the report says where that verdict came from instead of contradicting it.
  """
  path = newest_gate_report(pattern)
  if path is None and card_verdict:
    return ('<div class="note" id="gate-note"><p>The fairness gate verdict above '
            f'({html.escape(card_verdict)}) is the model card\'s; the gate\'s own report, with '
            'each check, was not given to this page (<code>--gate-report</code>).</p></div>')
  if path is None:
    return ('<div class="note" id="gate-note"><p>No fairness gate report was given to this page '
            '(<code>--gate-report</code>), so it cannot say what the model was checked for.</p></div>')
  try:
    report = reports.read_report(os.path.dirname(path), os.path.basename(path), missing_ok=False)
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
  parts.append('<p>The verdict is the model\'s opinion of each aligned face; it can be wrong. '
               '<a id="gate-report-link" href="/gate-report">The gate\'s full report</a>.</p>')
  return '<div class="note" id="gate-note">' + ''.join(parts) + '</div>'


def newest_gate_report(pattern: str) -> Optional[str]:
  """The newest report.json matching `pattern`, or None."""
  paths = sorted(glob.glob(pattern), key=os.path.getmtime) if pattern else []
  return paths[-1] if paths else None


@dataclasses.dataclass
class ModelFacts:
  """What the page knows about the served model, each fact from the model or its card."""
  version: Optional[int] = None  # the newest AVAILABLE version the server reports
  input_size: Optional[int] = None  # face crop side in pixels (the model's face_preparation)
  card: Optional[Dict] = None  # model_card.json beside the served version
  card_path: str = ''
  problem: str = ''  # why something is unknown, said on the page


def read_model_facts(client, model_dir: str) -> ModelFacts:
  """The served version, its input size and its model card (`<model_dir>/<version>/model_card.json`)."""
  facts = ModelFacts()
  try:
    available = [v for v, state in client.model_status().items() if state == 'AVAILABLE']
    facts.version = max(available) if available else None
    facts.input_size = client.face_preparation().output_size
  except status_lib.ServingError as e:
    facts.problem = f'the model server: {e.code.name}: {e.message}'
    return facts
  if not model_dir:
    facts.problem = ('this page was not given the served model\'s folder (--model-dir), so it '
                     'cannot read the model card pushed beside it')
  elif facts.version is None:
    facts.problem = 'the model server reports no available version'
  else:
    version_dir = os.path.join(model_dir, str(facts.version))
    facts.card_path = os.path.join(version_dir, MODEL_CARD_JSON)
    try:
      facts.card = reports.read_report(version_dir, MODEL_CARD_JSON)
    except (OSError, ValueError) as e:
      facts.problem = f'the model card of version {facts.version} is unreadable: {e}'
    else:
      if facts.card is None:
        facts.problem = (f'version {facts.version} has no {MODEL_CARD_JSON} beside it in '
                         f'{model_dir}, so the page cannot say what it was trained on')
  return facts


def _count(value) -> str:
  return f'{int(value):,}' if isinstance(value, (int, float)) else '?'


def model_facts_html(facts: ModelFacts) -> str:
  """HTML: the served model's training data, input size, operating point and gate verdict."""
  items, card = [], facts.card or {}
  parameters = card.get('model_parameters', {})
  note = parameters.get('training_data_note')
  if note:
    items.append(f'<p class="warn" id="training-note">{html.escape(note)}</p>')
  facts_list = []
  sources = parameters.get('data') or []
  if sources:
    facts_list.append('<li id="fact-data">Trained and evaluated on: ' + '; '.join(
        f'{html.escape(str(s.get("name")))}: {_count(s.get("faces"))} faces'
        + (f' ({_count(s["evaluated"].get("examples"))} in the test split)'
           if isinstance(s.get('evaluated'), dict) else '') for s in sources) + '</li>')
  if facts.input_size:
    facts_list.append(f'<li id="fact-input">Input: aligned face crops of {facts.input_size} x '
                      f'{facts.input_size} pixels (from the served model)</li>')
  point = parameters.get('operating_point') or {}
  if point.get('decision_threshold') is not None:
    facts_list.append(f'<li id="fact-threshold">Operating point: "fake" when P(fake) &ge; '
                      f'{contract.format_probability(point["decision_threshold"])}'
                      + (f' ({html.escape(str(point["source"]))})' if point.get('source') else '')
                      + '</li>')
  fairness = (card.get('quantitative_analysis') or {}).get('fairness') or {}
  if fairness:
    facts_list.append(f'<li id="fact-gate">Fairness gate: {html.escape(str(fairness.get("verdict")))}, '
                      f'{"blessed" if fairness.get("blessed") else "not blessed"} '
                      '(<a id="model-card-link" href="/model-card">model card</a>)</li>')
  if facts_list:
    items.append('<ul>' + ''.join(facts_list) + '</ul>')
  if facts.problem:
    items.append(f'<p id="model-facts-problem">Unknown: {html.escape(facts.problem)}.</p>')
  version = f' (version {facts.version})' if facts.version is not None else ''
  return (f'<div class="note" id="model-facts"><p><b>The served model{version}.</b></p>'
          + ''.join(items) + '</div>')


def render_result(source: str, result: photos.PhotoResult, note: str) -> bytes:
  body = ['<div id="result">']
  if result.faces:  # the answer first: on a phone everything else is below the fold
    body.append('<ul class="summary" id="verdicts">' + ''.join(
        f'<li class="{html.escape(face.label)}">Face {i}: <span class="verdict">'
        f'{html.escape(face.label)}</span>, P(fake) = {contract.format_probability(face.fake_probability)}'
        + (f' ({html.escape(face.turned_note())})' if face.rotation else '') + '</li>'
        for i, face in enumerate(result.faces, start=1)) + '</ul>')
  body.append(f'<p id="face-count">{html.escape(result.summary())}.</p>')
  if not result.faces:
    body.append(f'<p class="noface" id="no-face">No face found in this photo '
                f'({html.escape(result.no_face_reason)}).</p>')
  body.append(f'<p>Checked: <span id="source">{html.escape(source)}</span></p>')
  body.append(f'<div class="photo"><img id="photo-boxed" alt="the photo with faces boxed" '
              f'src="{_data_uri(boxed_preview(result.image, result.faces, result.size))}"></div>')
  body.append('<div class="faces">')
  for i, face in enumerate(result.faces, start=1):
    evidence = photos.evidence_map(face.heatmap, face.fake_probability)
    overlay = heatmap_overlay(face.crop, evidence)
    body.append(
        f'<div class="face {html.escape(face.label)}" id="face-{i}" data-label="{html.escape(face.label)}" '
        f'data-fake-probability="{face.fake_probability:.6f}" data-box="{",".join(map(str, face.box))}" '
        f'data-map-peak="{float(evidence.max()) if evidence.size else 0.0:.6f}" '
        f'data-rotation="{face.rotation}">'
        f'<img class="heatmap" alt="face {i} with the heatmap of what looked fake" '
        f'src="{_data_uri(overlay)}">'
        f'<p>Face {i}: <span class="verdict">{html.escape(face.label)}</span><br>'
        f'P(fake) = <span class="probability">{contract.format_probability(face.fake_probability)}</span></p></div>')
  body.append('</div>')
  if result.faces:
    body.append(legend_html())
  body.append('</div>')
  return _page(''.join(body) + note, form_first=False)


def _error_page(message: str, note: str = '') -> bytes:
  return _page(f'<p class="error" id="error">{html.escape(message)}</p>{note}')


def _with_preview_only(prepare, *args) -> faces_lib.PreparedPhoto:
  """`prepare(*args)` with its photo replaced by the page's preview (the boxes keep its size)."""
  photo = prepare(*args)
  return dataclasses.replace(photo, image=preview_of(photo.image), size=photo.size)


class PhotoChecker:
  """The page's work, independent of HTTP: bytes or URL -> rendered result."""

  def __init__(self, options: WebOptions):
    from fakefaces.serving import client as client_lib  # pylint: disable=import-outside-toplevel
    self.options = options
    self._client_lib = client_lib
    self._lock = threading.Lock()  # guards the swap of `_preparer`
    self._preparer: Optional[faces_lib.FacePreparer] = None
    # Every photo is decoded and prepared on this one thread, in turn: dlib's detectors are
    # not thread-safe, its allocations stay in one malloc arena, and the photo is shrunk to
    # the page's preview there, so at most one full-size decoded photo is in memory however
    # many uploads wait or are being scored (bench/photo_memory.py, docs/photos.md
    # "Memory per photo").
    self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                         thread_name_prefix='prepare')

  def _run_prepare(self, function, *args):
    return self._worker.submit(_with_preview_only, function, *args).result()

  def _client(self):
    return self._client_lib.ServingClient(self.options.server, model_name=self.options.model_name,
                                          rest=self.options.rest, timeout=self.options.timeout)

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
          preparer = self._preparer = photos.preparer_for(client, reuse=self._preparer)
        result = photos.check_photo(client, preparer, data, explain=True,
                                    max_faces=self.options.max_faces, run=self._run_prepare)
      except photos.ImageProblem as e:
        raise UserError(f'Cannot check this file: {e.reason}') from None
      except status_lib.ServingError as e:
        raise UserError(f'The model server ({self.options.server}): {e.code.name}: '
                        f'{e.message}', status=502) from None
      notes = self._notes(client)
    return render_result(source, result, notes)

  def _notes(self, client) -> str:
    facts = read_model_facts(client, self.options.model_dir)
    fairness = ((facts.card or {}).get('quantitative_analysis') or {}).get('fairness') or {}
    verdict = fairness.get('verdict')
    return model_facts_html(facts) + gate_note(self.options.gate_report,
                                               str(verdict) if verdict else None)

  def notes(self) -> str:
    """HTML: what is known about the served model, and what it was checked for."""
    with self._client() as client:
      return self._notes(client)

  def model_card_html(self) -> Optional[bytes]:
    """model_card.html beside the served version, or None when there is none."""
    with self._client() as client:
      facts = read_model_facts(client, self.options.model_dir)
    if not facts.card_path:
      return None
    path = os.path.join(os.path.dirname(facts.card_path), MODEL_CARD_HTML)
    if not os.path.isfile(path):
      return None
    with open(path, 'rb') as f:
      return f.read()

  def gate_report(self) -> Optional[Tuple[bytes, str]]:
    """(body, content type) of the gate's report.html beside its report.json, else the JSON."""
    path = newest_gate_report(self.options.gate_report)
    if path is None:
      return None
    html_path = os.path.join(os.path.dirname(path), 'report.html')
    if os.path.isfile(html_path):
      path, content_type = html_path, 'text/html; charset=utf-8'
    else:
      content_type = 'application/json'
    with open(path, 'rb') as f:
      return f.read(), content_type


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
    try:
      self._get(urllib.parse.urlsplit(self.path).path)
    except Exception:  # pylint: disable=broad-except  (an answer, never a dropped connection)
      log.exception('web: GET %s failed', self.path)
      self._send(500, _error_page('Something went wrong on this page; it was logged.'))

  def _get(self, path: str) -> None:
    if path == '/':
      self._send(200, _page(self.checker.notes()))
    elif path == '/model-card':
      card = self.checker.model_card_html()
      if card is None:
        self._send(404, _error_page('The served model has no model card beside it (or this page '
                                    'was not given --model-dir).'))
      else:
        self._send(200, card)
    elif path == '/gate-report':
      report = self.checker.gate_report()
      if report is None:
        self._send(404, _error_page('This page was not given a fairness gate report (--gate-report).'))
      else:
        self._send(200, *report)
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
    try:
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
      self._send(e.status, _error_page(str(e), self._notes_after_error()))
    except Exception:  # pylint: disable=broad-except
      log.exception('web: request failed')
      self._send(500, _error_page('Something went wrong while checking this photo; it was logged. '
                                  'Try another photo.', self._notes_after_error()))

  def _notes_after_error(self) -> str:
    try:
      return self.checker.notes()
    except Exception:  # pylint: disable=broad-except  (the error page must still be sent)
      log.exception('web: reading the model facts failed')
      return ''


class WebServer(http.server.ThreadingHTTPServer):
  daemon_threads = True


def make_server(options: WebOptions) -> WebServer:
  handler = type('Handler', (_Handler,), {'checker': PhotoChecker(options)})
  return WebServer((options.host, options.port), handler)
