"""Classifiers from face descriptors to FairFace gender/race/age, their evaluation,
and the rewriting of one tf.Example.

Kept free of TFX so the judgement can be tested and re-derived by hand:

* `train` fits one multinomial logistic regression per attribute (standardised
  descriptors) on the human-labelled faces of the train split. Classes with
  fewer than `min_train_per_class` faces are left out and named.
* `evaluate` scores predictions against human labels: accuracy of the top
  class over every labelled face, the confusion matrix (rows true, columns
  predicted, vocabulary order), per-class precision/recall, and, at the
  attribute's confidence threshold, the share of faces that get a value
  (coverage) and the accuracy on those (what the pipeline actually writes).
* `annotate_example` fills an attribute only where the example carries
  'unknown' and the prediction is confident enough; a human or prompted label
  is never replaced.
"""

import collections
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from fakefaces.components.shared import features

ATTRIBUTES = features.DEMOGRAPHIC_FEATURES


def string_feature(example, name: str) -> str:
  values = example.features.feature[name].bytes_list.value
  return values[0].decode('utf-8') if values else features.UNKNOWN


def demographics_of(example) -> Dict[str, str]:
  """gender/race/age as the example carries them ('unknown' where absent)."""
  return {attribute: string_feature(example, attribute) for attribute in ATTRIBUTES}


def labels_origin(example) -> str:
  """Where the example's known values came from before annotation: 'prompted' when
  ingestion marked them so (a source with `demographics: prompted`), else 'human'."""
  marked = example.features.feature[features.DEMOGRAPHICS_SOURCE].bytes_list.value
  return features.PROMPTED if marked and marked[0] == features.PROMPTED.encode() else (
      features.HUMAN)


def human_labels(example) -> Dict[str, str]:
  """gender/race/age a person gave: the ingested values, unless they are a prompt's.

  Only these train and score the classifiers: a prompt says what a generator was
  asked for, not what a person sees in the image.
  """
  values = demographics_of(example)
  if labels_origin(example) == features.PROMPTED:
    return {attribute: features.UNKNOWN for attribute in values}
  return values


def train(descriptors: np.ndarray, labels: Mapping[str, Sequence[str]], min_per_class: int,
          regularization_c: float) -> Tuple[Dict[str, object], Dict[str, Dict[str, object]]]:
  """({attribute: fitted sklearn pipeline or None}, {attribute: what it was trained on}).

  `labels[attribute][i]` is the human label of descriptor i, 'unknown' if none.
  """
  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  # pylint: enable=g-import-not-at-top
  classifiers, info = {}, {}
  for attribute in ATTRIBUTES:
    values = np.asarray(labels[attribute], dtype=object)
    counts = collections.Counter(v for v in values if v != features.UNKNOWN)
    learned = [c for c in features.VOCABULARIES[attribute] if counts[c] >= min_per_class]
    too_small = {c: counts[c] for c in features.VOCABULARIES[attribute]
                 if counts[c] < min_per_class}
    keep = np.isin(values, learned)
    info[attribute] = {'train_counts': {c: counts[c] for c in features.VOCABULARIES[attribute]},
                       'classes_learned': learned, 'classes_too_small': too_small,
                       'n_train': int(keep.sum())}
    if len(learned) < 2:
      classifiers[attribute] = None
      info[attribute]['not_trained'] = (
          f'{len(learned)} class(es) with >= {min_per_class} human-labelled train faces; '
          'need 2: every face without a human label stays unknown')
      continue
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=regularization_c, max_iter=2000))
    model.fit(descriptors[keep], values[keep].astype(str))
    classifiers[attribute] = model
  return classifiers, info


def predict(classifiers: Mapping[str, object], descriptors: np.ndarray
            ) -> Dict[str, Tuple[List[str], np.ndarray]]:
  """{attribute: (top class per face, its probability)}; ('unknown', 0) without a classifier."""
  out = {}
  for attribute in ATTRIBUTES:
    model = classifiers.get(attribute)
    if model is None or not len(descriptors):
      out[attribute] = ([features.UNKNOWN] * len(descriptors), np.zeros(len(descriptors)))
      continue
    probabilities = model.predict_proba(descriptors)
    best = probabilities.argmax(axis=1)
    out[attribute] = ([str(model.classes_[i]) for i in best],
                      probabilities[np.arange(len(best)), best])
  return out


def cross_fit(descriptors: np.ndarray, labels: Mapping[str, Sequence[str]], min_per_class: int,
              regularization_c: float, folds: int, seed: int
              ) -> Dict[str, Tuple[List[str], np.ndarray]]:
  """Out-of-fold predictions: face i is predicted by classifiers fitted without its fold.

  Same shape as `predict`. Folds are a seeded permutation, so every face is
  scored exactly once by classifiers that never saw its label.
  """
  n = len(descriptors)
  fold_of = np.random.default_rng(seed).permutation(n) % folds
  out = {a: ([features.UNKNOWN] * n, np.zeros(n)) for a in ATTRIBUTES}
  for fold in range(folds):
    held = fold_of == fold
    fit = ~held
    classifiers, _ = train(descriptors[fit], {a: [v for v, k in zip(labels[a], fit) if k]
                                              for a in ATTRIBUTES},
                           min_per_class, regularization_c)
    predicted = predict(classifiers, descriptors[held])
    for attribute, (values, confidences) in predicted.items():
      for i, value, confidence in zip(np.flatnonzero(held), values, confidences):
        out[attribute][0][i] = value
        out[attribute][1][i] = confidence
  return out


def thresholded(value: str, confidence: float, min_confidence: float) -> str:
  """The value the pipeline writes: the prediction, or 'unknown' below the threshold."""
  return value if value != features.UNKNOWN and confidence >= min_confidence else features.UNKNOWN


