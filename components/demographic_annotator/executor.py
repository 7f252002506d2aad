"""DemographicAnnotator executor: fills missing gender/race/age from face features.

In process, in two passes over the examples: (1) the features
(`annotator.features`, face_features.py: dlib descriptor or CLIP embedding) of every
face that needs them (faces lacking a demographic, and the human-labelled faces
of the train and test splits), then classifiers trained on the train split's
human labels and scored on the test split's; (2) every split rewritten with
the missing demographics filled (when confident), per-attribute confidences and
`demographics_source`. A face whose image cannot be described keeps 'unknown'
and is counted in the report; it never stops the run.

Outputs: the annotated Examples (same splits), and the Annotations artifact:
report.json (accuracy and confusion per attribute on the test split, what was
filled, the test split's demographics by source for the FairnessGate),
classifiers.pkl (the fitted scikit-learn pipelines, reusable by later runs and
by `fakefaces label`) and predictions.csv (every face's proposal).
"""

import collections
import csv
import dataclasses
import json
import os
import pickle
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.proto import example_gen_pb2
from tfx import types
from tfx.types import artifact_utils

from fakefaces.components.shared import component_keys as keys, example_files, features
from fakefaces.components.shared.reports import write_report
from fakefaces.components.shared.config_base import from_json, to_json
from fakefaces.components.demographic_annotator import annotate, face_features
from fakefaces.components.demographic_annotator.config import AnnotatorConfig, validate

CLASSIFIERS_FILE = 'classifiers.pkl'
PREDICTIONS_FILE = 'predictions.csv'
TFRECORD_NAME = 'data_tfrecord-00000-of-00001.gz'
DESCRIBE_BATCH = 32  # faces described at once: the embedding cache writes one file per batch
ATTRIBUTES = annotate.ATTRIBUTES
PREDICTION_COLUMNS = (['image_id', 'split', 'label', 'demographics_source'] +
                      [f'{a}_{k}' for a in ATTRIBUTES for k in ('value', 'source', 'proposal',
                                                               'confidence')])


def _records(files: List[str]) -> Iterator[bytes]:
  for record in example_files.records(files):
    yield record.numpy()


class _Progress:
  """Logs every `interval` seconds how many faces were `what` so far."""

  def __init__(self, what: str, interval: float):
    self._what, self._interval = what, interval
    self._start = self._last = time.monotonic()
    self.done = 0

  def tick(self) -> None:
    self.done += 1
    now = time.monotonic()
    if now - self._last >= self._interval:
      self._last = now
      logging.info('DemographicAnnotator: %s %d faces in %.0fs (%.1f/s)', self._what, self.done,
                   now - self._start, self.done / max(now - self._start, 1e-9))


@dataclasses.dataclass
class Face:
  """One example as pass 1 saw it."""
  image_id: str
  label: int  # -1 when the example has none
  human: Dict[str, str]  # human labels ('unknown' where none, or where the value is a prompt's)
  lacking: bool  # some attribute is unknown on the example: something to fill
  described: bool = False  # a descriptor was taken (vectors row is valid)


# {attribute: (value, confidence)} per face of a split, in record order.
Proposals = List[Dict[str, Tuple[str, float]]]


@dataclasses.dataclass
class Described:
  """Pass 1: every face of every split, and the descriptors of those that needed one."""
  faces: Dict[str, List[Face]]
  vectors: Dict[str, np.ndarray]  # [faces, feature size] float32, NaN rows where not described
  failures: List[Dict[str, str]]  # faces that could not be described: image_id, split, reason
  from_ingestion: int  # descriptors stored at ingestion, not recomputed
  seconds: float


def read_face(example: tf.train.Example) -> Face:
  """The fields pass 1 keeps of one example (its image is not kept)."""
  labels = example.features.feature[features.LABEL].int64_list.value
  return Face(image_id=annotate.string_feature(example, features.IMAGE_ID),
              label=int(labels[0]) if labels else -1, human=annotate.human_labels(example),
              lacking=features.UNKNOWN in annotate.demographics_of(example).values())


