"""`fakefaces gate`: the pipeline's Evaluator + FairnessGate as one CI command.

Runs TFMA (`tfma.run_model_analysis`, Beam DirectRunner) with the EvalConfig
the pipeline's Evaluator uses, at the model's own decision threshold (the
operating point exported with it), judges the result with the FairnessGate's code,
writes OUT/report.json and OUT/report.html (TFMA's output in OUT/evaluation)
and prints a one-screen summary.

Exit codes: 0 blessed; 1 failed (accuracy threshold or fairness bound);
2 insufficient evidence (e.g. examples of one class, where AUC and balanced
accuracy are undefined), or bad input (the message names the file or field).
"""

import os
import sys

from fakefaces.components.shared import thresholds as thresholds_lib
from fakefaces.pipeline import config as config_lib

EXIT_PASS, EXIT_FAIL, EXIT_INSUFFICIENT_OR_BAD_INPUT = 0, 1, 2
EVALUATION_DIR = 'evaluation'
DEFAULT_BEAM_ARGS = ('--direct_running_mode=in_memory', '--direct_num_workers=1')


class BadInput(ValueError):
  """An input file or field the gate cannot use; the message names it."""


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'gate', help='evaluate a SavedModel and apply the fairness gate (CI: exit 0 pass, '
      '1 fail, 2 insufficient evidence or bad input)',
      description='Run the same TFMA evaluation and fairness judgement as the pipeline\'s '
      'Evaluator and FairnessGate on a SavedModel, outside any pipeline. Writes OUT/report.json, '
      'OUT/report.html and TFMA\'s output under OUT/evaluation. Exit code 0: blessed; 1: an '
      'accuracy threshold or fairness bound failed; 2: insufficient evidence or bad input.')
  p.add_argument('--model', required=True,
                 help='SavedModel folder with the `from_examples` signature (a Trainer or '
                 'Pusher output)')
  p.add_argument('--examples', required=True,
                 help='TFRecord file pattern of tf.Examples (gzipped or not, as FaceExampleGen '
                 'writes them), or a pipeline config YAML whose `ingest:` sources are ingested '
                 '(into OUT/examples and OUT/ingest_report, as `fakefaces ingest` writes them) '
                 'and whose --split is evaluated')
  p.add_argument('--thresholds', default=config_lib.DEFAULT_THRESHOLDS,
                 help='thresholds YAML (default: pipeline/configs/thresholds.yaml, the one the '
                 'pipeline uses, as installed with the package)')
  p.add_argument('--out', required=True, help='output folder for the reports')
  p.add_argument('--split', default='test',
                 help='split to evaluate when --examples is a config YAML (default: %(default)s)')
  p.add_argument('--annotations',
                 help="the DemographicAnnotator's output folder (report.json) when the examples "
                 'carry predicted demographics: checks resting on them are marked and held to '
                 'min_annotator_precision (without it they are judged as if human-labelled)')
  p.add_argument('--beam-arg', action='append', dest='beam_args', metavar='ARG',
                 help='Beam pipeline argument, repeatable, written with "=" '
                 '(--beam-arg=--direct_num_workers=2); default: ' + ' '.join(DEFAULT_BEAM_ARGS))
  p.set_defaults(func=_run)


def _run(args) -> int:
  try:
    thresholds = config_lib.load_thresholds(args.thresholds)
    thresholds_lib.validate_thresholds(thresholds, os.path.basename(args.thresholds))
    check_model(args.model)
    beam_args = list(args.beam_args or DEFAULT_BEAM_ARGS)
    pattern = resolve_examples(args.examples, args.split, args.out, beam_args)
  except (BadInput, config_lib.ConfigError) as e:
    print(f'fakefaces gate: bad input: {e}', file=sys.stderr)
    return EXIT_INSUFFICIENT_OR_BAD_INPUT
  from fakefaces.components.shared import reports  # pylint: disable=g-import-not-at-top
  annotation_report = None
  if args.annotations:
    try:
      annotation_report = reports.read_report(args.annotations)
    except (OSError, ValueError) as e:
      print(f'fakefaces gate: bad input: --annotations {args.annotations}: unreadable report.json '
            f'({e})', file=sys.stderr)
      return EXIT_INSUFFICIENT_OR_BAD_INPUT
    if annotation_report is None:
      print(f'fakefaces gate: bad input: --annotations {args.annotations}: no report.json there '
            '(pass the DemographicAnnotator\'s annotations folder)', file=sys.stderr)
      return EXIT_INSUFFICIENT_OR_BAD_INPUT
  report = run_gate(args.model, pattern, thresholds, args.out, beam_args, annotation_report)
  from fakefaces.components.fairness_gate import evaluation  # pylint: disable=g-import-not-at-top
  print(evaluation.format_summary(report))
  print(f"  reports: {os.path.join(args.out, reports.REPORT_JSON)}, "
        f"{os.path.join(args.out, evaluation.REPORT_HTML)}")
  return exit_code(report['verdict'])


def exit_code(verdict: str) -> int:
  from fakefaces.components.fairness_gate import fairness  # pylint: disable=g-import-not-at-top
  return {fairness.PASS: EXIT_PASS, fairness.FAIL: EXIT_FAIL}.get(
      verdict, EXIT_INSUFFICIENT_OR_BAD_INPUT)


