"""Source shortcut: can a trivial probe tell apart the sources within one class?

A detector learns whatever separates its labels most cheaply. When the real
photos come from one collection and the fakes from another, or when one class
holds a source the other lacks, "which collection does this look like" is such
a separator: FairFace contributes only reals, and after ingestion a linear
probe tells aligned FairFace reals from aligned FFHQ reals almost perfectly; a
CNN trained on such data never called a FairFace real fake and called most
FFHQ reals fake, so its fairness on FairFace was an artefact of the shortcut
(measured in docs/training_and_quality.md, "The source shortcut").

This module measures that before training, on the split the Trainer learns
from:

* sources of one class that the other class lacks (the model can learn
  "source S -> this label"; disjoint sources are the extreme case);
* for every pair of sources within a class, the cross-validated AUC of a
  logistic-regression probe predicting the source from tiny pixels, from a
  radial frequency profile, and from both (the best of the three counts):
  framing and padding show in the pixels, processing history (resizes, JPEG
  generations) in the spectrum.
  Above `max_probe_auc` the sources are told apart by something a CNN finds
  too, and any label imbalance between them becomes a shortcut;
* beside the probe, the class balance per source (its share of fakes). Two
  separable sources whose fake shares match within `max_fake_share_gap`
  carry no label information: "looks like S" predicts nothing (both GAN
  sources, 128 px StyleGAN2 vs 256 px StyleGAN, are told apart at AUC ~1 yet
  each is half fakes), so such a pair is reported as separable but balanced,
  not a shortcut. The Trainer's `balance_sources` sampling keeps the shares
  equal in every batch too.

A source that holds one class only (SDFD: fakes; FairFace: reals) is told
apart from the other class by design: that separation is the detection task,
not a shortcut. What must not differ between the classes is processing. For
each such source the check fits the same probe, the source against the other
class's examples (all sources pooled), on processing features only
(`processing_features`): the size the face had in its source (`face_size`)
and the JPEG history left in the stored image (blockiness on the 8x8 grid,
and the error of re-encoding at a ladder of qualities, whose shape shows an
earlier compression: Farid's "JPEG ghosts").

These features read each collection's own history too (its files' JPEG
quality, the padding and sharpness its alignment leaves), not only processing
linked to the class: on the shared data a collection whose two classes share
processing exactly (k140's reals against the other fakes) scores 0.85-0.86.
So the run measures what being another collection costs, as a reference
(`two_class_references`): every source holding both classes, its examples of
one class against the other class's other sources pooled, both directions, the
source being judged left out. The one-class source's processing differs
(`processing_differs`, a finding naming `size` and/or `jpeg_history`) when its
AUC is above the lowest reference by more than `reference_z` standard errors
of the difference (Hanley-McNeil), that threshold kept within
[`max_probe_auc`, `max_one_class_auc`] (0.8, 0.9); otherwise
`processing_matched` (no finding). With no two-class source in the split, the
threshold is `max_probe_auc`.

A collection's own history can hide a JPEG history that differs under that
threshold (SDFD with no shared JPEG generation against the gan_faces reals:
0.87-0.90). So a row above `max_probe_auc` is probed again on
processing-matched copies of the same samples of both sides, same folds
(`matched_copy`: reduced to 101 px and back, one fresh JPEG generation at 75):
processing differs, naming `jpeg_history`, when the copies lower its AUC by
more than `max_copies_drop` (0.1; SDFD untreated: to 0.63-0.68). The bench of
the rule and its alternatives: bench/gate_rule.py, docs/detection_quality.md
("A reference the run measures"). Each row's `verdict` names its AUC, the
reference, the copies' AUC and the AUC above which it would differ. A size of
0 (align 'none' records none) is not a size: the size feature is left out
then, and the row says so.

Too few examples to estimate a pair's AUC is reported as insufficient
evidence, which is never a pass.
"""

import hashlib
import heapq
import io
import itertools
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from fakefaces.components.shared import features
from fakefaces.components.face_preparation import images
from fakefaces.components.data_gate.config import SourceShortcutConfig

