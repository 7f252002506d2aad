"""Dependencies point down: no component imports a sibling component, none imports `pipeline/`.

A component folder is one that holds a TFX component (`component.py`) or the
Trainer's module (`module.py`, the `run_fn` the stock Trainer runs). What every
layer shares (contracts, the config base, libraries without a component) sits
beside them under `components/` and may be imported by any of them.

KNOWN_SIBLING_IMPORTS lists the sibling imports tolerated for now; it is empty,
and may only shrink: a new sibling import fails, and so does an entry that no
longer exists (delete it, so it cannot come back unnoticed). Imports inside
functions count too: they hide the graph, they do not leave it.
"""

import ast
import os
import subprocess
import sys
from typing import Iterator, Set, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS_DIR = os.path.join(PROJECT_ROOT, 'components')
PACKAGE = 'fakefaces.components'

# (importing file, imported module). Empty: every shared contract sits below the components.
KNOWN_SIBLING_IMPORTS: Set[Tuple[str, str]] = set()


def component_folders() -> Set[str]:
  return {name for name in os.listdir(COMPONENTS_DIR)
          if any(os.path.isfile(os.path.join(COMPONENTS_DIR, name, marker))
                 for marker in ('component.py', 'module.py'))}


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


def _is_project_module(module: str) -> bool:
  parts = module.split('.')
  if parts[:2] != ['fakefaces', 'components']:
    return False
  base = os.path.join(COMPONENTS_DIR, *parts[2:])
  return os.path.isfile(base + '.py') or os.path.isfile(os.path.join(base, '__init__.py'))


def python_files(folder: str) -> Iterator[str]:
  for dirpath, _, filenames in sorted(os.walk(folder)):
    for name in sorted(filenames):
      if name.endswith('.py'):
        yield os.path.join(dirpath, name)


def component_imports() -> Iterator[Tuple[str, str, str]]:
  """(importing file relative to the root, its component, imported module) for every import."""
  for component in sorted(component_folders()):
    for path in python_files(os.path.join(COMPONENTS_DIR, component)):
      for module in imported_modules(path):
        yield os.path.relpath(path, PROJECT_ROOT), component, module


def sibling_imports() -> Set[Tuple[str, str]]:
  folders = component_folders()
  found = set()
  for path, component, module in component_imports():
    parts = module.split('.')
    if (parts[:2] == ['fakefaces', 'components'] and len(parts) > 2 and parts[2] in folders
        and parts[2] != component):
      found.add((path, module))
  return found


def test_the_component_folders_are_found():
  # The check below means nothing if the markers stop matching the components.
  assert {'data_gate', 'demographic_annotator', 'face_example_gen', 'fairness_gate',
          'model_card', 'serving_canary', 'trainer'} <= component_folders()


def test_no_new_sibling_imports():
  new = sorted(sibling_imports() - KNOWN_SIBLING_IMPORTS)
  assert not new, (
      'components import sibling components (move what they share below the components, '
      'e.g. into a contract module under components/):\n'
      + '\n'.join(f'  {path} imports {module}' for path, module in new))


def test_the_allowlist_only_shrinks():
  gone = sorted(KNOWN_SIBLING_IMPORTS - sibling_imports())
  assert not gone, ('these sibling imports are gone; delete them from KNOWN_SIBLING_IMPORTS:\n'
                    + '\n'.join(f'  {path} imports {module}' for path, module in gone))


def test_the_shared_floor_imports_no_component():
  # What sits beside the components (contracts, the config base, face_preparation/) is
  # below all of them: importing one would make every other component depend on it.
  folders = component_folders()
  upward = sorted(
      (os.path.relpath(path, PROJECT_ROOT), module)
      for path in python_files(COMPONENTS_DIR)
      if os.path.relpath(path, COMPONENTS_DIR).split(os.sep)[0] not in folders
      for module in imported_modules(path)
      if module.split('.')[:2] == ['fakefaces', 'components'] and len(module.split('.')) > 2
      and module.split('.')[2] in folders)
  assert not upward, 'shared modules under components/ import a component:\n' + '\n'.join(
      f'  {path} imports {module}' for path, module in upward)


def test_components_never_import_pipeline():
  upward = sorted({(os.path.relpath(path, PROJECT_ROOT), module)
                   for path in python_files(COMPONENTS_DIR) for module in imported_modules(path)
                   if module == 'fakefaces.pipeline' or module.startswith('fakefaces.pipeline.')})
  assert not upward, 'components/ imports pipeline/:\n' + '\n'.join(
      f'  {path} imports {module}' for path, module in upward)


def test_serving_and_the_report_reader_load_without_tfx():
  # serving/ reads the gate report and the model card through components/reports.py; neither
  # may pull in TFX (or, for the reader, TensorFlow). A fresh interpreter, because this one has
  # already imported both through conftest.
  code = ('import sys\n'
          'import fakefaces.components.reports\n'
          'assert "tensorflow" not in sys.modules, "components/reports.py imports TensorFlow"\n'
          'import fakefaces.serving.web\n'
          'loaded = sorted(m for m in sys.modules if m == "tfx" or m.startswith("tfx."))\n'
          'assert not loaded, "fakefaces.serving.web imports " + ", ".join(loaded[:5])\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