def needs_descriptor(face: Face, split: str, config: AnnotatorConfig) -> bool:
  """A face to fill, or a human-labelled face the classifiers learn from or are scored on."""
  return face.lacking or (split in (config.train_split, config.test_split) and
                          any(v != features.UNKNOWN for v in face.human.values()))


def describe_faces(files: Dict[str, List[str]], config: AnnotatorConfig,
                   describer: Optional[face_features.Features],
                   progress: '_Progress') -> Described:
  """Pass 1: reads every split; describes the faces that need it (none without `describer`).

  Faces are described in batches of DESCRIBE_BATCH (the CLIP tower's batch). A
  face that cannot be described keeps a NaN row and is listed in `failures`.
  """
  started = time.monotonic()
  result = Described({}, {}, [], 0, 0.0)
  size = face_features.SIZES[config.features]
  for split, paths in files.items():
    split_faces, split_vectors, pending = [], [], []  # pending: (row, image bytes)

    def describe_pending():
      for (row, _), outcome in zip(pending, describer.describe([image for _, image in pending])):
        if isinstance(outcome, Exception):
          result.failures.append({'image_id': split_faces[row].image_id, 'split': split,
                                  'reason': f'{type(outcome).__name__}: {outcome}'})
        else:
          split_vectors[row], split_faces[row].described = outcome, True
        progress.tick()
      pending.clear()

    for serialized in _records(paths):
      example = tf.train.Example.FromString(serialized)
      face = read_face(example)
      vector = np.full(size, np.nan, dtype=np.float32)
      if describer is not None and needs_descriptor(face, split, config):
        stored = describer.stored(example)
        image = example.features.feature[features.IMAGE].bytes_list.value
        if stored is not None:  # taken at ingestion, before the treatment
          vector, face.described = stored, True
          result.from_ingestion += 1
        elif image:
          pending.append((len(split_faces), image[0]))
        else:
          result.failures.append({'image_id': face.image_id, 'split': split,
                                  'reason': f'no {features.IMAGE} bytes'})
          progress.tick()
      split_faces.append(face)
      split_vectors.append(vector)
      if len(pending) >= DESCRIBE_BATCH:
        describe_pending()
    if pending:
      describe_pending()
    result.faces[split] = split_faces
    result.vectors[split] = (np.stack(split_vectors).astype(np.float32) if split_vectors else
                             np.zeros((0, size), np.float32))
  result.seconds = time.monotonic() - started
  return result


def labelled(faces: Sequence[Face]) -> Tuple[np.ndarray, Dict[str, List[str]]]:
  """(described mask [faces] bool, {attribute: human label of each described face})."""
  keep = np.array([f.described for f in faces], dtype=bool)
  return keep, {a: [f.human[a] for f, k in zip(faces, keep) if k] for a in ATTRIBUTES}


def fit(described: Described, config: AnnotatorConfig, active: bool
        ) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
  """Classifiers fitted on the train split's human labels, and what each learned from."""
  if not active or config.train_split not in described.faces:
    return ({a: None for a in ATTRIBUTES},
            {a: {'not_trained': 'annotator disabled, nothing to fill, or no train split'}
             for a in ATTRIBUTES})
  keep, labels = labelled(described.faces[config.train_split])
  return annotate.train(described.vectors[config.train_split][keep], labels,
                        config.min_train_per_class, config.regularization_c)


def propose(described: Described, classifiers: Mapping[str, Any]) -> Dict[str, Proposals]:
  """Per split, the classifiers' (value, confidence) for every described face."""
  proposals = {}
  for split, faces in described.faces.items():
    keep = np.array([f.described for f in faces], dtype=bool)
    per_face: Proposals = [dict() for _ in faces]
    for attribute, (values, confidences) in annotate.predict(
        classifiers, described.vectors[split][keep]).items():
      for i, value, confidence in zip(np.flatnonzero(keep), values, confidences):
        per_face[i][attribute] = (value, float(confidence))
    proposals[split] = per_face
  return proposals


def cross_fit_train_split(described: Described, proposals: Dict[str, Proposals],
                          config: AnnotatorConfig) -> None:
  """Gives the train split's human-labelled faces out-of-fold proposals instead (in place)."""
  faces = described.faces[config.train_split]
  keep, labels = labelled(faces)
  out_of_fold = annotate.cross_fit(described.vectors[config.train_split][keep], labels,
                                   config.min_train_per_class, config.regularization_c,
                                   config.cross_fit_folds, config.seed)
  for attribute, (values, confidences) in out_of_fold.items():
    for i, value, confidence in zip(np.flatnonzero(keep), values, confidences):
      if faces[i].human[attribute] != features.UNKNOWN:
        proposals[config.train_split][i][attribute] = (value, float(confidence))


def evaluate_test_split(faces: Sequence[Face], proposals: Proposals,
                        thresholds: Mapping[str, float]
                        ) -> Tuple[Dict[str, Dict[str, Any]], List[List[str]]]:
  """(accuracy and confusion per attribute on the human-labelled faces, test pairs).

  Test pairs: (human, thresholded prediction) per fully human-labelled face; the
  FairnessGate measures from them how often a face predicted into a group
  really belongs to it.
  """
  scored = [(f, p) for f, p in zip(faces, proposals) if p]
  evaluation = {}
  for attribute in ATTRIBUTES:
    evaluation[attribute] = annotate.evaluate(
        [f.human[attribute] for f, _ in scored],
        [p.get(attribute, (features.UNKNOWN, 0.0))[0] for _, p in scored],
        [p.get(attribute, (features.UNKNOWN, 0.0))[1] for _, p in scored],
        thresholds[attribute], features.VOCABULARIES[attribute])
  pairs = [[f.human[a] for a in ATTRIBUTES] +
           [annotate.thresholded(*p.get(a, (features.UNKNOWN, 0.0)), thresholds[a])
            for a in ATTRIBUTES]
           for f, p in scored if all(v != features.UNKNOWN for v in f.human.values())]
  return evaluation, pairs


@dataclasses.dataclass
class Tally:
  """Pass 2's account: what each attribute's value rests on, per split and on the test split."""
  filled: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  evaluated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  prediction_rows: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

  def add(self, split: str, face: Face, values: Mapping[str, str], sources: Mapping[str, str],
          proposal: Mapping[str, Tuple[str, float]], test_split: str) -> None:
    for attribute in ATTRIBUTES:
      self.filled[(split, attribute, sources[attribute])] += 1
    if split == test_split:
      self.evaluated[(face.label,) + tuple(values[a] for a in ATTRIBUTES) +
                     tuple(sources[a] for a in ATTRIBUTES)] += 1
    row = {'image_id': face.image_id, 'split': split, 'label': face.label,
           'demographics_source': annotate.overall_source(sources)}
    for attribute in ATTRIBUTES:
      value, confidence = proposal.get(attribute, (features.UNKNOWN, 0.0))
      row.update({f'{attribute}_value': values[attribute],
                  f'{attribute}_source': sources[attribute],
                  f'{attribute}_proposal': value, f'{attribute}_confidence': f'{confidence:.4f}'})
    self.prediction_rows.append(row)


def rewrite_splits(files: Dict[str, List[str]], output_uri: str, described: Described,
                   proposals: Dict[str, Proposals], thresholds: Mapping[str, float],
                   test_split: str) -> Tally:
  """Pass 2: every split rewritten with the confident proposals filled in."""
  tally = Tally()
  for split, paths in files.items():
    split_dir = example_files.split_dir(output_uri, split)
    tf.io.gfile.makedirs(split_dir)
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(split_dir, TFRECORD_NAME), options) as writer:
      for i, serialized in enumerate(_records(paths)):
        example, sources = annotate.annotate_example(
            tf.train.Example.FromString(serialized), proposals[split][i], thresholds)
        writer.write(example.SerializeToString(deterministic=True))
        tally.add(split, described.faces[split][i], annotate.demographics_of(example), sources,
                  proposals[split][i], test_split)
  return tally


def build_report(config: AnnotatorConfig, lacking: Dict[str, int], active: bool,
                 described: Described, faces_described: int, training: Dict[str, Any],
                 evaluation: Dict[str, Any], test_pairs: List[List[str]],
                 tally: Tally, features_summary: Dict[str, Any]) -> Dict[str, Any]:
  """report.json of the Annotations artifact.

  `features_summary`: the features' own account (face_features: the embedding
  cache's folder and counts for clip_embedding).
  """
  split_names = list(described.faces)
  return {
      'config': json.loads(to_json(config)),
      # What the classifiers read (annotator.features), and its dimension.
      'features': config.features,
      'feature_dimension': face_features.SIZES[config.features],
      'descriptor': face_features.DESCRIPTIONS[config.features],
      **features_summary,
      'descriptors_from_ingestion': described.from_ingestion,
      'evaluation_protocol': (
          f'{config.cross_fit_folds}-fold cross-fitting on the {config.test_split} split\'s human '
          'labels (each face scored by classifiers fitted without it)' if config.cross_fit_folds
          else f'fitted on {config.train_split}, scored on {config.test_split}'),
      # Faces lacking at least one demographic, per split; when all are 0 nothing was
      # described or trained ('skipped' says why).
      'faces_lacking_demographics': lacking,
      'skipped': (None if active else
                  'annotator disabled' if not config.enabled else
                  'every face has its gender, race and age labels: nothing to fill'),
      'faces_described': faces_described,
      'describe_seconds': round(described.seconds, 1),
      'faces_per_second': (round(faces_described / described.seconds, 2) if described.seconds
                           else None),
      'describe_failures': described.failures,
      'training': training,
      'test_split': config.test_split,
      'evaluation': evaluation,
      'small_data': annotate.small_class_warnings(training, evaluation),
      'filled': {split: {attribute: {s: tally.filled[(split, attribute, s)]
                                     for s in features.DEMOGRAPHICS_SOURCES}
                         for attribute in ATTRIBUTES} for split in split_names},
      # The FairnessGate's evidence: who is in each group of the test split, by source.
      'test_pairs_columns': [f'true_{a}' for a in ATTRIBUTES] + [f'predicted_{a}'
                                                                 for a in ATTRIBUTES],
      'test_pairs': test_pairs,
      'evaluated_columns': ['label'] + list(ATTRIBUTES) + [f'{a}_source' for a in ATTRIBUTES] +
                           ['count'],
      'evaluated': [list(key) + [n] for key, n in sorted(tally.evaluated.items())],
  }


def annotate_examples(input_uri: str, split_names: List[str], output_uri: str,
                      annotations_uri: str, config: AnnotatorConfig) -> Dict[str, Any]:
  """Both passes; writes the outputs and returns the report."""
  validate(config)
  files = {split: example_files.split_files(input_uri, split) for split in split_names}
  lacking = faces_lacking_demographics(files) if config.enabled else {}
  # Describing the labelled faces only serves to fill the unlabelled ones: with none
  # to fill (the demo data: every image carries its labels) the work is skipped.
  active = config.enabled and sum(lacking.values()) > 0
  if config.enabled and not active:
    logging.info('DemographicAnnotator: skipped: every face of %s has its gender, race and age '
                 'labels, so there is nothing to fill; the examples pass through unchanged',
                 '/'.join(split_names))
  progress = _Progress('described', config.progress_interval_seconds)
  describer = face_features.make(config) if active else None
  described = describe_faces(files, config, describer, progress)
  classifiers, training = fit(described, config, active)
  proposals = propose(described, classifiers)
  if active and config.cross_fit_folds and config.train_split in described.faces:
    cross_fit_train_split(described, proposals, config)
  thresholds = {a: config.min_confidence(a) for a in ATTRIBUTES}
  evaluation, test_pairs = (evaluate_test_split(described.faces[config.test_split],
                                                proposals[config.test_split], thresholds)
                            if config.test_split in described.faces else ({}, []))
  tally = rewrite_splits(files, output_uri, described, proposals, thresholds, config.test_split)
  report = build_report(config, lacking, active, described, progress.done, training, evaluation,
                        test_pairs, tally, describer.summary() if describer else {})
  write_outputs(annotations_uri, report, classifiers, tally.prediction_rows)
  for attribute, result in (evaluation.items() if active else ()):
    logging.info('DemographicAnnotator: %s accuracy %s on %d labelled %s faces (coverage %s at '
                 'confidence >= %s, accuracy there %s)', attribute, result['accuracy'],
                 result['n'], config.test_split, result['coverage'], result['min_confidence'],
                 result['confident_accuracy'])
  return report