PROBE_PIXELS = 32  # side of the grayscale thumbnail the probe sees
FFT_BINS = 16  # radial bins of the log power spectrum, 0 .. Nyquist
ON_SHORTCUT = ('stop', 'warn')
OK, SHORTCUT, INSUFFICIENT = 'ok', 'shortcut', 'insufficient_evidence'
SEPARABLE_BALANCED = 'separable_balanced'  # told apart, but the label shares match
# A one-class source against the other class, on processing features.
PROCESSING_MATCHED, PROCESSING_DIFFERS = 'processing_matched', 'processing_differs'
ONE_CLASS_SOURCE = 'one_class_source'  # a pair with such a source: judged by its processing
GHOST_QUALITIES = (50, 70, 85)  # re-encoding ladder of the JPEG-ghost features
BLOCK = 8  # JPEG's block side
# Processing-matched copies (`matched_copy`), r101q75 in bench/gate_rule.py. 101 px: a
# non-integer fraction of every stored side, so the bicubic return keeps no earlier 8x8 grid,
# and the mildest of the recipes measured (r101q75, r90q90, r64q75): r64q75 also drops the
# within-collection control (k140's reals alone) from 0.86 to 0.57-0.61, r101q75 by
# 0.04-0.05 (docs/detection_quality.md, "Processing-matched copies as the one-class rule").
COPY_SIDE = 101
COPY_QUALITY = 75  # one fresh JPEG generation, at the gan_faces thumbnails' own quality


def check_config(config: SourceShortcutConfig, where: str = 'validation.source_shortcut'):
  """Raises ConfigError naming the field for values the check cannot honour."""
  from fakefaces.components.shared.config_base import ConfigError  # pylint: disable=g-import-not-at-top
  if config.on_shortcut not in ON_SHORTCUT:
    raise ConfigError(f'{where}.on_shortcut: expected one of {ON_SHORTCUT}, '
                      f'got {config.on_shortcut!r}')
  if not 0.5 <= config.max_probe_auc <= 1.0:
    raise ConfigError(f'{where}.max_probe_auc: must be in [0.5, 1], got {config.max_probe_auc}')
  if config.reference_z < 0:
    raise ConfigError(f'{where}.reference_z: must be >= 0, got {config.reference_z}')
  if not config.max_probe_auc <= config.max_one_class_auc <= 1.0:
    raise ConfigError(f'{where}.max_one_class_auc: must be in [max_probe_auc '
                      f'({config.max_probe_auc}), 1], got {config.max_one_class_auc}')
  if not 0.0 <= config.max_fake_share_gap <= 1.0:
    raise ConfigError(f'{where}.max_fake_share_gap: must be in [0, 1], got '
                      f'{config.max_fake_share_gap}')
  if config.folds < 2:
    raise ConfigError(f'{where}.folds: must be >= 2, got {config.folds}')
  if config.min_examples_per_source < config.folds:
    raise ConfigError(f'{where}.min_examples_per_source: must be >= folds ({config.folds}), '
                      f'got {config.min_examples_per_source}')
  if not 0.0 <= config.max_copies_drop <= 1.0:
    raise ConfigError(f'{where}.max_copies_drop: must be in [0, 1] (1: no copies), got '
                      f'{config.max_copies_drop}')
  if config.max_examples_per_source < config.min_examples_per_source:
    raise ConfigError(f'{where}.max_examples_per_source: must be >= min_examples_per_source '
                      f'({config.min_examples_per_source}), got {config.max_examples_per_source}')


