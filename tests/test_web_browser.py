"""The photo-check page in a real browser (headless Chromium driven by selenium).

A model server (`fakefaces serve --builtin`) and the page (`fakefaces web`)
run as child processes on loopback; Chromium uploads FairFace photos from
../shared/data and every kind of bad input, reads what the page shows, and
the test checks both servers are still up afterwards.

The served model is untrained, with its output layer rescaled so that one of
two FairFace faces scores clearly fake and the other clearly real: the page is
tested on both verdicts. A model card (built by the ModelCard component's own
code) sits beside the served version, as the pipeline pushes it.

Screenshots (real and fake verdict at desktop and phone width, the model
card) go to pytest's temporary folder; `make docs-screenshots` sets
FAKEFACES_SCREENSHOT_DIR=docs to refresh the pictures the docs show.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from fakefaces.components.face_preparation import faces
from fakefaces.serving import client as client_lib
import serving_testing as testing

PREP = faces.FacePreparation(detector='hog', output_size=128)
MAX_UPLOAD = 1_000_000
ONE_FACE = ('1000.jpg', '1002.jpg', '1009.jpg')
READY = re.compile(r'^web page on (http://\S+/)')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')
TINY_SIZE = 32
PHONE_WIDTH, DESKTOP_WIDTH = 390, 1200
TRAINING_NOTE = 'Trained on generated demo data only: it detects nothing in real photos.'
# The screenshot the docs show of each kind, when refreshing them (make docs-screenshots).
DOCS_PICTURES = {'fake_desktop': 'web_page.png', 'model_card': 'model_card.png'}

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason='needs Debian chromium and chromium-driver (make test installs them when root)')


def _jpeg(image: Image.Image, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=95, **kwargs)
  return buffer.getvalue()


@pytest.fixture(scope='module')
def photos_dir(faces_data, tmp_path_factory):
  """Every input the page is tried with, written as files for the browser to upload."""
  out = tmp_path_factory.mktemp('web_inputs')
  paths = {'photo': os.path.join(faces_data, 'fairface', 'val', ONE_FACE[0])}
  group = Image.new('RGB', (224 * 3, 224))
  for i, name in enumerate(ONE_FACE):
    group.paste(Image.open(os.path.join(faces_data, 'fairface', 'val', name)).convert('RGB'),
                (224 * i, 0))
  upright = Image.new('RGB', (300, 224), (128, 128, 128))
  upright.paste(Image.open(paths['photo']).convert('RGB'), (38, 0))
  exif = Image.Exif()
  exif[0x0112] = 6  # stored sideways, EXIF says: rotate 90 degrees clockwise to display
  noise = np.random.default_rng(0).integers(0, 256, (700, 800, 3), dtype=np.uint8)
  contents = {
      'many_faces.jpg': _jpeg(group),
      'exif_rotated.jpg': _jpeg(upright.transpose(Image.ROTATE_90), exif=exif.tobytes()),
      'tiny_8x8.jpg': _jpeg(Image.new('RGB', (8, 8), (120, 90, 80))),
      'no_face.jpg': _jpeg(Image.new('RGB', (300, 200), (200, 180, 160))),
      'not_an_image.jpg': b'%PDF-1.4 this is not an image\n',
  }
  buffer = io.BytesIO()
  Image.fromarray(noise).save(buffer, 'PNG')
  contents['oversized.png'] = buffer.getvalue()
  assert len(contents['oversized.png']) > MAX_UPLOAD
  for name, data in contents.items():
    (out / name).write_bytes(data)
    paths[name.split('.')[0]] = str(out / name)
  return paths


@pytest.fixture(scope='module')
def gate_report(tmp_path_factory):
  """A FairnessGate report.json as the gate writes it (the fields the page reads)."""
  path = tmp_path_factory.mktemp('gate') / 'report.json'
  path.write_text(json.dumps({
      'verdict': 'pass', 'blessed': True, 'decision_threshold': 0.5,  # as the FairnessGate writes it
      'checks': [{'grouping': 'Male vs Female', 'metric': 'fpr_gap', 'status': 'pass',
                  'value': 0.01}] * 30
                + [{'grouping': 'race', 'metric': 'fnr_gap', 'status': 'not_measurable',
                    'value': None, 'reason': 'no labelled fakes'}] * 6,
      'groupings': [{'name': 'gender'}, {'name': 'race'}, {'name': 'age'}],
      'not_measured': ['race: fnr_gap', 'race: average_odds_difference'], 'reasons': []}))
  return str(path)


def _decisive_tiny_model(export_dir, crops):
  """An untrained model whose output layer is rescaled so crops[0] scores about 0.02 and
  crops[1] about 0.98 (a real and a fake verdict at the exported threshold 0.5)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  from fakefaces.components.image_encoder import preprocess  # pylint: disable=import-outside-toplevel
  from fakefaces.components.trainer import export, model as model_lib  # pylint: disable=import-outside-toplevel
  keras_model = model_lib.build_model('baseline', TINY_SIZE, 1, seed=3)
  layer = keras_model.get_layer(export.OUTPUT_LAYER)
  images = preprocess.decode_batch(tf.constant(crops), TINY_SIZE, 'grayscale')
  head = keras.Model(keras_model.inputs, layer.input)(images).numpy()
  kernel, bias = layer.get_weights()
  logits = (head @ kernel + bias).reshape(-1)
  assert abs(logits[1] - logits[0]) > 1e-6, 'the two faces score the same'
  scale = 8.0 / (logits[1] - logits[0])  # logits become -4 and +4
  layer.set_weights([kernel * scale, (bias - logits.mean()) * scale])
  export.export_saved_model(keras_model, export_dir, TINY_SIZE, 'grayscale',
                            face_preparation=PREP)


