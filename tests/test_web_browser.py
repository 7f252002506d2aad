"""The photo-check page in a real browser (headless Chromium driven by selenium).

A model server (`fakefaces serve --builtin`) and the page (`fakefaces web`)
run as child processes on loopback; Chromium uploads FairFace photos from
../shared/data and every kind of bad input, reads what the page shows, and
the test checks both servers are still up afterwards. The screenshot of a
result is kept as runs/web_test/web_page.png and docs/web_page.png (shown in docs/photos.md).
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

from fakefaces.components.face_example_gen import faces
from fakefaces.serving import client as client_lib
from fakefaces.serving import testing

PREP = faces.FacePreparation(detector='hog', output_size=128)
MAX_UPLOAD = 1_000_000
ONE_FACE = ('1000.jpg', '1002.jpg', '1009.jpg')
READY = re.compile(r'^web page on (http://\S+/)')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')
SCREENSHOTS = [os.path.join(testing.PROJECT_ROOT, 'runs', 'web_test', 'web_page.png'),
               os.path.join(testing.PROJECT_ROOT, 'docs', 'web_page.png')]

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
      'verdict': 'pass', 'blessed': True,
      'checks': [{'status': 'pass'}] * 30 + [{'status': 'not_measurable'}] * 6,
      'groupings': [{'name': 'gender'}, {'name': 'race'}, {'name': 'age'}],
      'not_measured': ['race: fnr_gap', 'race: average_odds_difference'], 'reasons': []}))
  return str(path)


@pytest.fixture(scope='module')
def servers(tmp_path_factory, gate_report):
  base = tmp_path_factory.mktemp('web_serving')
  testing.export_tiny_model(str(base / '1'), face_preparation=PREP)
  logs = tmp_path_factory.mktemp('web_logs')
  with testing.ServerProcess(str(base), log_path=str(logs / 'serve.log')) as model_server:
    web_log = open(logs / 'web.log', 'wb')  # pylint: disable=consider-using-with
    web = subprocess.Popen(
        [sys.executable, '-m', 'fakefaces.pipeline.cli', 'web', '--server', model_server.grpc_target,
         '--port', '0', '--max-upload-bytes', str(MAX_UPLOAD), '--gate-report', gate_report],
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
                   '--window-size=1200,1100'):
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


def test_upload_a_photo_shows_verdict_heatmap_and_gate_note(browser, servers, photos_dir):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  url = servers[0]
  _submit(browser, url, upload=photos_dir['photo'])
  assert _error(browser) is None, _error(browser)
  found = _faces(browser)
  assert len(found) == 1
  verdict = found[0].find_element(By.CSS_SELECTOR, '.verdict').text
  probability = float(found[0].find_element(By.CSS_SELECTOR, '.probability').text)
  assert verdict in ('real', 'fake')
  heatmap = found[0].find_element(By.CSS_SELECTOR, 'img.heatmap')
  assert heatmap.get_attribute('src').startswith('data:image/jpeg;base64,')
  assert browser.execute_script('return arguments[0].naturalWidth', heatmap) > 0
  boxed = browser.find_element(By.ID, 'photo-boxed')
  assert browser.execute_script('return arguments[0].naturalWidth', boxed) > 0
  assert 'pass' in browser.find_element(By.ID, 'gate-verdict').text
  assert 'Not measured' in browser.find_element(By.ID, 'gate-note').text
  # The page says what any TF Serving client gets for the same face.
  with client_lib.ServingClient(servers[1].grpc_target) as client:
    from fakefaces.serving import photos  # pylint: disable=import-outside-toplevel
    with open(photos_dir['photo'], 'rb') as f:
      direct = photos.check_photo(client, photos.preparer_for(client), f.read())
  assert direct.faces[0].label == verdict
  assert abs(direct.faces[0].fake_probability - probability) < 1e-3
  for path in SCREENSHOTS:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    browser.save_screenshot(path)
    assert os.path.getsize(path) > 10_000
  _still_up(url, servers)


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