def probe_features(image_bytes: bytes) -> np.ndarray:
  """Tiny grayscale pixels plus the radial log power spectrum of one encoded image.

  The pixels carry framing and padding (what the crop shows), the spectrum
  carries processing history (resampling blur, JPEG block energy).
  """
  gray = Image.open(io.BytesIO(image_bytes)).convert('L')
  tiny = np.asarray(gray.resize((PROBE_PIXELS, PROBE_PIXELS), Image.BILINEAR),
                    dtype=np.float32) / 255.0
  pixels = np.asarray(gray, dtype=np.float32) / 255.0
  power = np.abs(np.fft.fftshift(np.fft.fft2(pixels - pixels.mean()))) ** 2
  height, width = power.shape
  ys, xs = np.ogrid[:height, :width]
  # Radius as a fraction of Nyquist, so images of any size share the bins.
  radius = np.hypot((ys - height // 2) / (height / 2), (xs - width // 2) / (width / 2))
  bins = np.minimum((radius * FFT_BINS).astype(int), FFT_BINS)  # corners beyond Nyquist: extra bin
  totals = np.bincount(bins.ravel(), weights=power.ravel(), minlength=FFT_BINS + 1)
  counts = np.bincount(bins.ravel(), minlength=FFT_BINS + 1)
  profile = np.log1p(totals[:FFT_BINS] / np.maximum(counts[:FFT_BINS], 1))
  return np.concatenate([tiny.ravel(), profile.astype(np.float32)])


# The probe's feature sets (columns of probe_features). Each gets its own probe and
# the best AUC counts: with ~100 examples per fold, the 1,024 pixel columns drown a
# 16-bin spectrum that alone separates two JPEG histories perfectly (planted test:
# spectrum 1.00, pixels 0.49, both together 0.76).
FEATURE_SETS = {'pixels': slice(0, PROBE_PIXELS ** 2), 'spectrum': slice(PROBE_PIXELS ** 2, None),
                'both': slice(None)}


def probe_aucs(features_a: np.ndarray, features_b: np.ndarray, folds: int,
               seed: int) -> Dict[str, float]:
  """Cross-validated AUC of a probe per feature set ('pixels', 'spectrum', 'both')."""
  return {name: round(probe_auc(features_a[:, columns], features_b[:, columns], folds, seed), 4)
          for name, columns in FEATURE_SETS.items()}


def probe_auc(features_a: np.ndarray, features_b: np.ndarray, folds: int, seed: int) -> float:
  """Cross-validated ROC AUC of a logistic-regression probe telling set a from set b."""
  from sklearn import linear_model, metrics, model_selection, pipeline, preprocessing  # pylint: disable=g-import-not-at-top
  x = np.concatenate([features_a, features_b])
  y = np.concatenate([np.zeros(len(features_a)), np.ones(len(features_b))])
  probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 linear_model.LogisticRegression(C=0.1, max_iter=2000))
  splitter = model_selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
  scores = model_selection.cross_val_predict(probe, x, y, cv=splitter,
                                             method='predict_proba')[:, 1]
  return float(metrics.roc_auc_score(y, scores))


def _reencode_error(gray: Image.Image, quality: int) -> float:
  again = np.asarray(Image.open(io.BytesIO(images.encode_jpeg(gray, quality))), dtype=np.float32)
  return float(np.mean((np.asarray(gray, dtype=np.float32) - again) ** 2))


def jpeg_history_features(image_bytes: bytes) -> np.ndarray:
  """[4] what an earlier JPEG compression left in one encoded image.

  Blockiness: log ratio of the mean absolute step across 8x8 block borders to
  the step elsewhere, horizontally and vertically (a grid a generator or a
  camera does not draw). Ghosts: the log mean squared error of re-encoding at
  each of GHOST_QUALITIES, reduced to the two slopes between neighbouring
  qualities (an image once compressed at q changes little when
  re-encoded near q).

  Raises:
    OSError, ValueError: the bytes are not a decodable image.
  """
  gray = Image.open(io.BytesIO(image_bytes)).convert('L')
  x = np.asarray(gray, dtype=np.float32)
  out = []
  for steps in (np.abs(np.diff(x, axis=1)), np.abs(np.diff(x, axis=0)).T):
    border = (np.arange(steps.shape[1]) % BLOCK) == BLOCK - 1
    out.append(np.log((steps[:, border].mean() + 1e-3) / (steps[:, ~border].mean() + 1e-3))
               if border.any() and (~border).any() else 0.0)
  ghosts = np.log([_reencode_error(gray, q) + 1e-3 for q in GHOST_QUALITIES])
  out += list(np.diff(ghosts))  # at 95 a third slope would be mostly the last encoding's own
  return np.asarray(out, dtype=np.float32)


def matched_copy(image_bytes: bytes, side: int = COPY_SIDE,
                 quality: int = COPY_QUALITY) -> bytes:
  """One encoded image re-prepared as every copy is: reduced to `side` px (box), back to its
  size (bicubic), one JPEG generation at `quality` (images.encode_jpeg).

  A difference between two sets of images that their copies no longer show was processing
  (the earlier JPEG history); one that survives is content or lost detail.

  Raises:
    OSError, ValueError: the bytes are not a decodable image.
  """
  with Image.open(io.BytesIO(image_bytes)) as stored:
    image = stored.convert('RGB')
  copy = image.resize((side, side), Image.BOX).resize(image.size, Image.BICUBIC)
  return images.encode_jpeg(copy, quality)


def processing_features(image_bytes: bytes, face_size: int) -> np.ndarray:
  """[5] log2(1 + the face's side in its source pixels; 0 unknown), then jpeg_history_features."""
  return np.concatenate([[np.log2(1.0 + max(face_size, 0))],
                         jpeg_history_features(image_bytes)]).astype(np.float32)


# Columns of processing_features per kind of processing; each gets its own probe.
PROCESSING_SETS = {'size': slice(0, 1), 'jpeg_history': slice(1, None), 'all': slice(None)}


def _rank(image_id: str, seed: int) -> int:
  return int(hashlib.sha256(f'{seed}/{image_id}'.encode('utf-8')).hexdigest()[:12], 16)


def _text(value) -> str:
  return value.decode('utf-8', 'replace') if isinstance(value, bytes) else (value or '')


Sample = Tuple[bytes, int]  # (encoded image, face_size: its side in source pixels, 0 unknown)


def sample_by_class_and_source(records: Iterable[Mapping[str, object]], per_source: int,
                               seed: int) -> Tuple[Dict[Tuple[int, str], int],
                                                   Dict[Tuple[int, str], List[Sample]]]:
  """Counts of every (label, source) and a deterministic sample of up to `per_source` each.

  Streams the records, keeping only the sample in memory (a bounded heap per
  stratum, ordered by a hash of the image id), so the cost does not grow with
  the split.
  """
  counts: Dict[Tuple[int, str], int] = {}
  heaps: Dict[Tuple[int, str], List[Tuple[int, int, Sample]]] = {}
  for index, record in enumerate(records):
    label, image = record.get(features.LABEL), record.get(features.IMAGE)
    if label is None or image is None:
      continue  # the schema check reports missing labels and images
    source = _text(record.get(features.SOURCE)) or '(no source)'
    image_id = _text(record.get(features.IMAGE_ID)) or str(index)
    key = (int(label), source)
    counts[key] = counts.get(key, 0) + 1
    heap = heaps.setdefault(key, [])
    # Max-heap of ranks: keep the lowest.
    item = (-_rank(image_id, seed), index, (image, int(record.get(features.FACE_SIZE) or 0)))
    if len(heap) < per_source:
      heapq.heappush(heap, item)
    elif item > heap[0]:
      heapq.heapreplace(heap, item)
  samples = {key: [image for _, _, image in sorted(heap, key=lambda t: t[1])]
             for key, heap in heaps.items()}
  return counts, samples


def _featurize(samples: Sequence[Sample],
               featurizer: Callable[[bytes, int], np.ndarray] = lambda image, _: probe_features(
                   image), width: int = PROBE_PIXELS ** 2 + FFT_BINS) -> np.ndarray:
  """[readable samples, width]: `featurizer` of each; undecodable images are left out (the
  schema check reports them)."""
  rows = []
  for image, face_size in samples:
    try:
      rows.append(featurizer(image, face_size))
    except (OSError, ValueError):
      pass
  return np.stack(rows) if rows else np.zeros((0, width), np.float32)


def _interleave(groups: Sequence[Sequence], limit: int) -> List:
  """Up to `limit` items taking from each group in turn (every source of a class shares)."""
  out: List = []
  for i in range(max((len(g) for g in groups), default=0)):
    out += [g[i] for g in groups if i < len(g)]
  return out[:limit]


def hanley_mcneil_se(auc: float, n_a: int, n_b: int) -> float:
  """Standard error of a ROC AUC from the two sample sizes (Hanley & McNeil, Radiology 1982).

  Raises:
    ValueError: a sample size under 1.
  """
  if min(n_a, n_b) < 1:
    raise ValueError(f'hanley_mcneil_se: sample sizes must be >= 1, got {n_a} and {n_b}')
  q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
  variance = (auc * (1.0 - auc) + (n_a - 1) * (q1 - auc * auc)
              + (n_b - 1) * (q2 - auc * auc)) / (n_a * n_b)
  return float(np.sqrt(max(variance, 0.0)))


def processing_probe(x_own: np.ndarray, x_other: np.ndarray,
                     config: SourceShortcutConfig) -> Dict[str, object]:
  """The probe on processing features ([n, 5] each), own against other: a row's measures.

  Returns {'probed': [own, other] rows, 'auc': best of the feature sets (None under
  `min_examples_per_source` a side), 'auc_by_features', 'se' (Hanley-McNeil of 'auc'),
  and 'size' where the source size is left out (a face_size of 0)}.
  """
  row: Dict[str, object] = {'probed': [len(x_own), len(x_other)], 'auc': None}
  if min(len(x_own), len(x_other)) < config.min_examples_per_source:
    return row
  sets = dict(PROCESSING_SETS)
  if not (x_own[:, 0].all() and x_other[:, 0].all()):
    row['size'] = ('not compared: some faces have no recorded source size (face_size 0, '
                   "align 'none')")
    sets = {'jpeg_history': PROCESSING_SETS['jpeg_history']}
  row['auc_by_features'] = {name: round(probe_auc(x_own[:, columns], x_other[:, columns],
                                                  config.folds, config.seed), 4)
                            for name, columns in sets.items()}
  row['auc'] = max(row['auc_by_features'].values())
  row['se'] = round(hanley_mcneil_se(row['auc'], len(x_own), len(x_other)), 4)
  return row


def _class_label(label_name: str) -> int:
  return next(label for label, name in features.LABEL_NAMES.items() if name == label_name)


Processed = Mapping[Tuple[int, str], np.ndarray]  # (label, source) -> processing_features rows


def _pooled(by_class: Mapping[str, Mapping[str, int]], processed: Processed, label_name: str,
            config: SourceShortcutConfig, without: Sequence[str] = ()) -> np.ndarray:
  """The class's sources but `without`, their rows taken in turn (every source shares),
  up to `max_examples_per_source` in all."""
  label = _class_label(label_name)
  groups = [processed[(label, s)] for s in sorted(by_class.get(label_name, {}))
            if s not in without]
  rows = _interleave(groups, config.max_examples_per_source)
  return np.stack(rows) if rows else np.zeros((0, 5), np.float32)


def two_class_references(by_class: Mapping[str, Mapping[str, int]], processed: Processed,
                         config: SourceShortcutConfig, judged: str) -> List[Dict[str, object]]:
  """What being another collection costs on the processing features, measured in the split.

  For every source holding both classes (`min_examples_per_source` of each), its
  examples of one class against the other class's other sources pooled, in both
  directions, with `processing_probe`: a collection compared across the classes
  where class and processing are not linked inside it, so its AUC is what a
  collection's own history gives. The one-class source being `judged` is left out
  of the pools (it must not be its own reference); rows without an AUC (too few
  examples in a pool) are left out.
  """
  rows = []
  real, fake = features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE]
  for source in sorted(set(by_class.get(real, {})) & set(by_class.get(fake, {}))):
    if min(by_class[real][source], by_class[fake][source]) < config.min_examples_per_source:
      continue
    for this, other in ((real, fake), (fake, real)):
      row = dict(processing_probe(processed[(_class_label(this), source)],
                                  _pooled(by_class, processed, other, config, (source, judged)),
                                  config), source=source, **{'class': this, 'against': other})
      if row['auc'] is not None:
        rows.append(row)
  return rows