def evaluate(true: Sequence[str], predicted: Sequence[str], confidences: Sequence[float],
             min_confidence: float, vocabulary: Sequence[str]) -> Dict[str, object]:
  """Accuracy, confusion matrix and coverage of predictions on human-labelled faces.

  Faces whose human label is 'unknown' are not scored.
  """
  rows = [(t, p, float(c)) for t, p, c in zip(true, predicted, confidences)
          if t != features.UNKNOWN]
  index = {v: i for i, v in enumerate(vocabulary)}
  confusion = np.zeros((len(vocabulary), len(vocabulary)), dtype=int)
  for t, p, _ in rows:
    if p in index:
      confusion[index[t], index[p]] += 1
  n = len(rows)
  correct = sum(t == p for t, p, _ in rows)
  confident = [(t, p) for t, p, c in rows if thresholded(p, c, min_confidence) != features.UNKNOWN]
  per_class = {}
  for value, i in index.items():
    support, called = int(confusion[i].sum()), int(confusion[:, i].sum())
    per_class[value] = {'support': support,
                        'recall': confusion[i, i] / support if support else None,
                        'precision': confusion[i, i] / called if called else None}
  return {
      'n': n, 'correct': int(correct), 'accuracy': correct / n if n else None,
      'labels': list(vocabulary), 'confusion': confusion.tolist(), 'per_class': per_class,
      'min_confidence': min_confidence, 'n_confident': len(confident),
      'coverage': len(confident) / n if n else None,
      'confident_accuracy': (sum(t == p for t, p in confident) / len(confident)
                             if confident else None),
  }


def annotate_example(example, predictions: Mapping[str, Tuple[str, float]],
                     min_confidence: Mapping[str, float]) -> Tuple[object, Dict[str, str]]:
  """Fills unknown attributes with confident predictions; returns (example, source per attribute).

  `example` (a tf.train.Example) is modified in place. A human or prompted
  label keeps its value and gets confidence 1; a filled value gets its
  probability; what stays unknown gets 0. `demographics_source` is 'human' if
  any attribute is a human label, else 'prompted' if any is a prompt's, else
  'predicted' if any was filled, else 'unknown'; `labelled_attributes` names the
  attributes that are human or prompted labels ('none' when none is).
  """
  fields = example.features.feature
  origin = labels_origin(example)
  sources = {}
  for attribute in ATTRIBUTES:
    current = string_feature(example, attribute)
    value, confidence = predictions.get(attribute, (features.UNKNOWN, 0.0))
    if current != features.UNKNOWN:
      sources[attribute], confidence = origin, 1.0
    else:
      filled = thresholded(value, confidence, min_confidence[attribute])
      if filled == features.UNKNOWN:
        sources[attribute], confidence = features.UNKNOWN, 0.0
      else:
        sources[attribute] = features.PREDICTED
        fields[attribute].bytes_list.value[:] = [filled.encode('utf-8')]
    fields[features.CONFIDENCE_FEATURES[attribute]].float_list.value[:] = [float(confidence)]
  fields[features.DEMOGRAPHICS_SOURCE].bytes_list.value[:] = [
      overall_source(sources).encode('utf-8')]
  fields[features.LABELLED_ATTRIBUTES].bytes_list.value[:] = [
      features.labelled_attributes_value(sources).encode('utf-8')]
  return example, sources


def overall_source(sources: Mapping[str, str]) -> str:
  """The example's demographics_source: the first of DEMOGRAPHICS_SOURCES among `sources`."""
  values = set(sources.values())
  return next(s for s in features.DEMOGRAPHICS_SOURCES if s in values or s == features.UNKNOWN)


def attribute_sources(example) -> Dict[str, str]:
  """Per attribute: human / prompted / predicted / unknown, read back from an annotated example.

  `labelled_attributes` says it exactly. Examples annotated without that feature
  fall back on the confidence (1.0 for a label), which also reads a prediction
  whose float32 probability rounded to 1.0 as a label.
  """
  out = {}
  origin = labels_origin(example)
  labelled = string_feature(example, features.LABELLED_ATTRIBUTES)
  for attribute in ATTRIBUTES:
    value = string_feature(example, attribute)
    confidence = example.features.feature[features.CONFIDENCE_FEATURES[attribute]].float_list.value
    if value == features.UNKNOWN:
      out[attribute] = features.UNKNOWN
    elif labelled != features.UNKNOWN:
      out[attribute] = origin if features.labelled_covers(labelled, [attribute]) else (
          features.PREDICTED)
    elif confidence and confidence[0] < 1.0:
      out[attribute] = features.PREDICTED
    else:
      out[attribute] = origin
  return out


def small_class_warnings(training: Mapping[str, Mapping[str, object]],
                         evaluation: Mapping[str, Mapping[str, object]],
                         min_support: int = 10) -> List[str]:
  """Where the labelled data is too small to learn or to measure a class."""
  lines = []
  for attribute in ATTRIBUTES:
    info = training.get(attribute, {})
    if info.get('not_trained'):
      lines.append(f"{attribute}: not trained: {info['not_trained']}")
    for value, count in (info.get('classes_too_small') or {}).items():
      lines.append(f'{attribute}={value}: only {count} human-labelled train faces: never predicted')
    for value, stats in ((evaluation.get(attribute) or {}).get('per_class') or {}).items():
      if stats['support'] < min_support and value not in (info.get('classes_too_small') or {}):
        lines.append(f"{attribute}={value}: only {stats['support']} labelled test faces: its "
                     'accuracy is barely measured')
  return lines
