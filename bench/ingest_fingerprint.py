"""Cost of the ingestion fingerprint (`pipeline.input_fingerprint`), computed before every run.

It lists every source (reading a manifest or FairFace's label CSVs, walking the
folder sources) and stats each listed file, so its cost grows with the number
of inputs; it must stay well under a second per 1,000 files. Rows:

  files          inputs listed (what ingestion reads) and listing files
  seconds        median of --repeats calls (the first call warms the file cache)
  ms_per_1000    seconds / files * 1e6

    .venv/bin/python bench/ingest_fingerprint.py                       # shared-data config
    .venv/bin/python bench/ingest_fingerprint.py --config pipeline/configs/demo.yaml

Writes bench/results/ingest_fingerprint.json.
"""

import argparse
import json
import os
import statistics
import sys
import time


import fakefaces.pipeline  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                       'ingest_fingerprint.json')


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='pipeline/configs/shared_data.yaml')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()
  # pylint: disable=g-import-not-at-top
  from fakefaces.components.face_example_gen import sources
  from fakefaces.pipeline import config as config_lib
  from fakefaces.pipeline.pipeline import input_fingerprint
  # pylint: enable=g-import-not-at-top
  config = config_lib.load_config(args.config)
  files = len(sources.list_inputs(config.ingest)) + sum(
      len(sources.listing_files(s)) for s in config.ingest.sources)
  input_fingerprint(config)  # warm the file cache: a run's second call is the common case
  seconds = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    input_fingerprint(config)
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  row = {'config': args.config, 'files': files, 'seconds': round(median, 4),
         'ms_per_1000': round(median / max(files, 1) * 1e6, 1),
         'load_average': round(os.getloadavg()[0], 2)}
  print(f"{'config':<40}{'files':>8}{'seconds':>10}{'ms/1000':>10}{'load':>7}")
  print(f"{row['config']:<40}{row['files']:>8}{row['seconds']:>10.3f}{row['ms_per_1000']:>10.1f}"
        f"{row['load_average']:>7.2f}")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'protocol': f'median of {args.repeats} calls after one warm-up, one process',
               'rows': [row]}, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