def needed_auc(se: float, reference, config: SourceShortcutConfig) -> float:
  """The probe AUC above which a one-class source's processing differs.

  Args:
    se: the source's row's standard error (`processing_probe`'s 'se').
    reference: a `two_class_references` row (its 'auc' and 'se'), or None.
    config: `max_probe_auc`, `reference_z`, `max_one_class_auc`.

  Returns:
    `max_probe_auc` without a reference; else reference AUC + `reference_z` x the
    standard error of the difference of the two AUCs (the root of the summed
    variances: the two probes share part of a pooled class, a covariance left out),
    at least `max_probe_auc` and at most `max_one_class_auc`.
  """
  if reference is None:
    return config.max_probe_auc
  above = reference['auc'] + config.reference_z * float(np.hypot(se, reference['se']))
  return max(config.max_probe_auc, min(above, config.max_one_class_auc))


def _reference_text(reference: Mapping[str, object]) -> str:
  return (f"{reference['source']}'s {reference['class']}s against the other "
          f"{reference['against']}s (a collection whose classes share processing): "
          f"{reference['auc']:.2f}")


def copies_remove(auc: float, copies_auc: float, config: SourceShortcutConfig) -> bool:
  """Whether processing-matched copies show a one-class row's difference was JPEG history:
  its AUC above `max_probe_auc`, and the copies' lower by more than `max_copies_drop`."""
  return auc > config.max_probe_auc and auc - copies_auc > config.max_copies_drop


