"""A finished run's gate judged again with the labelled-only rule, from the run's artifacts.

The FairnessGate judges a check on faces whose grouping attributes are labelled
(human or prompted) when the annotator's precision for its groups fails the rule
(components/fairness_gate/fairness.py). That needs the Evaluator's slices by
`labelled_attributes`, which a run made before the annotator wrote the feature
lacks. This script rebuilds them without re-running the annotator or the
Evaluator (the Evaluator ran the CLIP tower on the 918 test faces in 410 s):

* the annotated test split (DemographicAnnotator's output): per face its label,
  source, gender/race/age and, from the confidences, which attributes are
  labelled (`annotate.attribute_sources`, what the annotator now writes);
* the model's score per face: the head on the cached tower embeddings
  (`run_groups.head_scores`, checked against the served model on 8 faces);
* the per-slice counts from those scores (`fairness.slices_from_predictions`),
  checked equal to the run's Evaluator counts on every slice it computed;
* the gate's judgement with and without the labelled slices (`assemble_report`,
  the annotator's report.json, the run's thresholds file; per-source AUC from the
  Evaluator's rows).

    nice -n 10 .venv/bin/python bench/labelled_rejudge.py --config /tmp/s12run/run.yaml \
        --out bench/results/labelled_rejudge.json

Prints the check counts per status both ways, how each check moved, and the
checks judged on labelled faces only.
"""

import argparse
import collections
import json
import os
import sys
from typing import Dict

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_groups  # pylint: disable=g-import-not-at-top,wrong-import-position

from fakefaces.components.demographic_annotator import annotate  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.components.fairness_gate import eval_config, evaluation, fairness  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.components.shared import component_keys as keys, example_files, features, reports, serving_contract  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.components.trainer import backbone  # pylint: disable=g-import-not-at-top,wrong-import-position
from fakefaces.pipeline import config as config_lib, run_metadata  # pylint: disable=g-import-not-at-top,wrong-import-position

COLUMNS = (features.GENDER, features.RACE, features.AGE, features.SOURCE)


def annotated_test_split(store) -> Dict[str, list]:
  """Columns of the annotated test split: image bytes, label, COLUMNS, labelled_attributes."""
  [uri] = run_metadata.output_uris(store, 'DemographicAnnotator')['annotated_examples']
  columns = collections.defaultdict(list)
  for record in example_files.records(example_files.split_files(uri, features.TEST)):
    example = tf.train.Example.FromString(record.numpy())
    fields = example.features.feature
    columns[features.IMAGE].append(fields[features.IMAGE].bytes_list.value[0])
    columns[features.LABEL].append(int(fields[features.LABEL].int64_list.value[0]))
    for name in COLUMNS:
      columns[name].append(annotate.string_feature(example, name))
    columns[features.LABELLED_ATTRIBUTES].append(
        features.labelled_attributes_value(annotate.attribute_sources(example)))
  return dict(columns)


