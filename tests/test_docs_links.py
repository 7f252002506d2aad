"""Every relative link of the Markdown files, and every `FILE.md, "Section"` a comment cites, resolves.

The README and `docs/` are a newcomer's map: a link to a moved file, an anchor of a renamed
heading or a code comment sending the reader to a README section that no longer exists is a
dead end that no other test notices. Anchors follow GitHub's rule (lower case, punctuation
dropped, spaces to hyphens, `-1`, `-2` for repeated headings).
"""

import os
import re
from typing import Dict, Iterator, List, Set

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP_DIRS = {'runs', 'node_modules', '__pycache__', 'results'}
_LINK = re.compile(r'\]\(([^)\s]+)\)')
# `docs/performance.md, "Ingestion on every core"` or `README "Configuration"`: a file and a heading
# (or the start of one) that a comment or docstring sends the reader to.
_SECTION_REF = re.compile(r'([\w./-]*\.md|README)\b[^"\n]{0,12}?"([^"\n]{3,80})"')


def _files(*suffixes: str) -> Iterator[str]:
  """The project's files ending in `suffixes`, relative to the root; no virtualenv, runs or caches."""
  for folder, dirs, names in os.walk(PROJECT_ROOT):
    dirs[:] = [d for d in dirs if not d.startswith('.') and d not in _SKIP_DIRS]
    for name in names:
      if name.endswith(suffixes):
        yield os.path.relpath(os.path.join(folder, name), PROJECT_ROOT)


def _headings(path: str) -> List[str]:
  """The Markdown headings of `path`, outside fenced code blocks."""
  headings, fenced = [], False
  with open(os.path.join(PROJECT_ROOT, path), encoding='utf-8') as f:
    for line in f:
      if line.startswith('```'):
        fenced = not fenced
      elif not fenced and re.match(r'#{1,6}\s', line):
        headings.append(line.lstrip('#').strip())
  return headings


def _anchors(path: str, cache: Dict[str, Set[str]]) -> Set[str]:
  if path not in cache:
    anchors, seen = set(), {}
    for heading in _headings(path):
      slug = re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')
      anchors.add(f'{slug}-{seen[slug]}' if slug in seen else slug)
      seen[slug] = seen.get(slug, 0) + 1
    cache[path] = anchors
  return cache[path]


def test_relative_links_and_anchors_resolve():
  cache: Dict[str, Set[str]] = {}
  dead = []
  for path in _files('.md'):
    with open(os.path.join(PROJECT_ROOT, path), encoding='utf-8') as f:
      text = f.read()
    for match in _LINK.finditer(text):
      link = match.group(1)
      if re.match(r'[a-z]+:', link):  # http:, https:, mailto:
        continue
      target, _, anchor = link.partition('#')
      target = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
      line = text.count('\n', 0, match.start()) + 1
      if not os.path.exists(os.path.join(PROJECT_ROOT, target)):
        dead.append(f'{path}:{line}: {link}: no such file')
      elif anchor and target.endswith('.md') and anchor not in _anchors(target, cache):
        dead.append(f'{path}:{line}: {link}: no heading with that anchor in {target}')
  assert not dead, '\n'.join(dead)


def test_sections_cited_in_code_and_docs_exist():
  markdown = list(_files('.md'))
  dead = []
  for path in _files('.py', '.md', '.yaml'):
    with open(os.path.join(PROJECT_ROOT, path), encoding='utf-8') as f:
      text = f.read()
    for match in _SECTION_REF.finditer(text):
      cited, section = match.group(1), match.group(2).strip(' .').lower()
      if cited == 'README':  # the README beside the file, or the project's
        candidates = {os.path.join(os.path.dirname(path), 'README.md'), 'README.md'}
      else:
        candidates = {m for m in markdown if m == os.path.normpath(cited) or
                      ('/' not in cited and os.path.basename(m) == cited)}
      candidates = [c for c in candidates if os.path.exists(os.path.join(PROJECT_ROOT, c))]
      if not candidates:
        continue  # a file outside the project (../shared, a library's README)
      if not any(section in heading.lower() for c in candidates for heading in _headings(c)):
        line = text.count('\n', 0, match.start()) + 1
        dead.append(f'{path}:{line}: {cited} "{match.group(2)}": no such heading in '
                    f'{sorted(candidates)}')
  assert not dead, '\n'.join(dead)