def single_class_source(label_name: str, source: str, other: str,
                        x_own: np.ndarray, x_other: np.ndarray,
                        config: SourceShortcutConfig,
                        references: Sequence[Mapping[str, object]] = (),
                        copies: Optional[Callable[[], Tuple[np.ndarray, np.ndarray]]] = None
                        ) -> Dict[str, object]:
  """One row: a source of one class only against the other class, on processing features.

  The row's AUC is judged against `references` (`two_class_references`: the lowest,
  the least separable collection whose classes share processing): processing
  differs above `needed_auc` (above `max_probe_auc` and the reference by more than
  `reference_z` standard errors of the difference, or above `max_one_class_auc`).
  Without a reference, `max_probe_auc` alone. Above `max_probe_auc`, `copies()` gives
  the processing features of the same rows' `matched_copy` ([n, 5] each, same order, so
  the same folds); processing differs too where `copies_remove` (named `jpeg_history`).
  The row's `copies` holds their probe and `drop` (None where none were made).

  `status`: PROCESSING_MATCHED (the separation is the detection task),
  PROCESSING_DIFFERS (a finding, with `finding`) or INSUFFICIENT; `verdict` names
  what was compared.
  """
  only = f'{label_name}s only'
  row: Dict[str, object] = dict({'class': label_name, 'source': source, 'against': other},
                                **processing_probe(x_own, x_other, config))
  if row['auc'] is None:
    row['status'] = INSUFFICIENT
    row['finding'] = (f'{label_name} source {source} (no {other} examples of its own): fewer '
                      f'than {config.min_examples_per_source} readable examples of it or of '
                      f"the {other} class ({row['probed'][0]} and {row['probed'][1]}), so the "
                      'probe cannot tell whether their processing matches (insufficient evidence)')
    return row
  compared = f"{source} ({only}) against the {other}s: {row['auc']:.2f}"
  reference = min(references, key=lambda r: r['auc'], default=None)
  row['needed'] = round(needed_auc(row['se'], reference, config), 4)
  if reference is None:
    row['reference'] = None
    compared += (f'; no source in the split holds both classes, so no reference: '
                 f'bound {config.max_probe_auc:g}')
  else:
    row['reference'] = {key: reference[key] for key in ('source', 'class', 'against', 'auc',
                                                        'se', 'probed')}
    compared += f'; {_reference_text(reference)}'
    if row['needed'] == config.max_one_class_auc:
      compared += (f' (+ {config.reference_z:g} SE is above the one-class bound '
                   f'{config.max_one_class_auc:g}, which judges)')
  row['margin'] = round(row['needed'] - row['auc'], 4)  # negative: processing differs
  row['copies'] = None
  if copies is not None and row['auc'] > config.max_probe_auc and config.max_copies_drop < 1:
    row['copies'] = processing_probe(*copies(), config)
    if row['copies']['auc'] is not None:  # else too few copies decoded: the threshold judges
      row['copies']['drop'] = round(row['auc'] - row['copies']['auc'], 4)
      compared += (f"; on copies with one fresh JPEG generation {row['copies']['auc']:.2f} "
                   f"(drop {row['copies']['drop']:.2f})")
  by_copies = 'drop' in (row['copies'] or {}) and copies_remove(row['auc'],
                                                                row['copies']['auc'], config)
  if row['auc'] <= row['needed'] and not by_copies:
    row['status'] = PROCESSING_MATCHED
    row['case'] = (f'separable from the {other} class by design (the detection task); its '
                   'processing (source size, JPEG history) matches theirs')
    row['verdict'] = f"{compared}; processing matched (differs above {row['needed']:.3f})"
    return row
  row['status'] = PROCESSING_DIFFERS
  if row['auc'] > row['needed']:
    differs = [name for name in ('size', 'jpeg_history')
               if row['auc_by_features'].get(name, 0.0) > row['needed']] or ['together']
    row['case'] = f"processing differs from the {other} class: {', '.join(differs)}"
    row['verdict'] = (f"{compared}; processing differs ({', '.join(differs)}: above "
                      f"{row['needed']:.3f})")
  else:
    row['case'] = (f'processing differs from the {other} class: jpeg_history (the copies '
                   'remove it)')
    row['verdict'] = (f'{compared}: the difference was JPEG history (jpeg_history: a drop over '
                      f'{config.max_copies_drop:g})')
  row['finding'] = (
      f'{label_name} examples come from source(s) [{source!r}] that have no {other} examples, '
      f"and their processing differs from the {other} examples' ({row['verdict']}; "
      f"{row['auc_by_features']}): a model can learn \"processed "
      f'like {source} -> {label_name}"; prepare both classes alike (same source size, same '
      f'JPEG history), or give {source} role: audit')
  return row


