"""Gate rule: can processing-matched copies tell "processing differs" from "collection differs"?

The DataGate's one-class-source probe (components/data_gate/shortcut.py,
`single_class_rows`: a source of one class against the other class pooled, on
`jpeg_history_features`) separates collections under one shared treatment
(docs/detection_quality.md, "The processing match on 600 per source"), so its
verdict depends on where a source falls among the other class's collections.
This bench measures candidate rules on the same cached train faces as
bench/processing_match.py (by import: its inputs, cache, treatment and probe
subsamples), without changing the gate:

* original: the gate's probe on the examples as ingestion writes them under a
  treatment (`--treatments`, processing_match's candidates, e.g. q88, none);
* copies: the same probe on processing-matched copies of every example, both
  classes alike: the stored image decoded, reduced to `r` px (box) and back
  (bicubic: a non-integer resample, so no earlier 8x8 grid survives), then one
  JPEG generation at quality `q` (`--copies`, names `r<r>q<q>`). A difference
  the copies erase is processing; one that survives is content (collection).

Cases, each under every treatment: `as_is`; planted processing differences on
one source only, applied to its aligned faces before the treatment (what a
source's own files would bring): `utkface_q60` (UTKFace re-encoded at JPEG
quality 60), `sdfd_down64` (SDFD reduced to 64 px and back, bicubic); and the
within-collection control `k140_reals_alone` (k140's fakes removed, so its
reals are a one-class source whose processing is the same collection's).
Five subsamples (seeds 0-4) as processing_match.py.

  nice -n 15 .venv/bin/python bench/gate_rule.py [--treatments q88,none] [--copies r101q75]

Prints the table and writes bench/results/gate_rule.json.
"""

import argparse
import dataclasses
import io
import json
import os
import re
import sys
import types
from typing import Any, Callable, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import processing_match as pm  # noqa: E402  (its inputs, cache, treatment, probe; sets TF env)
from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.face_preparation import images  # noqa: E402


def _jpeg_generation(quality: int) -> Callable[[Image.Image], Image.Image]:
  def plant(image: Image.Image) -> Image.Image:
    out = Image.open(io.BytesIO(images.encode_jpeg(image.convert('RGB'), quality)))
    out.load()
    return out
  return plant


def _down_and_back(side: int) -> Callable[[Image.Image], Image.Image]:
  def plant(image: Image.Image) -> Image.Image:
    return image.resize((side, side), Image.BICUBIC).resize(image.size, Image.BICUBIC)
  return plant


# Case name -> (source planted on, what is done to its aligned faces, sources' labels dropped).
CASES: Dict[str, Dict[str, Any]] = {
    'as_is': dict(),
    'utkface_q60': dict(source='utkface', plant=_jpeg_generation(60)),
    'sdfd_down64': dict(source='sdfd', plant=_down_and_back(64)),
    'k140_reals_alone': dict(drop=(features.FAKE, 'k140')),
}
# What a good rule should say per case and one-class source, under the q88 treatment. With
# no treatment ('none') the sources' own JPEG histories differ, so only the plants are known.
TRUTH = {('utkface_q60', 'utkface'): 'differs', ('sdfd_down64', 'sdfd'): 'differs',
         ('as_is', 'utkface'): 'matched', ('as_is', 'sdfd'): 'matched',
         ('utkface_q60', 'sdfd'): 'matched', ('sdfd_down64', 'utkface'): 'matched',
         ('k140_reals_alone', 'k140'): 'matched', ('k140_reals_alone', 'sdfd'): 'matched',
         ('k140_reals_alone', 'utkface'): 'matched'}


def expected(treatment_name: str, case: str, source: str) -> str:
  """'matched', 'differs' or '?' (no truth): TRUTH, where the treatment lets it hold."""
  truth = TRUTH.get((case, source), '?')
  return truth if treatment_name != 'none' or truth == 'differs' else '?'