def moves(old: Dict[str, object], new: Dict[str, object]) -> Dict[str, int]:
  before = {(c['grouping'], c['metric']): c['status'] for c in old['checks']}
  return dict(sorted(collections.Counter(
      f"{before[(c['grouping'], c['metric'])]} -> {c['status']}" for c in new['checks']).items()))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='the run\'s pipeline YAML')
  parser.add_argument('--out', help='JSON to write')
  args = parser.parse_args(argv)
  config = config_lib.load_config(args.config)
  thresholds = config_lib.load_thresholds(config.thresholds_file)
  store = run_metadata.open_store(config.metadata_path)
  columns = annotated_test_split(store)
  embedder = backbone.Embedder(config.train)
  embeddings = backbone.head_features(embedder, columns[features.IMAGE], config.train)
  train_images = run_groups.split_examples(config.metadata_path, features.TRAIN)[features.IMAGE]
  train_embeddings = backbone.head_features(embedder, train_images, config.train)
  print(f'{len(embeddings)} test faces; tower computed {embedder.cache.computed}, '
        f'reused {embedder.cache.reused}', flush=True)
  [model_uri] = run_metadata.output_uris(store, 'Trainer')['model']
  model_dir = os.path.join(model_uri, 'Format-Serving')
  threshold = float(serving_contract.read_operating_point(model_dir)[
      serving_contract.DECISION_THRESHOLD_FIELD])
  scores = run_groups.head_scores(config, model_dir, embeddings, train_embeddings)
  served = run_groups.served_scores(model_dir, columns[features.IMAGE][:run_groups.CHECKED])
  gap = float(np.abs(served - scores[:run_groups.CHECKED]).max())
  print(f'head on cached embeddings vs the served model: max |diff| {gap:.2e}')

  labels = columns[features.LABEL]
  crosses = [(features.RACE, features.GENDER)]
  plain = fairness.slices_from_predictions(labels, scores, {n: columns[n] for n in COLUMNS},
                                           threshold, crosses)
  [evaluation_uri] = run_metadata.output_uris(store, 'Evaluator')['evaluation']
  evaluator_counts, rows = evaluation.load_evaluation(evaluation_uri, thresholds, threshold)
  differing = sorted(evaluation.slice_label(k) for k, c in evaluator_counts.items()
                     if plain.get(k) != c)
  print(f'slices equal to the Evaluator\'s: {len(evaluator_counts) - len(differing)} of '
        f'{len(evaluator_counts)}' + (f'; differing: {differing[:5]}' if differing else ''))
  labelled = fairness.slices_from_predictions(
      labels, scores, {n: columns[n] for n in COLUMNS + (features.LABELLED_ATTRIBUTES,)},
      threshold, crosses + [keys_ for keys_ in eval_config.LABELLED_SLICES])
  [annotations_uri] = run_metadata.output_uris(store, 'DemographicAnnotator')['annotations']
  annotation_report = reports.read_report(annotations_uri)
  judged = {}
  for name, slices in (('without', plain), ('with', labelled)):
    judged[name] = evaluation.assemble_report(slices, rows, thresholds, True, [], model_dir,
                                              evaluation_uri, annotation_report,
                                              decision_threshold=threshold)
  [report_uri] = run_metadata.output_uris(store, 'FairnessGate')[keys.REPORT_KEY]
  run_report = reports.read_report(report_uri)
  same_as_run = ([(c['grouping'], c['metric'], c['status']) for c in run_report['checks']] ==
                 [(c['grouping'], c['metric'], c['status']) for c in judged['without']['checks']])
  print(f'without labelled slices, every check as the run\'s gate judged it: {same_as_run}')
  statuses = (fairness.PASS, fairness.FAIL, fairness.INSUFFICIENT, fairness.NOT_MEASURABLE)
  print(f"{'labelled slices':16s} {'verdict':22s} " + ' '.join(f'{s:>22s}' for s in statuses)
        + f" {'labelled only':>14s}")
  for name, report in judged.items():
    counted = collections.Counter(c['status'] for c in report['checks'])
    print(f"{name:16s} {report['verdict']:22s} " + ' '.join(f'{counted[s]:22d}' for s in statuses)
          + f" {len(report['labelled_only']):14d}")
  moved = moves(judged['without'], judged['with'])
  print('moves (without -> with):')
  for move, n in moved.items():
    print(f'  {move}: {n}')
  labelled_only = [c for c in judged['with']['checks']
                   if c.get('judged_on') == fairness.LABELLED_ONLY]
  by_status = collections.Counter((c['all_examples']['status'], c['status']) for c in labelled_only)
  print('judged on labelled faces only, (on all examples -> on labelled faces):')
  for (before, after), n in sorted(by_status.items()):
    print(f'  {before} -> {after}: {n}')
  for c in labelled_only:
    if c['status'] in (fairness.PASS, fairness.FAIL):
      print(f"  - {c['grouping']}: {c['metric']} {c['status']} {c['value']} "
            f"(all examples: {c['all_examples']['status']} {c['all_examples']['value']}; "
            f"{fairness.label_kinds(c)})")
  lacking = collections.Counter(
      run_groups.causes(c)[0] for c in labelled_only if c['status'] == fairness.INSUFFICIENT)
  print(f'labelled-only checks still insufficient, by first cause: {dict(lacking)}')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump({'config': args.config, 'model': model_dir, 'decision_threshold': threshold,
                 'test_faces': len(labels), 'served_check_max_diff': gap,
                 'slices_differing_from_evaluator': differing, 'same_as_run_gate': same_as_run,
                 'labelled_attributes': dict(collections.Counter(
                     columns[features.LABELLED_ATTRIBUTES])),
                 'status_counts': {name: dict(collections.Counter(
                     c['status'] for c in report['checks'])) for name, report in judged.items()},
                 'moves': moved,
                 'labelled_only': {f'{b} -> {a}': n for (b, a), n in sorted(by_status.items())},
                 'labelled_only_insufficient_causes': dict(lacking),
                 'checks': [{k: c.get(k) for k in ('grouping', 'metric', 'status', 'value',
                                                   'judged_on', 'all_examples', 'reason')}
                            for c in judged['with']['checks']]}, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