def sources_by_class(counts: Mapping[Tuple[int, str], int]) -> Dict[str, Dict[str, int]]:
  """{class name: {source: examples}} from `sample_by_class_and_source`'s counts."""
  by_class: Dict[str, Dict[str, int]] = {}
  for (label, source), n in sorted(counts.items()):
    by_class.setdefault(features.LABEL_NAMES.get(label, str(label)), {})[source] = n
  return by_class


def single_class_rows(by_class: Mapping[str, Mapping[str, int]],
                      samples: Mapping[Tuple[int, str], List[Sample]],
                      config: SourceShortcutConfig) -> Tuple[List[Dict[str, object]],
                                                             List[Dict[str, object]]]:
  """The `missing_sources` rows and a `single_class_source` row per one-class source.

  Each one-class source is probed against the other class's sources pooled
  (their samples taken in turn, up to `max_examples_per_source` in all), and
  judged against the `two_class_references` measured without it (each row's
  `references`) and, above `max_probe_auc`, on `matched_copy` of the same samples
  (made once per class and source, only where a row needs them and only of the rows
  it probes).
  """
  missing_rows, rows = [], []
  real, fake = features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE]
  processed = None  # featurized once, only where a one-class source needs it
  copied: Dict[Tuple[int, str], np.ndarray] = {}  # the same for copies, where a row needs them

  def copies(this: str, source: str, other: str) -> Tuple[np.ndarray, np.ndarray]:
    """The processing features of the copies of `source`'s sample and of `other` pooled:
    only the rows the pool takes are copied (`_interleave` of the originals' rows)."""
    own, label = (_class_label(this), source), _class_label(other)
    taken = _interleave([[s] * len(processed[(label, s)]) for s in sorted(by_class[other])],
                        config.max_examples_per_source)
    needed = {own: len(processed[own])}
    needed.update({(label, s): taken.count(s) for s in by_class[other]})
    for key, rows in needed.items():
      if key not in copied or len(copied[key]) < rows:  # a source with no row gets an empty one
        unreadable = len(samples[key]) - len(processed[key])  # left out of both (_featurize)
        copied[key] = _featurize(samples[key][:rows + unreadable], lambda image, size: (
            processing_features(matched_copy(image), size)), 5)[:rows]
    return copied[own], _pooled(by_class, copied, other, config)

  for this, other in ((real, fake), (fake, real)):
    lacking = sorted(set(by_class.get(this, {})) - set(by_class.get(other, {})))
    if lacking and by_class.get(other):
      missing_rows.append({'class': this, 'sources': lacking, 'missing_from': other})
      if processed is None:
        processed = {key: _featurize(sample, processing_features, 5)
                     for key, sample in samples.items()}
      x_other = _pooled(by_class, processed, other, config)
      for source in lacking:
        references = two_class_references(by_class, processed, config, judged=source)
        row = single_class_source(this, source, other, processed[(_class_label(this), source)],
                                  x_other, config, references,
                                  lambda this=this, source=source, other=other: copies(
                                      this, source, other))
        rows.append(dict(row, references=references))
  return missing_rows, rows


