"""Shared pytest fixtures and options. Importing `fakefaces.pipeline` sets TF_USE_LEGACY_KERAS=1 first."""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

import fakefaces.pipeline  # noqa: E402,F401  (sets the Keras environment before TensorFlow loads)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A CPU's /proc/cpuinfo flags line with native bfloat16 (Sapphire Rapids), for --cpu-bf16.
BF16_CPUINFO = 'flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n'


def pytest_addoption(parser):
  parser.addoption(
      '--cpu-bf16', action='store_true',
      help='run as on a CPU with AVX512-BF16/AMX: train.precision auto resolves to '
           'mixed_bfloat16 (emulated here when this CPU lacks it, so training is slower) in '
           'this process and every process it starts (FAKEFACES_CPUINFO)')


def pytest_configure(config):
  if config.getoption('--cpu-bf16'):
    import tempfile  # pylint: disable=import-outside-toplevel
    from fakefaces.components.image_encoder import precision  # pylint: disable=import-outside-toplevel
    path = os.path.join(tempfile.mkdtemp(prefix='cpu_bf16_'), 'cpuinfo')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(BF16_CPUINFO)
    os.environ[precision.CPUINFO_ENV] = path  # inherited by subprocesses and xdist workers


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
  """Keeps each module's tests on one xdist worker when they share a module fixture.

  `make test` runs `-n auto --dist loadgroup`: ungrouped tests spread over the
  workers one by one, and a module whose tests share a module- or class-scoped
  fixture (a pipeline run, a trained model, a server) is one group, so that
  fixture runs once, not once per worker. Under xdist, the slow units go first.
  """
  grouped = set()
  for item in items:
    fixturedefs = getattr(item, '_fixtureinfo').name2fixturedefs.values()
    if any(defs and defs[-1].scope in ('module', 'class', 'package') for defs in fixturedefs):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))
      grouped.add(item.module.__name__)
  if hasattr(config, 'workerinput'):  # an xdist worker: the controller schedules its collection
    _slow_units_first(items, grouped)


def _slow_units_first(items, grouped) -> None:
  """Puts the work units (a group, or one ungrouped test) with a `slow` test first, in place.

  xdist hands units out in collection order (`--no-loadscope-reorder`) to whichever
  worker runs low; a 2-minute unit handed out last makes one worker the tail of the
  run while the other idles. Slow units first, then the rest (each under ~20 s) fill the
  gaps. The order within a unit is kept, so a module fixture is still set up once.
  """
  def unit(item):
    return item.module.__name__ if item.module.__name__ in grouped else item.nodeid

  slow_units = {unit(item) for item in items if item.get_closest_marker('slow')}
  items.sort(key=lambda item: unit(item) not in slow_units)  # stable


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
