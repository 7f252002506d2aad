"""The `fakefaces` command line: every command has help; ingest runs and accounts."""

import json
import os

import pytest

from fakefaces.pipeline.cli import cli


def _commands():
  parser = cli.build_parser()
  (subparsers,) = [a for a in parser._actions if a.dest == 'command']  # pylint: disable=protected-access
  return sorted(subparsers.choices)


def test_every_command_has_help(capsys):
  commands = _commands()
  assert {'demo-data', 'run', 'ingest', 'gate', 'serve', 'predict', 'report',
          'compile-kubeflow'} <= set(commands)
  for command in commands:
    with pytest.raises(SystemExit) as exit_info:
      cli.main([command, '--help'])
    assert exit_info.value.code == 0
    assert command in capsys.readouterr().out


def _ingest_config(tmp_path, manifest, max_failure_rate):
  path = tmp_path / 'config.yaml'
  path.write_text(
      'ingest:\n'
      f'  sources: [{{kind: manifest, path: "{manifest}", name: demo}}]\n'
      '  face: {align: none, output_size: 64}\n'
      f'  max_failure_rate: {max_failure_rate}\n')
  return str(path)


def test_ingest_writes_splits_and_report(tmp_path, demo_dataset, capsys):
  out = tmp_path / 'out'
  code = cli.main(['ingest', '--config', _ingest_config(tmp_path, demo_dataset, 0.5),
                   '--out', str(out)])
  assert code == 0
  with open(out / 'ingest_report' / 'report.json') as f:
    report = json.load(f)
  assert report['counts']['written'] == report['total'] == 160
  # What the model card's data and licence text are generated from.
  assert report['inputs']['sources'] == [{'name': 'demo', 'kind': 'manifest', 'path': str(demo_dataset),
                                          'role': 'train', 'align': 'none', 'demographics': 'human'}]
  for split in ('train', 'eval', 'test'):
    assert os.listdir(out / 'examples' / f'Split-{split}')
  assert '"written": 160' in capsys.readouterr().out


def test_ingest_fails_with_exit_1_when_too_many_inputs_fail(tmp_path, capsys):
  manifest = tmp_path / 'manifest.csv'
  (tmp_path / 'broken.jpg').write_bytes(b'not an image')
  manifest.write_text('path,label\nbroken.jpg,real\nmissing.jpg,fake\n')
  out = tmp_path / 'out'
  code = cli.main(['ingest', '--config', _ingest_config(tmp_path, manifest, 0.1),
                   '--out', str(out)])
  assert code == 1
  last = capsys.readouterr().err.strip().splitlines()[-1]  # after the INFO log lines
  assert last.startswith('fakefaces ingest: ') and 'max_failure_rate' in last, last
  with open(out / 'ingest_report' / 'report.json') as f:
    report = json.load(f)
  names = {os.path.basename(row['path']) for row in report['not_written']}
  assert names == {'broken.jpg', 'missing.jpg'}


def test_a_config_error_exits_2_naming_the_field_without_a_traceback(tmp_path, capsys):
  config = tmp_path / 'config.yaml'
  config.write_text('ingest:\n  sources: [{kind: manifest, path: m.csv}]\n  align: dlib\n')
  code = cli.main(['ingest', '--config', str(config), '--out', str(tmp_path / 'out')])
  assert code == 2
  printed = capsys.readouterr().err
  assert 'ingest.align has moved to ingest.face.align' in printed
  assert 'Traceback' not in printed


def test_beam_arg_replaces_the_configs_beam_args(tmp_path):
  from fakefaces.pipeline.cli.commands import run  # pylint: disable=g-import-not-at-top
  parser = cli.build_parser()
  config = _ingest_config(tmp_path, 'manifest.csv', 0.5)
  portable = ['--runner=PortableRunner', '--job_endpoint=localhost:8099']
  for command in ('run', 'ingest'):
    argv = [command, '--config', config] + [f'--beam-arg={a}' for a in portable]
    argv += ['--out', 'out'] if command == 'ingest' else []
    assert run.config_from_args(parser.parse_args(argv)).beam_pipeline_args == portable
  kept = run.config_from_args(parser.parse_args(['run', '--config', config]))
  assert kept.beam_pipeline_args == ['--direct_running_mode=in_memory', '--direct_num_workers=1']


