"""The operating point: the decision threshold chosen for a target false-positive rate.

A real person called fake is the costly error, so the threshold is set on the
eval split's real photos: the lowest threshold at which at most `target_fpr`
of them score as fake. The Trainer picks it after training
(`module.run_fn`), the export carries it (the `label` output, the
`operating_point.json` asset, read back by
`serving_contract.read_decision_threshold`), and TFMA, the FairnessGate,
`fakefaces gate`, `predict` and the web page all use it.

Rule (scores are P(fake); a face is called fake when its score >= threshold):
with n real photos in the eval split, at most k = floor(target_fpr * n) of
them may score at or above the threshold. The threshold is the midpoint
between the (k+1)-th highest real score and the next higher score of any
example (1.0 when none is higher), so no eval score lies on it: TFMA counts
`score > threshold`, the exported `label` counts `score >= threshold`, and the
two agree on every eval example. Ties among reals only lower the FPR. With
fewer than 1/target_fpr reals, k is 0 and the threshold sits above every
real; `reals_needed` in the returned record says how many reals the target
needs to be more than that.
"""

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

# Keep the threshold strictly inside (0, 1): the export and the config refuse 0 and 1.
_LOWEST, _HIGHEST = 1e-6, 1.0 - 1e-6
# False-positive rates at which every report gives the TPR (the ROC's useful end).
REPORTED_FPRS = (0.01, 0.05)


@dataclasses.dataclass
class OperatingPoint:
  """The chosen threshold and what it does on the split it was chosen on."""
  decision_threshold: float
  chosen_by: str  # 'target_fpr' (chosen on the eval split) or 'explicit' (decision_threshold)
  target_fpr: Optional[float]
  split: str  # where the rates below were measured
  reals: int
  fakes: int
  fpr: Optional[float]  # at decision_threshold; None when the split has no real photo
  tpr: Optional[float]  # None when the split has no fake
  balanced_accuracy: Optional[float]
  auc: Optional[float]  # None unless both classes are present
  tpr_at_fpr: Dict[str, Optional[float]]  # '0.01' -> TPR at the threshold for that FPR
  reals_needed: Optional[int] = None  # reals the target FPR needs (ceil(1 / target_fpr))

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def threshold_for_fpr(labels: Sequence[int], scores: Sequence[float], target_fpr: float) -> float:
  """The lowest threshold at which at most `target_fpr` of the real photos (label 0) score >= it.

  Raises ValueError when there is no real photo (an FPR target needs reals) or
  `target_fpr` is not in (0, 1).
  """
  if not 0.0 < target_fpr < 1.0:
    raise ValueError(f'target_fpr must be in (0, 1), got {target_fpr}')
  labels = np.asarray(labels).astype(int).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  if labels.shape != scores.shape:
    raise ValueError(f'{labels.size} labels but {scores.size} scores')
  reals = np.sort(scores[labels == 0])[::-1]
  if not reals.size:
    raise ValueError('no real photo (label 0) to choose a threshold for a target FPR on')
  allowed = int(math.floor(target_fpr * reals.size + 1e-9))
  if allowed >= reals.size:  # every real may be called fake: the lowest threshold
    return _LOWEST
  highest_kept_real = reals[allowed]
  above = scores[scores > highest_kept_real]
  upper = float(above.min()) if above.size else 1.0
  threshold = (highest_kept_real + upper) / 2
  # The model holds the threshold as float32: round there, then keep it above the real.
  threshold = float(np.float32(threshold))
  if threshold <= highest_kept_real:
    threshold = float(np.nextafter(np.float32(highest_kept_real), np.float32(1.0)))
  return min(max(threshold, _LOWEST), _HIGHEST)


def tpr_at_fpr(labels: Sequence[int], scores: Sequence[float], target_fpr: float
               ) -> Optional[float]:
  """Share of fakes (label 1) at or above `threshold_for_fpr`; None without both classes.

  0.0 when more than `target_fpr` of the reals score at or above that threshold:
  reals at P(fake) 1.0 (a saturated float32 sigmoid) sit above the threshold's
  ceiling, and only a threshold above 1.0, which no fake reaches, keeps the FPR
  at the target.
  """
  labels = np.asarray(labels).astype(int).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  if not ((labels == 0).any() and (labels == 1).any()):
    return None
  threshold = threshold_for_fpr(labels, scores, target_fpr)
  if (scores[labels == 0] >= threshold).mean() > target_fpr + 1e-9:
    return 0.0
  return float((scores[labels == 1] >= threshold).mean())


def _auc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
  if not ((labels == 0).any() and (labels == 1).any()):
    return None
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  return float(metrics.roc_auc_score(labels, scores))


def measure(labels: Sequence[int], scores: Sequence[float], decision_threshold: float,
            chosen_by: str, target_fpr: Optional[float], split: str) -> OperatingPoint:
  """What `decision_threshold` does on (labels, scores): rates, AUC, TPR at the reported FPRs."""
  labels = np.asarray(labels).astype(int).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  reals, fakes = int((labels == 0).sum()), int((labels == 1).sum())
  called_fake = scores >= decision_threshold
  fpr = float(called_fake[labels == 0].mean()) if reals else None
  tpr = float(called_fake[labels == 1].mean()) if fakes else None
  tpr_at = {f'{rate:g}': tpr_at_fpr(labels, scores, rate) for rate in REPORTED_FPRS}
  return OperatingPoint(
      decision_threshold=float(decision_threshold), chosen_by=chosen_by, target_fpr=target_fpr,
      split=split, reals=reals, fakes=fakes, fpr=fpr, tpr=tpr,
      balanced_accuracy=(tpr + 1 - fpr) / 2 if fpr is not None and tpr is not None else None,
      auc=_auc(labels, scores), tpr_at_fpr=tpr_at,
      reals_needed=int(math.ceil(1 / target_fpr - 1e-9)) if target_fpr else None)


def choose(labels: Sequence[int], scores: Sequence[float], target_fpr: Optional[float],
           decision_threshold: Optional[float] = None, split: str = 'eval') -> OperatingPoint:
  """The operating point: `decision_threshold` when given (an explicit override), else the
  threshold for `target_fpr` on these scores; measured on them either way."""
  if decision_threshold is not None:
    return measure(labels, scores, decision_threshold, 'explicit', target_fpr, split)
  if target_fpr is None:
    raise ValueError('neither target_fpr nor decision_threshold is set: nothing to choose by')
  return measure(labels, scores, threshold_for_fpr(labels, scores, target_fpr), 'target_fpr',
                 target_fpr, split)