def _write_model_card(version_dir, gate_report_path):
  """model_card.json/.html beside the served version, as the ModelCard component writes them."""
  from fakefaces.components.model_card import config as card_config  # pylint: disable=import-outside-toplevel
  from fakefaces.components.model_card import card as card_lib  # pylint: disable=import-outside-toplevel
  from fakefaces.components.model_card import executor as card_executor  # pylint: disable=import-outside-toplevel
  with open(gate_report_path, encoding='utf-8') as f:
    report = json.load(f)
  card = card_lib.build_card(
      card_config.ModelCardConfig(training_data_note=TRAINING_NOTE), str(version_dir), report,
      None, {'pushed': True, 'version': '1', 'destination': str(version_dir)},
      ingest={'by_source': {'demo': {'written': 1000}}})
  card_executor.write_card(card, str(version_dir))


@pytest.fixture(scope='module')
def faces_by_verdict(faces_data):
  """{'real': path, 'fake': path} of the two photos the served model splits."""
  return {'real': os.path.join(faces_data, 'fairface', 'val', ONE_FACE[0]),
          'fake': os.path.join(faces_data, 'fairface', 'val', ONE_FACE[1])}


@pytest.fixture(scope='module')
def servers(tmp_path_factory, gate_report, faces_by_verdict):
  base = tmp_path_factory.mktemp('web_serving')
  preparer = faces.FacePreparer(PREP)
  crops = []
  for kind in ('real', 'fake'):
    with open(faces_by_verdict[kind], 'rb') as f:
      crops.append(preparer.prepare(f.read(), all_faces=True).faces[0].encoded)
  _decisive_tiny_model(str(base / '1'), crops)
  _write_model_card(base / '1', gate_report)
  logs = tmp_path_factory.mktemp('web_logs')
  with testing.ServerProcess(str(base), log_path=str(logs / 'serve.log')) as model_server:
    web_log = open(logs / 'web.log', 'wb')  # pylint: disable=consider-using-with
    web = subprocess.Popen(
        [sys.executable, '-m', 'fakefaces.pipeline.cli', 'web', '--server', model_server.grpc_target,
         '--port', '0', '--max-upload-bytes', str(MAX_UPLOAD), '--gate-report', gate_report,
         '--model-dir', str(base)],
        cwd=testing.PROJECT_ROOT, stdout=subprocess.PIPE, stderr=web_log,
        env=dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONUNBUFFERED='1'))
    try:
      url = None
      deadline = time.monotonic() + 120
      while url is None and time.monotonic() < deadline:
        line = web.stdout.readline().decode()
        if not line and web.poll() is not None:
          raise RuntimeError(f'fakefaces web exited early; see {logs / "web.log"}')
        match = READY.match(line)
        url = match and match.group(1)
      assert url, 'fakefaces web did not start'
      yield url, model_server, web
      assert web.poll() is None, f'the web server died; see {logs / "web.log"}'
      assert model_server.process.poll() is None, 'the model server died'
    finally:
      web.terminate()
      web.wait(30)
      web.stdout.close()
      web_log.close()


