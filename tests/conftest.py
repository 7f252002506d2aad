"""Shared pytest fixtures. Importing `pipeline` sets TF_USE_LEGACY_KERAS=1 first."""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

import fakefaces.pipeline  # noqa: E402,F401  (sets the Keras environment before TensorFlow loads)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _faces_data_dir() -> str:
  return os.environ.get('FACES_DATA') or os.path.join(PROJECT_ROOT, '..', 'shared', 'data')


@pytest.fixture(scope='session')
def faces_data() -> str:
  """Path of the real face images (../shared/data or $FACES_DATA); skips when absent."""
  path = os.path.abspath(_faces_data_dir())
  if not os.path.isfile(os.path.join(path, 'manifest.csv')):
    pytest.skip(f'real face data not found at {path} (set FACES_DATA to its folder)')
  return path


@pytest.fixture(scope='session')
def field_case():
  """`field_case(name)`: the folder ../shared/field_cases/<name> (inputs users really send,
  see its README); skips when absent ($FIELD_CASES overrides the location)."""
  root = os.path.abspath(os.environ.get('FIELD_CASES') or
                         os.path.join(PROJECT_ROOT, '..', 'shared', 'field_cases'))

  def get(name: str) -> str:
    path = os.path.join(root, name)
    if not os.path.isdir(path):
      pytest.skip(f'field case {name} not found at {path} (set FIELD_CASES to its folder)')
    return path

  return get


@pytest.fixture(scope='session')
def demo_dataset(tmp_path_factory) -> str:
  """A small generated demo dataset (manifest path), shared by the session's tests."""
  from fakefaces.pipeline import demo_data
  out = tmp_path_factory.mktemp('demo_data')
  return demo_data.generate(str(out), num_images=160, seed=7)


@pytest.fixture(scope='session')
def load_bench():
  """Loads a bench script as a module by path: bench/ is not a package, and putting the
  repository root on sys.path would let its bare folders shadow installed packages."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def load(name: str):
    spec = importlib.util.spec_from_file_location(f'bench_{name}',
                                                  os.path.join(root, 'bench', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

  return load
