"""What the Evaluator's slices by labelled_attributes cost: TFMA time with and without them.

eval_config.SLICES adds each demographic slice (gender, race, age, race x
gender) crossed with `labelled_attributes` so the FairnessGate can judge on
labelled faces only. This runs `tfma.run_model_analysis` with the gate's
EvalConfig on demo faces carrying the feature (reals 'age+gender+race', a
quarter of the fakes 'gender+race', the rest 'none', as the shared data's
FairFace/UTKFace reals, SDFD and GAN fakes), once with every slice and once
without the labelled ones, alternating, and prints seconds and slice counts.
The demo model (pipeline/fixtures/demo_models.py) is cheap, so the time is
TFMA's own (slicing, metrics, writing), not the model's: on a real run the
CLIP tower dominates the Evaluator (410 s on 918 faces, docs/detection_quality.md).

    nice -n 10 .venv/bin/python bench/labelled_slices.py --faces 918 --repeats 2 \
        --out bench/results/labelled_slices.json
"""

import argparse
import json
import os
import sys
import tempfile
import time

import tensorflow_model_analysis as tfma

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
from test_fairness_labelled import _labelled_demo_examples  # pylint: disable=g-import-not-at-top,wrong-import-position

from fakefaces.components.fairness_gate import eval_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.components.shared import thresholds as thresholds_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.pipeline.fixtures import demo_models  # pylint: disable=g-import-not-at-top,wrong-import-position


def run(model_dir: str, data: str, out: str, labelled: bool) -> dict:
  """Seconds of one run_model_analysis and the slices it wrote."""
  config = eval_config.build_eval_config(thresholds_lib.ThresholdsConfig(), 0.5)
  if not labelled:
    del config.slicing_specs[:]
    config.slicing_specs.extend(tfma.SlicingSpec(feature_keys=list(keys))
                                for keys in eval_config.SLICES
                                if keys not in eval_config.LABELLED_SLICES)
  start = time.perf_counter()
  tfma.run_model_analysis(
      eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
      eval_config=config, data_location=data, file_format='tfrecords', output_path=out)
  seconds = time.perf_counter() - start
  return {'seconds': round(seconds, 2), 'slicing_specs': len(config.slicing_specs),
          'slices': sum(1 for _ in tfma.load_metrics(out))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--faces', type=int, default=918, help='demo faces (the s12 test split: 918)')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--out', help='JSON to write')
  args = parser.parse_args(argv)
  root = tempfile.mkdtemp(prefix='labelled_slices_')
  data = os.path.join(root, 'test.tfrecord.gz')
  _labelled_demo_examples(data, args.faces)
  model_dir = demo_models.nyquist_model(os.path.join(root, 'model', 'Format-Serving'))
  rows = []
  for repeat in range(args.repeats):
    for labelled in (False, True):
      row = run(model_dir, data, os.path.join(root, f'eval_{repeat}_{labelled}'), labelled)
      rows.append(dict(row, labelled_slices=labelled, repeat=repeat))
      print(f"labelled slices {str(labelled):5s} repeat {repeat}: {row['seconds']:7.2f} s, "
            f"{row['slicing_specs']} slicing specs, {row['slices']} slices", flush=True)
  load = os.getloadavg()
  print(f'load average at the end: {load[0]:.2f} (1 min), {os.cpu_count()} CPUs')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'faces': args.faces, 'rows': rows, 'load_1min': load[0],
                 'cpus': os.cpu_count()}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