@pytest.fixture(scope='module')
def browser():
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for argument in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                   f'--window-size={DESKTOP_WIDTH},1100'):
    options.add_argument(argument)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.set_page_load_timeout(180)
  yield driver
  driver.quit()


def _submit(browser, url, upload=None, link=None):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  browser.get(url)
  if upload:
    browser.find_element(By.ID, 'photo').send_keys(upload)
  if link:
    browser.find_element(By.ID, 'url').send_keys(link)
  browser.find_element(By.ID, 'submit').click()
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline:
    if browser.find_elements(By.ID, 'result') or browser.find_elements(By.ID, 'error'):
      return browser
    time.sleep(0.2)
  raise AssertionError(f'no result or error on the page: {browser.page_source[:2000]}')


def _error(browser):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  found = browser.find_elements(By.ID, 'error')
  return found[0].text if found else None


def _faces(browser):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  return browser.find_elements(By.CSS_SELECTOR, '.face')


def _still_up(url, servers):
  with urllib.request.urlopen(url + 'healthz', timeout=30) as response:
    assert response.read() == b'ok\n'
  assert servers[1].process.poll() is None and servers[2].poll() is None


@pytest.fixture(scope='module')
def screenshots(tmp_path_factory):
  """save(browser, name): a PNG in pytest's temporary folder (and in
  $FAKEFACES_SCREENSHOT_DIR under its docs name, when refreshing the docs)."""
  out = tmp_path_factory.mktemp('screenshots')
  docs_dir = os.environ.get('FAKEFACES_SCREENSHOT_DIR')

  def save(browser, name):
    path = out / f'{name}.png'
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    if docs_dir and name in DOCS_PICTURES:
      shutil.copyfile(path, os.path.join(docs_dir, DOCS_PICTURES[name]))
    return path
  return save


def _top(browser, element):
  return browser.execute_script('return arguments[0].getBoundingClientRect().top', element)


@pytest.mark.parametrize('kind', ['real', 'fake'])
@pytest.mark.parametrize('width', [DESKTOP_WIDTH, PHONE_WIDTH])
def test_screenshot_verdict_first_map_scaled_and_model_facts(browser, servers, faces_by_verdict,
                                                             screenshots, kind, width):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  url = servers[0]
  browser.set_window_size(width, 1000)
  try:
    _submit(browser, url, upload=faces_by_verdict[kind])
    assert _error(browser) is None, _error(browser)
    found = _faces(browser)
    assert len(found) == 1
    face = found[0]
    verdict = face.find_element(By.CSS_SELECTOR, '.verdict').text
    probability = float(face.get_attribute('data-fake-probability'))
    assert verdict == kind, (verdict, probability)
    # The map is on the evidence's scale: never stronger than P(fake); none on a clear real.
    peak = float(face.get_attribute('data-map-peak'))
    assert peak <= probability + 1e-6
    if kind == 'real':
      assert probability < 0.05 and peak < 0.05
    else:
      assert probability > 0.95 and peak > 0.5
    heatmap = face.find_element(By.CSS_SELECTOR, 'img.heatmap')
    assert browser.execute_script('return arguments[0].naturalWidth', heatmap) > 0
    assert '0.25' in browser.find_element(By.ID, 'legend').text  # the colours, in numbers
    # The verdict comes first, on screen without scrolling, before the photo and the form.
    verdicts = browser.find_element(By.ID, 'verdicts')
    assert kind in verdicts.text
    assert 0 <= _top(browser, verdicts) < browser.execute_script('return window.innerHeight')
    assert _top(browser, verdicts) < _top(browser, browser.find_element(By.ID, 'photo-boxed'))
    assert _top(browser, verdicts) < _top(browser, browser.find_element(By.ID, 'check'))
    # Nothing wider than the window: readable on a phone without sideways scrolling.
    assert browser.execute_script('return document.documentElement.scrollWidth') <= width
    # Facts about the served model, from the card pushed beside it and the model itself.
    facts = browser.find_element(By.ID, 'model-facts').text
    assert TRAINING_NOTE in facts
    assert 'demo: 1,000 faces' in browser.find_element(By.ID, 'fact-data').text
    assert f'{PREP.output_size} x {PREP.output_size} pixels' in facts
    assert 'P(fake) ≥ 0.5' in browser.find_element(By.ID, 'fact-threshold').text
    assert 'FairFace/FFHQ' not in browser.page_source
    assert 'pass' in browser.find_element(By.ID, 'gate-verdict').text
    assert 'Not measured' in browser.find_element(By.ID, 'gate-note').text
    screenshots(browser, f'{kind}_{"phone" if width == PHONE_WIDTH else "desktop"}')
  finally:
    browser.set_window_size(DESKTOP_WIDTH, 1100)
  _still_up(url, servers)


