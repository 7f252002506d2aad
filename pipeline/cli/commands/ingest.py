"""`fakefaces ingest`: run only the ingestion (FaceExampleGen's executor) into a folder."""

import json
import os
import sys

from fakefaces.pipeline.cli.commands.run import add_beam_flag, add_config_flags, config_from_args


def register(subparsers) -> None:
  p = subparsers.add_parser(
      'ingest', help='detect, align and convert the configured sources to TFRecords',
      description='Run FaceExampleGen outside the pipeline: writes OUT/examples/Split-*/ '
      'and OUT/ingest_report/report.json, which accounts for every input file. '
      'Exit 1 when more inputs failed than ingest.max_failure_rate allows.')
  add_config_flags(p, overrides=False)
  add_beam_flag(p)
  p.add_argument('--out', required=True, help='output folder')
  p.set_defaults(func=_run)


def _run(args) -> int:
  from fakefaces.components.shared import reports
  from fakefaces.components.face_example_gen import executor
  from fakefaces.pipeline.beam_workers import local_beam_args
  config = config_from_args(args)
  beam_args = local_beam_args(config.beam_pipeline_args, config.beam_workers, config.ingest)
  try:
    report = executor.run_standalone(config.ingest, args.out,
                                     beam_args.pipeline + beam_args.ingestion)
  except RuntimeError as e:  # the failure-rate check; the report is still written
    print(f'fakefaces ingest: {e}', file=sys.stderr)
    return 1
  print(json.dumps({'total': report['total'], 'counts': report['counts']}, indent=2))
  print(f'report: {os.path.join(args.out, executor.REPORT_DIR, reports.REPORT_JSON)}')
  return 0