def check_model(model_dir: str) -> float:
  """The folder holds a SavedModel with the signature TFMA feeds and a decision threshold
  (returned)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fakefaces.components.shared import serving_contract  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(os.path.join(model_dir, 'saved_model.pb')):
    raise BadInput(f'--model {model_dir}: no saved_model.pb there (pass the SavedModel folder, '
                   'e.g. <Trainer model uri>/Format-Serving or a Pusher version folder)')
  try:
    signatures = tf.saved_model.load(model_dir).signatures
  except Exception as e:  # a damaged or partial copy: TF raises many kinds  # pylint: disable=broad-except
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise BadInput(f'--model {model_dir}: cannot be loaded as a SavedModel ({first_line})') from e
  if serving_contract.EXAMPLES_SIGNATURE not in signatures:
    raise BadInput(f'--model {model_dir}: no `{serving_contract.EXAMPLES_SIGNATURE}` signature (has '
                   f'{sorted(signatures)}); export it with fakefaces.components.trainer.export')
  try:
    return serving_contract.read_decision_threshold(model_dir)
  except ValueError as e:
    raise BadInput(f'--model {e}') from e


def _check_examples(path: str) -> None:
  """Every record of the file reads (TFMA would fail mid-run with a Beam traceback on a
  truncated copy), and the first is a tf.Example with the label and image features."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from fakefaces.components.shared import example_files, features  # pylint: disable=g-import-not-at-top
  record, count = None, 0
  try:
    for count, value in enumerate(example_files.records(path), start=1):
      record = value if record is None else record
  except tf.errors.OpError as e:
    first_line = (e.message.strip().splitlines() or [type(e).__name__])[0]
    raise BadInput(f'--examples {path}: truncated or corrupt TFRecord file: record {count + 1} '
                   f'cannot be read ({first_line})') from e
  if record is None:
    raise BadInput(f'--examples {path}: the file holds no records')
  example = tf.train.Example.FromString(record.numpy())
  missing = [name for name in (features.IMAGE, features.LABEL)
             if name not in example.features.feature]
  if missing:
    raise BadInput(f'--examples {path}: the first tf.Example lacks feature(s) {missing}')


def resolve_examples(examples: str, split: str, out_dir: str, beam_args) -> str:
  """A TFRecord file pattern for `examples` (ingesting a config's sources first)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if examples.endswith(('.yaml', '.yml')):
    return _ingest(examples, split, out_dir, beam_args)
  files = sorted(tf.io.gfile.glob(examples))
  if not files:
    raise BadInput(f'--examples {examples}: no file matches this pattern')
  for path in files:
    _check_examples(path)
  return examples


def _ingest(config_path: str, split: str, out_dir: str, beam_args) -> str:
  """Ingests the config's sources into OUT (as `fakefaces ingest` does); the split's pattern."""
  from fakefaces.components.shared import example_files, features  # pylint: disable=g-import-not-at-top
  from fakefaces.components.face_example_gen import executor  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load_config(config_path)
  except config_lib.ConfigError as e:
    raise BadInput(f'--examples {config_path} (read as a pipeline config): {e}') from e
  if split not in features.SPLITS:
    raise BadInput(f'--split {split!r}: must be one of {list(features.SPLITS)}')
  if not config.ingest.sources:
    raise BadInput(f'--examples {config_path}: ingest.sources is empty')
  try:
    executor.validate_config(config.ingest)
  except ValueError as e:
    raise BadInput(f'--examples {config_path}: {e}') from e
  executor.run_standalone(config.ingest, out_dir, list(beam_args))
  return resolve_examples(os.path.join(example_files.split_dir(os.path.join(out_dir, executor.EXAMPLES_DIR), split), '*'),
                          split, out_dir, beam_args)


def run_gate(model_dir: str, examples_pattern: str, thresholds, out_dir: str, beam_args,
             annotation_report=None):
  """Evaluates with TFMA at the model's decision threshold, judges, writes the reports;
  returns the report dict."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  from fakefaces.components.fairness_gate import eval_config, evaluation  # pylint: disable=g-import-not-at-top
  from fakefaces.components.shared import serving_contract  # pylint: disable=g-import-not-at-top
  point = serving_contract.read_operating_point(model_dir)
  decision_threshold = float(point[serving_contract.DECISION_THRESHOLD_FIELD])
  config = eval_config.build_eval_config(thresholds, decision_threshold)
  evaluation_dir = os.path.join(out_dir, EVALUATION_DIR)
  tfma.run_model_analysis(
      eval_shared_model=tfma.default_eval_shared_model(model_dir, eval_config=config),
      eval_config=config, data_location=examples_pattern, file_format='tfrecords',
      output_path=evaluation_dir, pipeline_options=PipelineOptions(list(beam_args)))
  report = evaluation.build_report(evaluation_dir, thresholds,
                                   evaluator_blessed=evaluation.validation_ok(evaluation_dir),
                                   model_uri=os.path.abspath(model_dir),
                                   decision_threshold=decision_threshold,
                                   annotation_report=annotation_report, operating_point=point)
  evaluation.write_report(report, out_dir)
  return report
