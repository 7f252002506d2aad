"""Checks the pipeline image's Dockerfile by parsing it (no Docker engine here).

The `dockerfile` package wraps Docker's own (BuildKit) parser, so a syntax
error fails here as it would in `docker build`. The invariants are the ones the
cluster depends on: Python 3.10, the pinned requirements, the Keras 2 switch,
this project built as a wheel and installed where kubeflow.image_project_root says, and the Beam
boot of the installed Beam version as entrypoint.
"""

import os
import re

import pytest

from fakefaces.kubeflow import runner
from fakefaces.pipeline.config import PROJECT_ROOT, KubeflowConfig

dockerfile = pytest.importorskip(
    'dockerfile', reason='the `dockerfile` package (Docker parser) is not installed; '
    'pip install dockerfile==3.4.0')

DOCKERFILE = os.path.join(PROJECT_ROOT, 'Dockerfile')
DOCKERIGNORE = os.path.join(PROJECT_ROOT, '.dockerignore')


def _pins():
  """{package: version} of the `name==version` lines of requirements.txt."""
  pins = {}
  with open(os.path.join(PROJECT_ROOT, 'requirements.txt'), encoding='utf-8') as f:
    for line in f:
      match = re.match(r'([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#]+)', line)
      if match:
        pins[match.group(1).lower()] = match.group(3)
  return pins


@pytest.fixture(scope='module')
def stages():
  """[(FROM args, [commands])] per build stage, ARG defaults substituted."""
  commands = dockerfile.parse_file(DOCKERFILE)
  args = {}
  result = []
  for command in commands:
    values = tuple(re.sub(r'\$\{(\w+)\}', lambda m: args.get(m.group(1), m.group(0)), v)
                   for v in command.value)
    command = command._replace(value=values)
    if command.cmd == 'ARG':
      name, _, default = values[0].partition('=')
      args.setdefault(name, default)
    elif command.cmd == 'FROM':
      result.append((values, []))
    elif result:
      result[-1][1].append(command)
  return result


def _final(stages):
  return stages[-1][1]


def _runs(stages):
  return [c.value[0] for c in _final(stages) if c.cmd == 'RUN']


def test_images_are_python_3_10_and_the_installed_beam_version(stages):
  beam_version = _pins()['apache-beam']
  assert stages[0][0] == (f'apache/beam_python3.10_sdk:{beam_version}', 'AS', 'beam')
  assert re.fullmatch(r'python:3\.10(-[a-z-]+)?', stages[-1][0][0])


def test_keras_2_is_selected_for_every_process(stages):
  env = {}
  for command in _final(stages):
    if command.cmd == 'ENV':
      env.update(zip(command.value[::2], command.value[1::2]))
  assert env['TF_USE_LEGACY_KERAS'] == '1'


def test_pinned_requirements_are_copied_and_installed(stages):
  copied = [c.value for c in _final(stages) if c.cmd == 'COPY' and not c.flags]
  assert any({'requirements.txt', 'requirements-nodeps.txt'} <= set(v[:-1]) for v in copied)
  runs = ' && '.join(_runs(stages))
  assert re.search(r'pip install -r requirements\.txt', runs)
  assert re.search(r'pip install --no-deps -r requirements-nodeps\.txt', runs)
  tensorflow = _pins()['tensorflow']
  assert f'tensorflow[and-cuda]=={tensorflow}' in runs  # the GPU variant keeps the pin


def test_project_is_built_as_a_wheel_and_installed_at_the_image_project_root(stages):
  (wheel_stage,) = [commands for (base, commands) in stages if base[-1] == 'wheel']
  copied_sources = {c.value[0] for c in wheel_stage if c.cmd == 'COPY' and not c.flags}
  # Every package setup.py ships, plus the schema ImportSchemaGen reads in the pod:
  # the folders the compiler maps into the image.
  assert {'setup.py', *runner.IMAGE_DIRS} <= copied_sources
  assert any('pip wheel --no-deps' in c.value[0] for c in wheel_stage if c.cmd == 'RUN')
  final = _final(stages)
  assert any(c.flags == ('--from=wheel',) for c in final if c.cmd == 'COPY')
  runs = ' && '.join(_runs(stages))
  assert 'pip install --no-deps /wheels/fakefaces-' in runs and ' -e ' not in runs
  # The image asserts that the package landed where the compiler maps repository files.
  assert f"c.PROJECT_ROOT == '{KubeflowConfig().image_project_root}'" in runs


def test_entrypoint_is_the_beam_boot_copied_from_the_beam_image(stages):
  final = _final(stages)
  copies = [c for c in final if c.cmd == 'COPY' and c.flags]
  assert any(c.flags == ('--from=beam',) and c.value == ('/opt/apache/beam', '/opt/apache/beam')
             for c in copies)
  (entrypoint,) = [c for c in final if c.cmd == 'ENTRYPOINT']
  assert entrypoint.json and entrypoint.value == ('/opt/apache/beam/boot',)


def test_build_context_leaves_out_the_venv_and_runs_but_not_what_is_copied(stages):
  with open(DOCKERIGNORE, encoding='utf-8') as f:
    ignored = {line.strip() for line in f if line.strip() and not line.startswith('#')}
  assert {'.git', '.venv', 'runs'} <= ignored
  copied = {v for c in _final(stages) if c.cmd == 'COPY' and not c.flags for v in c.value[:-1]}
  assert not copied & ignored


def test_a_syntax_error_is_caught():
  with pytest.raises(dockerfile.GoParseError):
    dockerfile.parse_string('FROM python:3.10\nCOPY <<EOF\n')
