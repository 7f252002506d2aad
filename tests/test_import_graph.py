"""The floors of `fakefaces`, bottom to top; no module imports a floor above its own.

  floor           folder                         what
  shared          components/shared/             the contracts and helpers every layer uses
  face library    components/face_preparation/   photo bytes to the aligned crop a model sees
  image encoder   components/image_encoder/      the decode, the CLIP tower and its embedding cache
  server          serving/                       TF Serving protocol server, client, photo path, web page
  components      components/<component>/        the TFX components and the Trainer's module
  pipeline        pipeline/ (except cli/)        config, assembly, local runner, run metadata
  kubeflow        kubeflow/                      KFP compilation of the same pipeline
  command line    pipeline/cli/                  `fakefaces` and its commands

A module may import its own floor and the floors below it. On the components
floor no component imports a sibling: what two of them share moves down to
`components/shared/`. A component folder is one that holds a TFX component
(`component.py`) or the Trainer's module (`module.py`). Imports inside functions
count too: they hide the graph, they do not leave it. tests/ and bench/ sit
outside the floors and may import any of them.
"""

import ast
import os
import subprocess
import sys
from typing import Iterator, Optional, Set, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS_DIR = os.path.join(PROJECT_ROOT, 'components')
PACKAGE_FOLDERS = ('components', 'serving', 'pipeline', 'kubeflow')  # fakefaces.<folder>

# Bottom to top: (floor, its package). The components floor is every other package
# under fakefaces.components; a module belongs to the floor of its longest matching package.
FLOORS = (
    ('shared', 'fakefaces.components.shared'),
    ('face library', 'fakefaces.components.face_preparation'),
    ('image encoder', 'fakefaces.components.image_encoder'),
    ('server', 'fakefaces.serving'),
    ('components', 'fakefaces.components'),
    ('pipeline', 'fakefaces.pipeline'),
    ('kubeflow', 'fakefaces.kubeflow'),
    ('command line', 'fakefaces.pipeline.cli'),
)
RANK = {package: rank for rank, (_, package) in enumerate(FLOORS)}


def floor_of(module: str) -> Optional[str]:
  """The package of the floor `module` belongs to; None outside the floors."""
  matches = [p for p in RANK if module == p or module.startswith(p + '.')]
  return max(matches, key=len) if matches else None


def component_folders() -> Set[str]:
  return {name for name in os.listdir(COMPONENTS_DIR)
          if any(os.path.isfile(os.path.join(COMPONENTS_DIR, name, marker))
                 for marker in ('component.py', 'module.py'))}


def _is_project_module(module: str) -> bool:
  parts = module.split('.')
  if parts[0] != 'fakefaces' or len(parts) < 2 or parts[1] not in PACKAGE_FOLDERS:
    return False
  base = os.path.join(PROJECT_ROOT, *parts[1:])
  return os.path.isfile(base + '.py') or os.path.isfile(os.path.join(base, '__init__.py'))


def imported_modules(path: str) -> Iterator[str]:
  """Every module `path` imports, at any depth; `from pkg import sub` yields `pkg.sub`
  when `sub` is a module of the project, else `pkg`."""
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), filename=path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        candidate = f'{node.module}.{alias.name}'
        yield candidate if _is_project_module(candidate) else node.module


def project_files() -> Iterator[Tuple[str, str]]:
  """(path, module name) of every Python file of the installed package."""
  for folder in PACKAGE_FOLDERS:
    for dirpath, dirnames, filenames in os.walk(os.path.join(PROJECT_ROOT, folder)):
      dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
      for name in sorted(filenames):
        if name.endswith('.py'):
          path = os.path.join(dirpath, name)
          parts = os.path.relpath(path, PROJECT_ROOT)[:-len('.py')].split(os.sep)
          if parts[-1] == '__init__':
            parts = parts[:-1]
          yield path, '.'.join(['fakefaces'] + parts)