def case_faces(aligned: List[Dict[str, Any]], case: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The cached aligned faces with the case's plant or removal applied."""
  out = []
  for face in aligned:
    record = face['record']
    if case.get('drop') == (record.label, record.source):
      continue
    if case.get('source') == record.source:
      face = dict(face, aligned=case['plant'](face['aligned']))
    out.append(face)
  return out


def copy_params(base, name: str):
  """`r<r>q<q>`: the treatment fields of a copy (resample to r and back, one JPEG at q)."""
  match = re.fullmatch(r'r(\d+)q(\d+)', name)
  if not match:
    raise ValueError(f'--copies: expected r<side>q<quality>, got {name!r}')
  return dataclasses.replace(base, crop_fraction=1.0, native_crop=False,
                             resample_size=int(match.group(1)), shared_jpeg_quality=0,
                             jpeg_quality=int(match.group(2)))


def copies(examples: List[Dict[str, Any]], params) -> List[Dict[str, Any]]:
  """Every stored example re-prepared alike by `params` (pm.treat on the decoded image)."""
  decoded = []
  for example in examples:
    with Image.open(io.BytesIO(example[features.IMAGE])) as image:
      # The InputRecord fields pm.treat reads.
      record = types.SimpleNamespace(label=example[features.LABEL],
                                     source=example[features.SOURCE],
                                     image_id=example[features.IMAGE_ID])
      decoded.append(dict(record=record, aligned=image.convert('RGB'),
                          face_size=example[features.FACE_SIZE]))
  return pm.treat(decoded, params)


# Rules: (original AUCs, copies' AUCs, bound) per subsample -> does processing differ?
RULES: Dict[str, Callable[[float, float, float], bool]] = {
    # The gate as it is: the original probe above its bound.
    'gate': lambda original, copy, bound: original > bound,
    # The rule: a separation the copies erase is processing.
    'copies_erase': lambda original, copy, bound: original > bound >= copy,
    # A drop of more than 0.05 on the copies (processing the copies remove), whatever the level.
    'copies_drop_0.05': lambda original, copy, bound: original - copy > 0.05,
    # Fitted on these rows: far beyond the collections' spread, or above the bound and the
    # copies remove more than 0.1 of it.
    'over_0.9_or_erased_0.1': lambda original, copy, bound: original > 0.9 or (
        original > bound and original - copy > 0.1),
}


def verdicts(row: Dict[str, Any], copy_name: str, bound: float) -> Dict[str, Dict[str, int]]:
  """{rule: {source: subsamples (of the row's seeds) the rule calls "processing differs"}}."""
  return {rule: {source: sum(judge(o, c, bound) for o, c in zip(
      row['original'][source], row['copies'][copy_name][source]))
                 for source in row['original']} for rule, judge in RULES.items()}


def markdown(summary: Dict[str, Any]) -> str:
  """The docs table: one line per treatment, case, source and copy recipe."""
  bound, n = summary['max_probe_auc'], len(summary['seeds'])
  lines = ['| treatment | case | one-class source | should be | AUC originals | copy | AUC copies | '
           + ' | '.join(f'`{r}`' for r in RULES) + ' |', '|' + '---|' * (7 + len(RULES))]
  span = lambda v: f'{min(v):.3f}-{max(v):.3f}'
  for row in summary['results']:
    for copy_name in row['copies']:
      judged = verdicts(row, copy_name, bound)
      for source, original in row['original'].items():
        truth = expected(row['treatment'], row['case'], source)
        cells = ' | '.join(f'{judged[r][source]}/{n}' for r in RULES)
        lines.append(f"| {row['treatment']} | {row['case']} | {source} | {truth} | {span(original)} "
                     f"| {copy_name} | {span(row['copies'][copy_name][source])} | {cells} |")
  return '\n'.join(lines)


def aucs(examples, gate_config, seeds) -> Dict[str, List[float]]:
  rows = {seed: pm.probe(examples, gate_config, seed) for seed in seeds}
  return {source: [rows[seed][source]['auc'] for seed in seeds] for source in sorted(rows[seeds[0]])}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=pm.CONFIG)
  parser.add_argument('--limit-per-source', type=int, default=600)
  parser.add_argument('--cache', default=pm.CACHE)
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--treatments', default='q88,none')
  parser.add_argument('--cases', default=','.join(CASES))
  parser.add_argument('--copies', default='r101q75')
  parser.add_argument('--markdown', action='store_true',
                      help='only print the table of --out (verdict: subsamples called "differs")')
  parser.add_argument('--out', default=os.path.join(ROOT, 'bench', 'results', 'gate_rule.json'))
  args = parser.parse_args(argv)
  if args.markdown:
    with open(args.out) as f:
      print(markdown(json.load(f)))
    return 0
  config, records = pm.train_inputs(args.config, args.limit_per_source)
  aligned = pm.load_aligned(records, args.cache)
  print(f'{len(aligned)} aligned train faces of {len(records)} train inputs cached', flush=True)
  seeds = [int(s) for s in args.seeds.split(',')]
  gate_config = config.validation.source_shortcut
  results = []
  for treatment_name in args.treatments.split(','):
    params = dataclasses.replace(config.ingest.face, **pm.CANDIDATES[treatment_name])
    for case_name in args.cases.split(','):
      examples = pm.treat(case_faces(aligned, CASES[case_name]), params)
      row = {'treatment': treatment_name, 'case': case_name, 'original': aucs(
          examples, gate_config, seeds), 'copies': {}}
      for copy_name in args.copies.split(','):
        row['copies'][copy_name] = aucs(copies(examples, copy_params(config.ingest.face,
                                                                     copy_name)),
                                        gate_config, seeds)
      results.append(row)
      for source, original in row['original'].items():
        cells = '  '.join(
            f"{name} {min(c[source]):.3f}-{max(c[source]):.3f} "
            f"(drop {min(np.subtract(original, c[source])):+.3f}.."
            f"{max(np.subtract(original, c[source])):+.3f})"
            for name, c in row['copies'].items())
        print(f'{treatment_name:>5} {case_name:<17} {source:<8} original '
              f'{min(original):.3f}-{max(original):.3f}  {cells}  '
              f'should be {expected(treatment_name, case_name, source)}', flush=True)
  summary = {'config': os.path.relpath(args.config, ROOT),
             'limit_per_source': args.limit_per_source, 'train_inputs': len(records),
             'aligned_faces': len(aligned), 'seeds': seeds,
             'max_probe_auc': gate_config.max_probe_auc,
             'truth': {f'{c}/{s}': t for (c, s), t in TRUTH.items()},
             'load_average': os.getloadavg(), 'results': results}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(summary, f, indent=2)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