@pytest.mark.parametrize('argv, says', [
    (['compile-kubeflow', '--config', '{cluster}', '--output', '{tmp}/job.json'],
     'invalid configuration: kubeflow.image: no container image'),
    (['label', '--annotations', '{tmp}/no_annotations', '--out', '{tmp}/labels.csv'],
     'no predictions.csv under'),
    (['report', '--data', '{tmp}/no_data', '--out', '{tmp}/report'],
     'failed: no manifest.csv in'),
])
def test_bad_input_is_one_line_naming_the_command_and_exit_2(tmp_path, capsys, argv, says):
  """Every command's bad input reads `fakefaces COMMAND: ...`, like `run`'s and `gate`'s."""
  cluster = tmp_path / 'cluster.yaml'
  cluster.write_text('ingest:\n  sources:\n    - {kind: manifest, path: gs://b/m.csv}\n')
  argv = [a.format(tmp=tmp_path, cluster=cluster) for a in argv]
  assert cli.main(argv) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'fakefaces {argv[0]}'), lines
  assert says in lines[0], lines


@pytest.mark.parametrize('command, rest', [('ingest', ['--out', 'out']),
                                           ('label', ['--annotations', 'a', '--out', 'l.csv'])])
@pytest.mark.parametrize('flag', ['--pipeline-root', '--serving-model-dir', '--thresholds',
                                  '--epochs'])
def test_ingest_and_label_refuse_the_flags_of_a_whole_run(command, rest, flag, capsys):
  """They read only `ingest:`: an --epochs or --thresholds they accepted would do nothing."""
  with pytest.raises(SystemExit) as exit_info:
    cli.build_parser().parse_args([command, '--config', 'c.yaml', flag, '3'] + rest)
  assert exit_info.value.code == 2
  assert f'unrecognized arguments: {flag} 3' in capsys.readouterr().err
  for command_with_them in ('run', 'compile-kubeflow'):
    cli.build_parser().parse_args([command_with_them, flag, '3'])


@pytest.mark.parametrize('argv, named', [
    (['web', '--port', '99999'], 'port 99999 is not in 0-65535'),
    (['web', '--port', '-5'], 'port -5 is not in 0-65535'),
    (['web', '--server', '127.0.0.1:99999'], "port 99999 of '127.0.0.1:99999' is not in 1-65535"),
    (['predict', 'x.jpg', '--server', 'localhost:70000'], 'is not in 1-65535'),
    (['serve', '--model-base-path', '.', '--port', '65536'], 'port 65536 is not in 0-65535'),
    (['serve', '--model-base-path', '.', '--rest-port', '-2'], 'port -2 is not in 0-65535'),
    (['serve', '--model-base-path', '.', '--port', 'eight'], "port 'eight' is not a whole number"),
    (['demo-data', '--num-images', '-3'], '-3 is below the smallest allowed, 2'),
    (['web', '--max-upload-bytes', '-1'], '-1 is below the smallest allowed, 1'),
    (['predict', 'x.jpg', '--max-faces', '-2'], '-2 is below the smallest allowed, 0'),
])
def test_a_number_out_of_range_is_a_usage_error_never_a_traceback_or_another_port(argv, named,
                                                                                    capsys):
  """`web --port 99999` ended in an OverflowError traceback; `serve --port 99999` listened on
  34463 (gRPC takes the port mod 65536) and `predict --server host:99999` called 34463;
  `demo-data --num-images -3` ended in a ValueError traceback; `web --max-upload-bytes -1`
  started a page that refuses every upload."""
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert named in err and 'Traceback' not in err, err


def test_an_unwritable_output_path_is_one_line_and_exit_2(tmp_path, capsys):
  """`demo-data --out` under a file ended in a FileNotFoundError/NotADirectoryError traceback."""
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  assert cli.main(['demo-data', '--out', str(blocker / 'demo'), '--num-images', '4']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and str(blocker) in err and 'Traceback' not in err, err


def test_serve_with_its_rest_port_taken_names_the_port_and_frees_the_grpc_one(tmp_path, capsys):
  import socket  # pylint: disable=import-outside-toplevel
  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    assert cli.main(['serve', '--model-base-path', str(tmp_path), '--builtin', '--port', '0',
                     '--rest-port', str(port)]) == 1
  err = capsys.readouterr().err
  assert f'cannot listen for REST on 127.0.0.1:{port}' in err and 'Traceback' not in err, err