def upward_imports() -> Set[Tuple[str, str, str, str]]:
  """(file, its floor, imported module, that module's floor) for every import of a higher floor."""
  names = {package: name for name, package in FLOORS}
  found = set()
  for path, module in project_files():
    own = floor_of(module)
    for imported in imported_modules(path):
      other = floor_of(imported)
      if other is not None and RANK[other] > RANK[own]:
        found.add((os.path.relpath(path, PROJECT_ROOT), names[own], imported, names[other]))
  return found


def sibling_imports() -> Set[Tuple[str, str]]:
  folders = component_folders()
  found = set()
  for path, module in project_files():
    parts = module.split('.')
    if parts[:2] != ['fakefaces', 'components'] or len(parts) < 3 or parts[2] not in folders:
      continue
    for imported in imported_modules(path):
      other = imported.split('.')
      if (other[:2] == ['fakefaces', 'components'] and len(other) > 2 and other[2] in folders
          and other[2] != parts[2]):
        found.add((os.path.relpath(path, PROJECT_ROOT), imported))
  return found


def test_each_floor_is_a_folder():
  # The checks below mean nothing if a floor's package is not where it says.
  for _, package in FLOORS:
    folder = os.path.join(PROJECT_ROOT, *package.split('.')[1:])
    assert os.path.isfile(os.path.join(folder, '__init__.py')), f'{package}: no package at {folder}'
  assert {'data_gate', 'demographic_annotator', 'face_example_gen', 'fairness_gate',
          'model_card', 'serving_canary', 'trainer'} <= component_folders()


def test_components_holds_only_floors_and_components():
  # A new shared module goes into components/shared/, so the folder names keep
  # telling the floors apart.
  allowed = {'__init__.py', 'README.md', 'shared', 'face_preparation', 'image_encoder',
             '__pycache__'}
  loose = sorted(name for name in os.listdir(COMPONENTS_DIR)
                 if name not in allowed | component_folders())
  assert not loose, ('components/ holds neither a floor nor a component (shared modules go in '
                     f'components/shared/): {loose}')


def test_every_module_is_on_a_floor():
  assert all(floor_of(module) for _, module in project_files())


def test_no_module_imports_a_higher_floor():
  upward = sorted(upward_imports())
  assert not upward, 'imports of a higher floor (move what is shared down a floor):\n' + '\n'.join(
      f'  {path} ({own}) imports {module} ({other})' for path, own, module, other in upward)


def test_the_check_sees_an_upward_import(tmp_path):
  # The check itself can fail: a command-line import from the shared floor is caught.
  path = tmp_path / 'probe.py'
  path.write_text('def f():\n  from fakefaces.pipeline.cli import cli\n', encoding='utf-8')
  imported = set(imported_modules(str(path)))
  assert imported == {'fakefaces.pipeline.cli.cli'}
  assert RANK[floor_of('fakefaces.pipeline.cli.cli')] > RANK[floor_of('fakefaces.components.shared')]


def test_no_component_imports_a_sibling():
  found = sorted(sibling_imports())
  assert not found, (
      'components import sibling components (move what they share to components/shared/):\n'
      + '\n'.join(f'  {path} imports {module}' for path, module in found))


def test_serving_and_the_report_reader_load_without_tfx():
  # serving/ reads the gate report and the model card through components/shared/reports.py;
  # neither may pull in TFX (or, for the reader, TensorFlow). A fresh interpreter, because
  # this one has already imported both through conftest.
  code = ('import sys\n'
          'import fakefaces.components.shared.reports\n'
          'assert "tensorflow" not in sys.modules, "components/shared/reports.py imports TensorFlow"\n'
          'import fakefaces.serving.web\n'
          'loaded = sorted(m for m in sys.modules if m == "tfx" or m.startswith("tfx."))\n'
          'assert not loaded, "fakefaces.serving.web imports " + ", ".join(loaded[:5])\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