def test_the_page_and_any_client_agree(browser, servers, faces_by_verdict):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  _submit(browser, servers[0], upload=faces_by_verdict['fake'])
  face = _faces(browser)[0]
  verdict = face.find_element(By.CSS_SELECTOR, '.verdict').text
  probability = float(face.find_element(By.CSS_SELECTOR, '.probability').text)
  boxed = browser.find_element(By.ID, 'photo-boxed')
  assert browser.execute_script('return arguments[0].naturalWidth', boxed) > 0
  with client_lib.ServingClient(servers[1].grpc_target) as client:
    from fakefaces.serving import photos  # pylint: disable=import-outside-toplevel
    with open(faces_by_verdict['fake'], 'rb') as f:
      direct = photos.check_photo(client, photos.preparer_for(client), f.read())
  assert direct.faces[0].label == verdict
  assert abs(direct.faces[0].fake_probability - probability) < 1e-3


def test_screenshot_links_open_the_model_card_and_gate_report(browser, servers, screenshots):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  browser.get(servers[0])
  browser.find_element(By.ID, 'model-card-link').click()
  assert browser.find_element(By.TAG_NAME, 'h1').text.startswith('Model card:')
  assert TRAINING_NOTE in browser.find_element(By.ID, 'training-note').text
  summary = browser.find_element(By.ID, 'summary').text
  assert 'Operating point: "fake" when P(fake) ≥ 0.5' in summary
  assert browser.find_element(By.ID, 'checks-not_measurable').text.endswith('6 checks')
  assert "{'" not in browser.page_source  # no dict dumps
  screenshots(browser, 'model_card')
  browser.get(servers[0])
  browser.find_element(By.ID, 'gate-report-link').click()
  assert '"verdict": "pass"' in browser.find_element(By.TAG_NAME, 'body').text  # the JSON itself


@pytest.mark.parametrize('case, expect_faces', [('many_faces', 3), ('exif_rotated', 1)])
def test_many_faces_and_exif_rotation(browser, servers, photos_dir, case, expect_faces):
  _submit(browser, servers[0], upload=photos_dir[case])
  assert _error(browser) is None, _error(browser)
  assert len(_faces(browser)) == expect_faces
  _still_up(servers[0], servers)


def test_no_face_is_an_answer_not_an_error(browser, servers, photos_dir):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  _submit(browser, servers[0], upload=photos_dir['no_face'])
  assert _error(browser) is None
  assert 'No face found' in browser.find_element(By.ID, 'no-face').text
  _still_up(servers[0], servers)


@pytest.mark.parametrize('case, upload, link, message', [
    ('tiny_8x8', 'tiny_8x8', None, 'too small for face detection'),
    ('not_an_image', 'not_an_image', None, 'not a readable image'),
    ('oversized', 'oversized', None, "over this page's limit"),
    ('private_url', None, 'http://127.0.0.1:8500/photo.jpg', 'loopback address: refused'),
    ('metadata_url', None, 'http://169.254.169.254/latest/meta-data/', 'link-local address: refused'),
    ('file_url', None, 'file:///etc/passwd', 'only http and https'),
])
def test_bad_inputs_show_a_message_and_the_servers_stay_up(browser, servers, photos_dir, case,
                                                           upload, link, message):
  _submit(browser, servers[0], upload=photos_dir[upload] if upload else None, link=link)
  error = _error(browser)
  assert error is not None and message in error, (case, error)
  assert 'Traceback' not in browser.page_source
  _still_up(servers[0], servers)
