"""The installable package: a non-editable wheel works in a fresh venv, next to the Kubeflow SDK.

The repository's folders install as `fakefaces.<folder>`; bare `pipeline`,
`components`, `serving` and `kubeflow` belong to other distributions (the
Kubeflow SDK installs `kubeflow`). This test builds the wheel from a copy of
the sources, installs it (not editable) into a new venv together with the
Kubeflow SDK's own wheel, and runs the CLI from a directory outside the
repository: `--help`, `demo-data` and a gate run, which reads the schema-free
thresholds and the packaged configs from the installed files.

The new venv borrows the pinned third-party stack of this one read-only (a
path entry, so this venv's editable install of the project is not visible):
installing 3.4 GB again would need the network and minutes, and is what
`make venv` already proves on every fresh machine.
"""

import glob
import os
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

from fakefaces.pipeline.fixtures import demo_models

pytestmark = pytest.mark.slow  # over ~20 s on 2 cores (pytest.ini); make test-fast leaves it out

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL_FOLDERS = ('pipeline', 'components', 'serving', 'kubeflow')
KUBEFLOW_SDK_WHEELS = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), 'test-wheels')

THRESHOLDS_YAML = """
min_group_size: 10
min_balanced_accuracy: 0.8
min_auc: 0.8
groupings:
  - {name: White vs rest, feature: race, group: White}
bootstrap_samples: 200
"""


def _run(args, cwd, env=None):
  result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, f'{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}'
  return result


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """The wheel built from a copy of the sources (building in place would write build/ here)."""
  work = tmp_path_factory.mktemp('wheel')
  source = work / 'src'
  shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
      '.git', '.venv', 'runs', 'build', 'dist', '*.egg-info', '__pycache__', 'results'))
  _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
        '--quiet', '--wheel-dir', str(work / 'dist'), str(source)], cwd=str(work))
  (path,) = glob.glob(str(work / 'dist' / 'fakefaces-*.whl'))
  return path


def test_wheel_installs_one_top_level_name_with_its_data(wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
  top_level = {name.split('/')[0] for name in names if not name.startswith('fakefaces-')}
  assert top_level == {'fakefaces'}
  for data in ('fakefaces/schema/schema.pbtxt', 'fakefaces/pipeline/configs/thresholds.yaml',
               'fakefaces/serving/models.config',
               'fakefaces/kubeflow/manifests/serving/deployment.yaml'):
    assert data in names


@pytest.fixture(scope='module')
def fresh_venv(tmp_path_factory, wheel):
  sdk = glob.glob(os.path.join(KUBEFLOW_SDK_WHEELS, 'kubeflow-*.whl'))
  if not sdk:
    pytest.skip(f'no Kubeflow SDK wheel in {KUBEFLOW_SDK_WHEELS}; `make venv` downloads it')
  root = tmp_path_factory.mktemp('venv') / 'venv'
  venv.EnvBuilder(with_pip=False).create(str(root))
  purelib = subprocess.check_output(
      [str(root / 'bin' / 'python'), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      text=True).strip()
  # Plain path lines: the .pth files there (this venv's editable install) are not run.
  stack = [path for path in sys.path if path.endswith('site-packages')]
  with open(os.path.join(purelib, '_pinned_stack.pth'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(stack) + '\n')
  _run([sys.executable, '-m', 'pip', '--python', str(root / 'bin' / 'python'), 'install',
        '--quiet', '--no-deps', '--no-index', wheel, sdk[0]], cwd=str(root))
  return root


def _env():
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH',)}
  env['TF_USE_LEGACY_KERAS'] = '1'
  return env


def test_installed_package_is_not_the_source_tree_and_kubeflow_is_the_sdk(fresh_venv, tmp_path):
  out = _run([str(fresh_venv / 'bin' / 'python'), '-c',
              'import kubeflow, fakefaces.kubeflow.runner as r, fakefaces.components.shared.config_base as c;'
              'print(kubeflow.__file__); print(r.__file__); print(c.DEFAULT_SCHEMA)'],
             cwd=str(tmp_path), env=_env()).stdout.split()
  sdk_file, runner_file, schema = out
  purelib = os.path.dirname(os.path.dirname(os.path.dirname(runner_file)))
  assert runner_file == os.path.join(purelib, 'fakefaces', 'kubeflow', 'runner.py')
  assert purelib.startswith(str(fresh_venv))  # the wheel's copy, not the repository
  assert sdk_file == os.path.join(purelib, 'kubeflow', '__init__.py')  # the SDK's, not ours
  assert not os.path.exists(os.path.join(purelib, 'kubeflow', 'runner.py'))
  for folder in ('pipeline', 'components', 'serving'):
    assert not os.path.exists(os.path.join(purelib, folder))
  assert schema == os.path.join(purelib, 'fakefaces', 'schema', 'schema.pbtxt')
  assert os.path.isfile(schema)


def test_cli_help_demo_data_and_gate_run_from_the_wheel(fresh_venv, tmp_path):
  fakefaces = str(fresh_venv / 'bin' / 'fakefaces')
  assert 'compile-kubeflow' in _run([fakefaces, '--help'], cwd=str(tmp_path), env=_env()).stdout

  _run([fakefaces, 'demo-data', '--out', str(tmp_path / 'demo'), '--num-images', '20'],
       cwd=str(tmp_path), env=_env())
  assert os.path.isfile(tmp_path / 'demo' / 'manifest.csv')

  demo_models.write_demo_examples(str(tmp_path / 'data' / 'test.tfrecord.gz'), 140, seed=1)
  demo_models.nyquist_model(str(tmp_path / 'model'))
  (tmp_path / 'thresholds.yaml').write_text(THRESHOLDS_YAML)
  result = subprocess.run(
      [fakefaces, 'gate', '--model', str(tmp_path / 'model'), '--examples',
       str(tmp_path / 'data' / '*.gz'), '--thresholds', str(tmp_path / 'thresholds.yaml'),
       '--out', str(tmp_path / 'gate')],
      cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout + result.stderr
  assert os.path.isfile(tmp_path / 'gate' / 'report.json')
