"""The one reader and writer of the project's JSON reports, for every layer.

Every report this project writes is one JSON file in a folder (`report.json`
unless named otherwise): the components' artifacts (IngestReport,
DataValidationReport, FairnessReport, ServingCanaryReport, Annotations), the
ModelCard's `model_card.json`, and the `report` command's output. The
components that write them, the ones that read another's (FairnessGate,
ModelCardGen), the run summary, the web page and the benches all go through
`write_report` and `read_report`.

This module imports neither TFX nor TensorFlow, so `serving/` can read a gate
report or a model card without them: `import fakefaces.serving.web` takes 0.55 s
and 55 MB, `import tensorflow` alone 5.6 s and 500 MB (measured on the 2-core
development machine with `/usr/bin/time -f "%e s %M KB" python -c "import ..."`).
Local paths use the standard library; remote URIs (`gs://`, `s3://`, where a
pipeline root may live) use `tf.io.gfile`, imported on the first remote path only.
"""

import json
import os
from typing import Any, Callable, Dict, Optional

REPORT_JSON = 'report.json'


def write_report(uri: str, report: Dict[str, Any], name: str = REPORT_JSON, *,
                 allow_nan: bool = True, ensure_ascii: bool = True,
                 default: Optional[Callable[[Any], Any]] = None) -> str:
  """Writes `report` as indented JSON to `<uri>/<name>` (local or remote) and returns that path.

  The folder is created when missing (nothing orders a report after the writers of
  its artifact's other files).

  Args:
    uri: the folder (an artifact's uri, or any folder).
    report: the JSON-encodable report.
    name: the file's name in `uri`.
    allow_nan: `json.dump`'s; False refuses NaN and infinity, which are not JSON (a
      browser's `JSON.parse` rejects them).
    ensure_ascii: `json.dump`'s; False keeps non-ASCII file names readable.
    default: `json.dump`'s; serializes what JSON has no type for.

  Returns:
    The path written, `<uri>/<name>`.

  Raises:
    ValueError: `allow_nan` is False and the report holds NaN or infinity.
    TypeError: the report holds a value JSON cannot encode and `default` is None.
  """
  path = os.path.join(uri, name)
  # Encoded before the file is opened: a report that cannot be written leaves no half file.
  text = json.dumps(report, indent=2, allow_nan=allow_nan, ensure_ascii=ensure_ascii,
                    default=default)
  if _is_remote(uri):
    gfile = _gfile()
    gfile.makedirs(uri)
    with gfile.GFile(path, 'w') as f:
      f.write(text)
  else:
    os.makedirs(uri, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text)
  return path


def read_report(uri: str, name: str = REPORT_JSON, *,
                missing_ok: bool = True) -> Optional[Dict[str, Any]]:
  """The JSON report `<uri>/<name>` (local or remote), or None when there is none.

  Args:
    uri: the artifact's folder (or any folder holding the file).
    name: the file's name in it.
    missing_ok: False raises when the file is absent, for callers that just wrote it
      or cannot go on without it.

  Returns:
    The decoded JSON (a dict for every report this project writes), or None when the
    file is absent and `missing_ok` is True.

  Raises:
    FileNotFoundError: the file is absent and `missing_ok` is False (the message names it).
    ValueError: the file is not valid JSON (json.JSONDecodeError, naming the position).
    OSError: the file exists but cannot be read.
  """
  path = os.path.join(uri, name)
  if _is_remote(path):
    gfile = _gfile()
    exists, opener = gfile.exists(path), gfile.GFile
  else:
    exists, opener = os.path.exists(path), lambda p: open(p, encoding='utf-8')
  if not exists:
    if missing_ok:
      return None
    raise FileNotFoundError(f'no report at {path}')
  with opener(path) as f:
    return json.load(f)


def _is_remote(path: str) -> bool:
  """True for a URI with a scheme (`gs://bucket/...`), which only `tf.io.gfile` can open."""
  return '://' in path


def _gfile():
  # TensorFlow is imported here, not at the top: it costs seconds and hundreds of MB (see the
  # module docstring), and only remote URIs need it (the web page reads local files).
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile
