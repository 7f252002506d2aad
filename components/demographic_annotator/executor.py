"""DemographicAnnotator executor: fills missing gender/race/age from face descriptors.

In process, in two passes over the examples: (1) the dlib descriptor of every
face that needs one (faces lacking a demographic, and the human-labelled faces
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
import json
import os
import pickle
import time
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_executor
from tfx.proto import example_gen_pb2
from tfx import types
from tfx.types import artifact_utils

from fakefaces.components import component_keys as keys, example_files, features
from fakefaces.components.reports import write_report
from fakefaces.components.config_base import from_json, to_json
from fakefaces.components.demographic_annotator import annotate
from fakefaces.components.face_preparation import descriptors
from fakefaces.components.demographic_annotator.config import AnnotatorConfig, validate

CLASSIFIERS_FILE = 'classifiers.pkl'
PREDICTIONS_FILE = 'predictions.csv'
TFRECORD_NAME = 'data_tfrecord-00000-of-00001.gz'
ATTRIBUTES = annotate.ATTRIBUTES
PREDICTION_COLUMNS = (['image_id', 'split', 'label', 'demographics_source'] +
                      [f'{a}_{k}' for a in ATTRIBUTES for k in ('value', 'source', 'proposal',
                                                               'confidence')])


def _records(files: List[str]):
  for record in example_files.records(files):
    yield record.numpy()


class _Progress:

  def __init__(self, what: str, interval: float):
    self._what, self._interval = what, interval
    self._start = self._last = time.monotonic()
    self.done = 0

  def tick(self):
    self.done += 1
    now = time.monotonic()
    if now - self._last >= self._interval:
      self._last = now
      logging.info('DemographicAnnotator: %s %d faces in %.0fs (%.1f/s)', self._what, self.done,
                   now - self._start, self.done / max(now - self._start, 1e-9))


def annotate_examples(input_uri: str, split_names: List[str], output_uri: str,
                      annotations_uri: str, config: AnnotatorConfig) -> Dict[str, Any]:
  """Both passes; writes the outputs and returns the report."""
  validate(config)
  started = time.monotonic()
  files = {split: example_files.split_files(input_uri, split) for split in split_names}
  lacking = faces_lacking_demographics(files) if config.enabled else {}
  # Describing the labelled faces only serves to fill the unlabelled ones: with none
  # to fill (the demo data: every image carries its labels) the work is skipped.
  active = config.enabled and sum(lacking.values()) > 0
  if config.enabled and not active:
    logging.info('DemographicAnnotator: skipped: every face of %s has its gender, race and age '
                 'labels, so there is nothing to fill; the examples pass through unchanged',
                 '/'.join(split_names))
  describer = descriptors.FaceDescriber() if active else None
  rows: Dict[str, List[Dict[str, Any]]] = {}
  vectors: Dict[str, np.ndarray] = {}
  describe_failures: List[Dict[str, str]] = []
  from_ingestion = 0
  progress = _Progress('described', config.progress_interval_seconds)
  # Pass 1: descriptors where they are needed.
  for split in split_names:
    split_rows, split_vectors = [], []
    for serialized in _records(files[split]):
      example = tf.train.Example.FromString(serialized)
      human = annotate.human_labels(example)
      row = {'image_id': annotate.string_feature(example, features.IMAGE_ID),
             'label': int(example.features.feature[features.LABEL].int64_list.value[0])
                      if example.features.feature[features.LABEL].int64_list.value else -1,
             'human': human, 'described': False}
      needed = describer is not None and (
          features.UNKNOWN in human.values() or
          (split in (config.train_split, config.test_split) and
           any(v != features.UNKNOWN for v in human.values())))
      vector = np.full(descriptors.DESCRIPTOR_SIZE, np.nan, dtype=np.float32)
      if needed:
        stored = descriptors.from_example(example)
        if stored is not None:  # taken at ingestion, before the treatment
          vector, row['described'] = stored, True
          from_ingestion += 1
        else:
          try:
            image = example.features.feature[features.IMAGE].bytes_list.value[0]
            vector = describer.describe(image)
            row['described'] = True
          except Exception as e:  # pylint: disable=broad-except  (one bad face never stops a run)
            describe_failures.append({'image_id': row['image_id'], 'split': split,
                                      'reason': f'{type(e).__name__}: {e}'})
          progress.tick()
      split_rows.append(row)
      split_vectors.append(vector)
    rows[split] = split_rows
    vectors[split] = (np.stack(split_vectors) if split_vectors else
                      np.zeros((0, descriptors.DESCRIPTOR_SIZE), np.float32))
  describe_seconds = time.monotonic() - started

  # Train on the train split's human labels, score the test split's.
  def labelled(split):
    keep = np.array([r['described'] for r in rows.get(split, [])], dtype=bool)
    return keep, {a: [r['human'][a] for r, k in zip(rows.get(split, []), keep) if k]
                  for a in ATTRIBUTES}

  train_keep, train_labels = labelled(config.train_split)
  classifiers, training = (annotate.train(vectors[config.train_split][train_keep], train_labels,
                                          config.min_train_per_class, config.regularization_c)
                           if active and config.train_split in rows else
                           ({a: None for a in ATTRIBUTES},
                            {a: {'not_trained': 'annotator disabled, nothing to fill, or no '
                                                'train split'}
                             for a in ATTRIBUTES}))
  predictions = {}
  for split in split_names:
    keep = np.array([r['described'] for r in rows[split]], dtype=bool)
    predicted = annotate.predict(classifiers, vectors[split][keep])
    per_row = [dict() for _ in rows[split]]
    for attribute, (values, confidences) in predicted.items():
      for i, value, confidence in zip(np.flatnonzero(keep), values, confidences):
        per_row[i][attribute] = (value, float(confidence))
    predictions[split] = per_row
  if active and config.cross_fit_folds and config.train_split in rows:
    # The labelled faces the classifiers were fitted on get out-of-fold proposals instead.
    out_of_fold = annotate.cross_fit(vectors[config.train_split][train_keep], train_labels,
                                     config.min_train_per_class, config.regularization_c,
                                     config.cross_fit_folds, config.seed)
    for attribute, (values, confidences) in out_of_fold.items():
      for i, value, confidence in zip(np.flatnonzero(train_keep), values, confidences):
        if rows[config.train_split][i]['human'][attribute] != features.UNKNOWN:
          predictions[config.train_split][i][attribute] = (value, float(confidence))
  thresholds = {a: config.min_confidence(a) for a in ATTRIBUTES}
  evaluation, test_pairs = {}, []
  if config.test_split in rows:
    test_rows, test_predictions = rows[config.test_split], predictions[config.test_split]
    scored = [(r, p) for r, p in zip(test_rows, test_predictions) if p]
    for attribute in ATTRIBUTES:
      evaluation[attribute] = annotate.evaluate(
          [r['human'][attribute] for r, _ in scored],
          [p.get(attribute, (features.UNKNOWN, 0.0))[0] for _, p in scored],
          [p.get(attribute, (features.UNKNOWN, 0.0))[1] for _, p in scored],
          thresholds[attribute], features.VOCABULARIES[attribute])
    # (human, thresholded prediction) per labelled test face: the FairnessGate measures
    # from these how often a face predicted into a group really belongs to it.
    for r, p in scored:
      if all(v != features.UNKNOWN for v in r['human'].values()):
        test_pairs.append([r['human'][a] for a in ATTRIBUTES] +
                          [annotate.thresholded(*p.get(a, (features.UNKNOWN, 0.0)),
                                                thresholds[a]) for a in ATTRIBUTES])

  # Pass 2: rewrite every split.
  filled = collections.Counter()
  evaluated = collections.Counter()
  prediction_rows = []
  for split in split_names:
    split_dir = example_files.split_dir(output_uri, split)
    tf.io.gfile.makedirs(split_dir)
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(split_dir, TFRECORD_NAME), options) as writer:
      for i, serialized in enumerate(_records(files[split])):
        example = tf.train.Example.FromString(serialized)
        proposal = predictions[split][i]
        example, sources = annotate.annotate_example(example, proposal, thresholds)
        writer.write(example.SerializeToString(deterministic=True))
        values = annotate.human_labels(example)
        row = rows[split][i]
        for attribute in ATTRIBUTES:
          filled[(split, attribute, sources[attribute])] += 1
        if split == config.test_split:
          evaluated[(row['label'],) + tuple(values[a] for a in ATTRIBUTES) +
                    tuple(sources[a] for a in ATTRIBUTES)] += 1
        csv_row = {'image_id': row['image_id'], 'split': split, 'label': row['label'],
                   'demographics_source': annotate.overall_source(sources)}
        for attribute in ATTRIBUTES:
          value, confidence = proposal.get(attribute, (features.UNKNOWN, 0.0))
          csv_row.update({f'{attribute}_value': values[attribute],
                          f'{attribute}_source': sources[attribute],
                          f'{attribute}_proposal': value,
                          f'{attribute}_confidence': f'{confidence:.4f}'})
        prediction_rows.append(csv_row)

  report = {
      'config': json.loads(to_json(config)),
      'descriptor': 'dlib_face_recognition_resnet_model_v1 on the 5-point shape of the fixed '
                    'aligned-face box (components/face_preparation/descriptors.py)',
      'descriptors_from_ingestion': from_ingestion,
      'evaluation_protocol': (
          f'{config.cross_fit_folds}-fold cross-fitting on the {config.test_split} split\'s human '
          'labels (each face scored by classifiers fitted without it)' if config.cross_fit_folds
          else f'fitted on {config.train_split}, scored on {config.test_split}'),
      # Faces lacking at least one demographic, per split; when all are 0 nothing was
      # described or trained ('skipped' says why).
      'faces_lacking_demographics': lacking,
      'skipped': (None if active else
                  'annotator disabled' if not config.enabled else
                  'every face has human gender, race and age labels: nothing to fill'),
      'faces_described': progress.done,
      'describe_seconds': round(describe_seconds, 1),
      'faces_per_second': round(progress.done / describe_seconds, 2) if describe_seconds else None,
      'describe_failures': describe_failures,
      'training': training,
      'test_split': config.test_split,
      'evaluation': evaluation,
      'small_data': annotate.small_class_warnings(training, evaluation),
      'filled': {split: {attribute: {s: filled[(split, attribute, s)]
                                     for s in features.DEMOGRAPHICS_SOURCES}
                         for attribute in ATTRIBUTES} for split in split_names},
      # The FairnessGate's evidence: who is in each group of the test split, by source.
      'test_pairs_columns': [f'true_{a}' for a in ATTRIBUTES] + [f'predicted_{a}'
                                                                 for a in ATTRIBUTES],
      'test_pairs': test_pairs,
      'evaluated_columns': ['label'] + list(ATTRIBUTES) + [f'{a}_source' for a in ATTRIBUTES] +
                           ['count'],
      'evaluated': [list(key) + [n] for key, n in sorted(evaluated.items())],
  }
  write_outputs(annotations_uri, report, classifiers, prediction_rows)
  for attribute, result in (evaluation.items() if active else ()):
    logging.info('DemographicAnnotator: %s accuracy %s on %d labelled %s faces (coverage %s at '
                 'confidence >= %s, accuracy there %s)', attribute, result['accuracy'],
                 result['n'], config.test_split, result['coverage'], result['min_confidence'],
                 result['confident_accuracy'])
  return report


def faces_lacking_demographics(files: Dict[str, List[str]]) -> Dict[str, int]:
  """Per split, how many faces lack at least one of gender, race and age (a quick read)."""
  return {split: sum(features.UNKNOWN in annotate.human_labels(
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