def check_source_shortcut(records: Iterable[Mapping[str, object]],
                          config: SourceShortcutConfig) -> Dict[str, object]:
  """The `source_shortcut` report section: sources per class, probe AUC per pair, findings."""
  counts, samples = sample_by_class_and_source(records, config.max_examples_per_source,
                                               config.seed)
  by_class = sources_by_class(counts)
  missing_rows, single_class = single_class_rows(by_class, samples, config)
  findings: List[str] = [row['finding'] for row in single_class if 'finding' in row]
  real, fake = features.LABEL_NAMES[features.REAL], features.LABEL_NAMES[features.FAKE]
  disjoint = bool(by_class.get(real) and by_class.get(fake)) and not (
      set(by_class[real]) & set(by_class[fake]))
  if disjoint:
    findings.insert(0, f'{real} and {fake} examples come from disjoint sources '
                       f'({sorted(by_class[real])} vs {sorted(by_class[fake])}): the source '
                       'alone predicts the label')

  fake_share = {}
  for source in set(by_class.get(real, {})) | set(by_class.get(fake, {})):
    n_real, n_fake = by_class.get(real, {}).get(source, 0), by_class.get(fake, {}).get(source, 0)
    fake_share[source] = round(n_fake / (n_real + n_fake), 4)
  single_class_names = {row['source'] for row in single_class}
  features_by_key = {key: _featurize(sample) for key, sample in samples.items()}
  pairs = []
  for label_name, sources in sorted(by_class.items()):
    label = features.REAL if label_name == real else features.FAKE
    for source_a, source_b in itertools.combinations(sorted(sources), 2):
      x_a, x_b = features_by_key[(label, source_a)], features_by_key[(label, source_b)]
      row: Dict[str, object] = {'class': label_name, 'sources': [source_a, source_b],
                                'examples': [sources[source_a], sources[source_b]],
                                'probed': [len(x_a), len(x_b)], 'auc': None,
                                'fake_share': {source_a: fake_share[source_a],
                                               source_b: fake_share[source_b]}}
      share_gap = abs(fake_share[source_a] - fake_share[source_b])
      one_class = sorted({source_a, source_b} & single_class_names)
      if one_class:
        # A one-class source differs from the other sources of its class by what it is
        # (another generator, another collection); its processing is judged against the
        # other class (single_class_sources), and the probe's AUC is reported here.
        row['status'] = ONE_CLASS_SOURCE
        row['judged_by'] = f'single_class_sources ({", ".join(one_class)})'
        if min(len(x_a), len(x_b)) >= config.min_examples_per_source:
          row['auc_by_features'] = probe_aucs(x_a, x_b, config.folds, config.seed)
          row['auc'] = max(row['auc_by_features'].values())
      elif min(len(x_a), len(x_b)) < config.min_examples_per_source:
        row['status'] = INSUFFICIENT
        findings.append(f'{label_name}: {source_a} vs {source_b}: fewer than '
                        f'{config.min_examples_per_source} readable examples of one source '
                        f'({len(x_a)} and {len(x_b)}), so the probe cannot tell whether they '
                        'differ (insufficient evidence)')
      else:
        row['auc_by_features'] = probe_aucs(x_a, x_b, config.folds, config.seed)
        auc = max(row['auc_by_features'].values())
        row['auc'] = auc
        if auc <= config.max_probe_auc:
          row['status'] = OK
        elif share_gap <= config.max_fake_share_gap:
          row['status'] = SEPARABLE_BALANCED
        else:
          row['status'] = SHORTCUT
          findings.append(f'{label_name}: a linear probe tells {source_a} from {source_b} with '
                          f'AUC {auc:.3f} > {config.max_probe_auc:g} (best of 32x32 pixels, '
                          'FFT profile, both: '
                          f"{row['auc_by_features']}) and their shares of fakes differ "
                          f'({fake_share[source_a]:.2f} vs {fake_share[source_b]:.2f}, gap over '
                          f'{config.max_fake_share_gap:g}): the source is learnable as a label')
      pairs.append(row)
  return {'split': config.split, 'max_probe_auc': config.max_probe_auc,
          'reference_z': config.reference_z, 'max_one_class_auc': config.max_one_class_auc,
          'max_copies_drop': config.max_copies_drop,
          'on_shortcut': config.on_shortcut, 'sources_by_class': by_class,
          'disjoint': disjoint, 'missing_sources': missing_rows,
          'single_class_sources': single_class, 'pairs': pairs,
          'fake_share': dict(sorted(fake_share.items())),
          'findings': findings, 'passed': not findings}


def describe(report: Mapping[str, object]) -> str:
  """One line per finding, for the gate's failure message and the run summary."""
  return '\n'.join(f'  {line}' for line in report.get('findings', []))

