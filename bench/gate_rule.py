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
  classes alike, made by the gate's `shortcut.matched_copy`: the stored image
  decoded, reduced to `r` px (box) and back (bicubic: a non-integer resample, so
  no earlier 8x8 grid survives), then one JPEG generation at quality `q`
  (`--copies`, names `r<r>q<q>`; the gate's own: r101q75). A difference the
  copies erase is processing; one that survives is content (collection).

Cases, each under every treatment: `as_is`; planted processing differences on
one source only, applied to its aligned faces before the treatment (what a
source's own files would bring): `utkface_q60` (UTKFace re-encoded at JPEG
quality 60), `sdfd_down64` (SDFD reduced to 64 px and back, bicubic); and the
within-collection control `k140_reals_alone` (k140's fakes removed, so its
reals are a one-class source whose processing is the same collection's).
Five subsamples (seeds 0-4) as processing_match.py.

Rules (columns; `RULES`), each per subsample from the gate's row on the originals
(its AUC, Hanley-McNeil SE and the run's `two_class_references`) and the copies'
AUC: `bound_0.8` (max_probe_auc alone), `bound_0.9`, `ref_min_z` (above the bound
and the lowest reference + reference_z SE of the difference; a reference with no
room below 1: insufficient), `ref_like_z` (references of the source's own class),
`ref_min_0.05` (lowest reference + 0.05), `ref_min_z_or_copies` (or a drop over
max_copies_drop 0.1 on the copies above the bound: shortcut.copies_remove),
`gate` (shortcut.needed_auc alone: ref_min_z at most max_one_class_auc, the gate
without its copies) and `gate_or_copies`, the gate's rule (needed_auc, or
copies_remove; the gate's rows carry their own r101q75 copies too, `copies`). The table ends with each rule's
verdicts right where the truth is known and its smallest margin (the AUC's
distance from the rule's threshold, on the right side).

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
from typing import Any, Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import processing_match as pm  # noqa: E402  (its inputs, cache, treatment, probe; sets TF env)
from fakefaces.components.shared import features  # noqa: E402
from fakefaces.components.face_preparation import images  # noqa: E402
from fakefaces.components.data_gate import shortcut  # noqa: E402
from fakefaces.components.data_gate.config import SourceShortcutConfig  # noqa: E402


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


def copy_params(name: str) -> Tuple[int, int]:
  """`r<r>q<q>`: shortcut.matched_copy's side and quality (resample to r and back, one JPEG
  at q); the gate's own copies are r101q75 (shortcut.COPY_SIDE, COPY_QUALITY)."""
  match = re.fullmatch(r'r(\d+)q(\d+)', name)
  if not match:
    raise ValueError(f'--copies: expected r<side>q<quality>, got {name!r}')
  return int(match.group(1)), int(match.group(2))


def copies(examples: List[Dict[str, Any]], name: str) -> List[Dict[str, Any]]:
  """Every stored example's image replaced by its shortcut.matched_copy (recipe `name`)."""
  side, quality = copy_params(name)
  return [dict(example, **{features.IMAGE: shortcut.matched_copy(example[features.IMAGE], side,
                                                                 quality)})
          for example in examples]


def _verdict(auc: float, needed) -> Tuple[str, Any]:
  """('D' processing differs, 'M' matched or 'I' insufficient: no room), threshold."""
  return ('I' if needed is None else 'D' if auc > needed else 'M'), needed


def _lowest(references):
  return min(references, key=lambda r: r['auc'], default=None)


def _uncapped(row, reference, config, margin=None):
  """The reference rule without the one-class bound: reference + z SE of the difference
  (or + a fixed `margin`); None (insufficient) when the reference leaves no room below 1."""
  if reference is None:
    return config.max_probe_auc
  if reference['auc'] + (config.reference_z * reference['se'] if margin is None else margin) >= 1:
    return None
  if margin is not None:
    return max(config.max_probe_auc, reference['auc'] + margin)
  return shortcut.needed_auc(row['se'], reference, dataclasses.replace(config,
                                                                       max_one_class_auc=1.0))


def _or_copies_drop(judge):
  """`judge`, or the gate's shortcut.copies_remove: above the bound with a drop over
  max_copies_drop (0.1) on the copies (JPEG history)."""
  def judged(row, copy_auc, config):
    verdict, needed = judge(row, copy_auc, config)
    if verdict != 'D' and shortcut.copies_remove(row['auc'], copy_auc, config):
      return 'D', needed
    return verdict, needed
  return judged


def _ref_min_z(row, copy_auc, config):
  return _verdict(row['auc'], _uncapped(row, _lowest(row['references']), config))


def _gate(row, copy_auc, config):
  return _verdict(row['auc'], shortcut.needed_auc(row['se'], _lowest(row['references']), config))


# Rules: (the gate's row on the originals, the copies' AUC, gate config) -> (verdict, threshold).
RULES: Dict[str, Callable[[Dict[str, Any], float, Any], Tuple[str, Any]]] = {
    # The gate without a reference: the original probe above max_probe_auc.
    'bound_0.8': lambda row, copy_auc, config: _verdict(row['auc'], config.max_probe_auc),
    # A one-class bound of its own (docs, "Processing-matched copies as the one-class rule").
    'bound_0.9': lambda row, copy_auc, config: _verdict(row['auc'], 0.9),
    # Above the bound and the lowest reference + z SE of the difference; no room: insufficient.
    'ref_min_z': _ref_min_z,
    # The same with references of the one-class source's own class only.
    'ref_like_z': lambda row, copy_auc, config: _verdict(row['auc'], _uncapped(
        row, _lowest([r for r in row['references'] if r['class'] == row['class']]), config)),
    # The lowest reference + a fixed 0.05.
    'ref_min_0.05': lambda row, copy_auc, config: _verdict(
        row['auc'], _uncapped(row, _lowest(row['references']), config, margin=0.05)),
    # ref_min_z, or a drop over max_copies_drop on the copies above the bound (jpeg_history).
    'ref_min_z_or_copies': _or_copies_drop(_ref_min_z),
    # The gate without its copies (shortcut.needed_auc): ref_min_z, at most max_one_class_auc.
    'gate': _gate,
    # The gate as it judges (shortcut.needed_auc, or shortcut.copies_remove on r101q75).
    'gate_or_copies': _or_copies_drop(_gate),
}


def verdicts(row: Dict[str, Any], copy_name: str, config) -> Dict[str, Dict[str, List]]:
  """{rule: {source: [(verdict, threshold) per subsample]}}."""
  return {rule: {source: [judge(r, c, config) for r, c in zip(
      row['rows'][source], row['copies'][copy_name][source])]
                 for source in row['rows']} for rule, judge in RULES.items()}


def _cell(judged: List[Tuple[str, Any]]) -> str:
  """'D 5/5', 'M 5/5', or a mix ('D 3 M 2', 'I 5/5': no room above the reference)."""
  counts = {v: sum(j[0] == v for j in judged) for v in 'DMI'}
  present = [(v, n) for v, n in counts.items() if n]
  return (f'{present[0][0]} {present[0][1]}/{len(judged)}' if len(present) == 1
          else ' '.join(f'{v} {n}' for v, n in present))


def margins(summary: Dict[str, Any], config) -> Dict[str, Any]:
  """Per rule: every verdict right where the truth is known? and the smallest margin
  (the AUC's distance from the rule's threshold, on the right side; negative: wrong)."""
  out = {}
  for rule in RULES:
    right, total, low = 0, 0, None
    for row in summary['results']:
      for copy_name in row['copies']:
        for source, judged in verdicts(row, copy_name, config)[rule].items():
          truth = expected(row['treatment'], row['case'], source)
          if truth == '?':
            continue
          for (verdict, needed), gate_row in zip(judged, row['rows'][source]):
            total += 1
            right += verdict == truth[0].upper()
            if needed is not None:
              gap = needed - gate_row['auc'] if truth == 'matched' else gate_row['auc'] - needed
              low = gap if low is None else min(low, gap)
    out[rule] = {'right': right, 'of': total, 'smallest_margin': None if low is None
                 else round(low, 4)}
  return out


def markdown(summary: Dict[str, Any]) -> str:
  """The docs table: one line per treatment, case, source and copy recipe."""
  config = _gate_config(summary)
  lines = ['| treatment | case | one-class source | should be | AUC | lowest reference (source: '
           'class) | threshold | '
           + ' | '.join(f'`{r}`' for r in RULES) + ' |', '|' + '---|' * (7 + len(RULES))]
  span = lambda v: f'{min(v):.3f}-{max(v):.3f}' if v else '-'
  for row in summary['results']:
    for copy_name in row['copies']:
      judged = verdicts(row, copy_name, config)
      for source, rows in row['rows'].items():
        truth = expected(row['treatment'], row['case'], source)
        refs = [_lowest(r['references']) for r in rows if r['references']]
        names = sorted({f"{r['source']}: {r['class']}" for r in refs})
        needed = [t for _, t in judged['gate'][source]]
        cells = ' | '.join(_cell(judged[r][source]) for r in RULES)
        lines.append(f"| {row['treatment']} | {row['case']} | {source} | {truth} | "
                     f"{span([r['auc'] for r in rows])} | "
                     f"{span([r['auc'] for r in refs])} ({', '.join(names) or 'none'}) | "
                     f'{span(needed)} | {cells} |')
  lines += ['', '| rule | verdicts right (truth known) | smallest margin |', '|---|---|---|']
  for rule, m in margins(summary, config).items():
    lines.append(f"| `{rule}` | {m['right']}/{m['of']} | {m['smallest_margin']} |")
  return '\n'.join(lines)


def _gate_config(summary: Dict[str, Any]) -> SourceShortcutConfig:
  return SourceShortcutConfig(**summary['gate_config'])


def probe_rows(examples, gate_config, seeds) -> Dict[str, List[Dict[str, Any]]]:
  """{one-class source: the gate's row per subsample} (pm.probe at each seed)."""
  rows = {seed: pm.probe(examples, gate_config, seed) for seed in seeds}
  keep = ('class', 'auc', 'se', 'probed', 'status', 'needed', 'reference', 'references',
          'copies')
  return {source: [{k: rows[seed][source].get(k) for k in keep} for seed in seeds]
          for source in sorted(rows[seeds[0]])}


def aucs(examples, gate_config, seeds) -> Dict[str, List[float]]:
  return {source: [r['auc'] for r in rows]
          for source, rows in probe_rows(examples, gate_config, seeds).items()}


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
      row = {'treatment': treatment_name, 'case': case_name,
             'rows': probe_rows(examples, gate_config, seeds), 'copies': {}}
      row['original'] = {source: [r['auc'] for r in rows] for source, rows in row['rows'].items()}
      for copy_name in args.copies.split(','):
        row['copies'][copy_name] = aucs(copies(examples, copy_name), gate_config, seeds)
      results.append(row)
      for source, original in row['original'].items():
        gate = row['rows'][source]
        print(f"{'':>5} {'':<17} {source:<8} gate {[r['status'] for r in gate]} needed "
              f"{[r.get('needed') for r in gate]} reference "
              f"{[(r['reference'] or {}).get('auc') for r in gate]}", flush=True)
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
             'gate_config': dataclasses.asdict(gate_config),
             'truth': {f'{c}/{s}': t for (c, s), t in TRUTH.items()},
             'load_average': os.getloadavg(), 'results': results}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(summary, f, indent=2)
  print(markdown(summary))
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