def faces_lacking_demographics(files: Dict[str, List[str]]) -> Dict[str, int]:
  """Per split, how many faces lack at least one of gender, race and age (a quick read)."""
  return {split: sum(features.UNKNOWN in annotate.demographics_of(
      tf.train.Example.FromString(serialized)).values() for serialized in _records(paths))
          for split, paths in files.items()}


def write_outputs(uri: str, report: Dict[str, Any], classifiers: Dict[str, Any],
                  prediction_rows: List[Dict[str, Any]]) -> None:
  write_report(uri, report, allow_nan=False)
  import sklearn  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(os.path.join(uri, CLASSIFIERS_FILE), 'wb') as f:
    pickle.dump({'sklearn_version': sklearn.__version__, 'classifiers': classifiers}, f)
  with tf.io.gfile.GFile(os.path.join(uri, PREDICTIONS_FILE), 'w') as f:
    writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS)
    writer.writeheader()
    writer.writerows(prediction_rows)


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Copies every split with the missing demographics filled in, and reports how well.

    Args:
      input_dict: `examples` (Examples from FaceExampleGen), one artifact.
      output_dict: `annotated_examples` (Examples: the same splits and records,
        gzipped TFRecords, demographics predicted where a face lacks them) and
        `annotations` (Annotations: report.json, classifiers.pkl,
        predictions.csv), one artifact each.
      exec_properties: `annotator_config` (AnnotatorConfig as JSON).

    Raises:
      ConfigError: a config field is invalid (named by its dotted path).
    """
    config = from_json(AnnotatorConfig, exec_properties[keys.ANNOTATOR_CONFIG_KEY], 'annotator')
    examples_in = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES_KEY])
    examples_out = artifact_utils.get_single_instance(output_dict[keys.ANNOTATED_EXAMPLES_KEY])
    annotations = artifact_utils.get_single_instance(output_dict[keys.ANNOTATIONS_KEY])
    split_names = artifact_utils.decode_split_names(examples_in.split_names)
    examples_out.split_names = examples_in.split_names
    examples_utils.set_payload_format(examples_out, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples_out, 'tfrecords_gzip')
    annotate_examples(examples_in.uri, split_names, examples_out.uri, annotations.uri, config)


def run_standalone(examples_dir: str, output_dir: str, config: AnnotatorConfig,
                   split_names: Optional[List[str]] = None) -> Dict[str, Any]:
  """The executor outside a pipeline (tests, benchmarks, `ingest`-then-annotate runs).

  Reads `<examples_dir>/Split-*/`, writes `<output_dir>/examples/Split-*/` and
  `<output_dir>/annotations/`; returns the report.
  """
  split_names = split_names or [s for s in features.SPLITS
                                if tf.io.gfile.isdir(example_files.split_dir(examples_dir, s))]
  return annotate_examples(examples_dir, split_names, os.path.join(output_dir, 'examples'),
                           os.path.join(output_dir, 'annotations'), config)
