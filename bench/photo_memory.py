"""Peak memory of preparing one photo, and of several at once as the web page does.

For each photo, a fresh child process loads the dlib models, then prepares the
photo with `FacePreparer.prepare` (predict, the web page and ingestion all do):
the peak resident memory (ru_maxrss) above the process after loading is the cost
of one upload. `--parallel N` then prepares N copies at once from N threads of
one process, each keeping its result until all are done (as the page's request
threads do while the faces are scored): `page` through the web page's own
preparation thread (`serving/web.py` PhotoChecker), `lock` each in its own thread
behind one lock (what a caller that shares only a lock would pay).

Photos: `--photos PATH...`, or by default from ../shared/data: the field case
large_jpeg_memory (a 7800x7800 JPEG of 960 KB with one FairFace face, made by its
script) and a 12 Mpx phone-sized photo (bench/photo.py's `large_photo`).
Results go under `--label` in bench/results/photo_memory.json. `--before ROOT`
runs the children on another checkout's package (a folder holding `fakefaces/`),
e.g. main's, for a before/after table from one script.

    .venv/bin/python bench/photo_memory.py --data ../shared/data --parallel 3
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results', 'photo_memory.json')

CHILD = r'''
import json, resource, sys, threading
from fakefaces.components.face_preparation import faces
from fakefaces.serving import web
preparer = faces.FacePreparer(faces.FacePreparation())
preparer.aligner  # loads the dlib models
path, parallel, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, 'rb').read()
checker = web.PhotoChecker(web.WebOptions(server='127.0.0.1:1'))  # prepares only, no server
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lock = threading.Lock()
kept = []
def work():
  if mode == 'lock':
    with lock:
      photo = preparer.prepare(data, True, 0)
  else:
    photo = checker._run_prepare(preparer.prepare, data, True, 0)
  kept.append(photo)
threads = [threading.Thread(target=work) for _ in range(parallel)]
for t in threads: t.start()
for t in threads: t.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({'baseline_mb': base / 1024, 'peak_mb': peak / 1024,
                  'added_mb': (peak - base) / 1024, 'faces': [len(p.faces) for p in kept]}))
'''


def child_env(package_root: str = '') -> dict:
  """This environment, `package_root` (a folder holding `fakefaces/`) first on the Python path."""
  env = dict(os.environ)
  if package_root:
    env['PYTHONPATH'] = os.pathsep.join([package_root] + [p for p in [env.get('PYTHONPATH')] if p])
  return env


def store(out: str, label: str, value) -> None:
  """Writes `value` under `label` of the JSON file `out`, keeping the other labels."""
  results = {}
  if os.path.exists(out):
    with open(out, encoding='utf-8') as f:
      results = json.load(f)
  results[label] = value
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w', encoding='utf-8') as f:
    json.dump(results, f, indent=2)
  print(f'wrote {out} [{label}]')


def measure(path: str, parallel: int, mode: str, package_root: str = '') -> dict:
  env = child_env(package_root)
  out = subprocess.run([sys.executable, '-c', CHILD, path, str(parallel), mode],
                       check=True, capture_output=True, text=True, timeout=1800, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def default_photos(data: str, folder: str):
  """The field case's 61 Mpx JPEG and a 12 Mpx photo, both from FairFace val/1000.jpg."""
  source = os.path.join(data, 'fairface', 'val', '1000.jpg')
  big = os.path.join(folder, 'jpeg_7800x7800.jpg')
  script = os.path.join(data, '..', 'field_cases', 'large_jpeg_memory', 'make_61mpx.py')
  subprocess.run([sys.executable, script, source, big], check=True, timeout=300)
  sys.path.insert(0, os.path.join(ROOT, 'bench'))
  import photo  # pylint: disable=import-outside-toplevel,import-error
  phone = os.path.join(folder, 'jpeg_4032x3024.jpg')
  with open(source, 'rb') as f, open(phone, 'wb') as out:
    out.write(photo.large_photo(f.read()))
  return [big, phone]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join('..', 'shared', 'data'))
  parser.add_argument('--photos', nargs='*', default=None)
  parser.add_argument('--parallel', type=int, default=3)
  parser.add_argument('--before', default='',
                      help='folder holding another checkout as fakefaces/ (e.g. main) to measure')
  parser.add_argument('--label', default='now')
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    paths = args.photos or default_photos(args.data, folder)
    rows = []
    print(f'{"photo":28} {"KB":>6} {"uploads":>8} {"mode":>6} {"added MB":>9} {"peak MB":>8} faces')
    for path in paths:
      runs = [(1, 'page'), (args.parallel, 'page'), (args.parallel, 'lock')]
      for parallel, mode in runs:
        result = measure(path, parallel, mode, args.before)
        row = {'photo': os.path.basename(path), 'bytes': os.path.getsize(path),
               'parallel': parallel, 'mode': mode, **result}
        rows.append(row)
        print(f'{row["photo"]:28} {row["bytes"] // 1024:6} {parallel:8} {mode:>6} '
              f'{row["added_mb"]:9.0f} {row["peak_mb"]:8.0f} {row["faces"]}', flush=True)
  store(args.out, args.label, rows)
  return 0


if __name__ == '__main__':
  sys.exit(main())
