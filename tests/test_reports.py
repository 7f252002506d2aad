"""The one report reader and writer (components/shared/reports.py), and the web page's use of it.

The writer encodes before it opens the file, so a report holding what JSON
cannot encode leaves no half file; the reader names the file it could not find. Remote URIs
go through `tf.io.gfile`: its in-memory `ram://` filesystem is a real one, so
that branch runs here without a bucket.
"""

import json
import math
import os

import pytest
import tensorflow as tf

from fakefaces.components.shared import reports
from fakefaces.serving import web


def test_a_written_report_reads_back_and_is_indented_json(tmp_path):
  folder = str(tmp_path / 'made' / 'here')  # absent: the writer creates it
  path = reports.write_report(folder, {'verdict': 'pass', 'file': 'é.jpg'}, ensure_ascii=False)
  assert path == os.path.join(folder, reports.REPORT_JSON)
  text = open(path, encoding='utf-8').read()
  assert text == json.dumps({'verdict': 'pass', 'file': 'é.jpg'}, indent=2, ensure_ascii=False)
  assert reports.read_report(folder) == {'verdict': 'pass', 'file': 'é.jpg'}
  reports.write_report(folder, {'n': 1}, 'other.json')
  assert reports.read_report(folder, 'other.json') == {'n': 1}


def test_a_missing_report_is_none_or_an_error_naming_the_file(tmp_path):
  assert reports.read_report(str(tmp_path)) is None
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'card.json')):
    reports.read_report(str(tmp_path), 'card.json', missing_ok=False)


def test_a_report_that_cannot_be_encoded_leaves_no_file(tmp_path):
  folder = tmp_path / 'out'
  with pytest.raises(ValueError):
    reports.write_report(str(folder), {'auc': math.nan}, allow_nan=False)
  with pytest.raises(TypeError):
    reports.write_report(str(folder), {'when': object()})
  assert not folder.exists()
  reports.write_report(str(folder), {'when': object()}, default=lambda _: 'opaque')
  assert reports.read_report(str(folder)) == {'when': 'opaque'}


def test_invalid_json_is_a_value_error(tmp_path):
  (tmp_path / reports.REPORT_JSON).write_text('{"verdict": ', encoding='utf-8')
  with pytest.raises(ValueError):
    reports.read_report(str(tmp_path))


def test_remote_uris_go_through_gfile():
  folder = 'ram://reports_test/run/1'
  path = reports.write_report(folder, {'verdict': 'fail'})
  assert tf.io.gfile.exists(path)
  assert reports.read_report(folder, missing_ok=False) == {'verdict': 'fail'}
  assert reports.read_report(folder, 'absent.json') is None


def test_the_web_page_reads_the_gate_report_through_the_reader(tmp_path):
  folder = tmp_path / 'FairnessGate' / 'report' / '7'
  reports.write_report(str(folder), {'verdict': 'fail', 'blessed': False,
                                     'checks': [{'status': 'fail'}, {'status': 'pass'}],
                                     'reasons': ['FPR gap too large']})
  note = web.gate_note(str(tmp_path / 'FairnessGate' / 'report' / '*' / reports.REPORT_JSON))
  assert 'id="gate-verdict">fail<' in note and 'NOT blessed' in note and 'FPR gap too large' in note
  (folder / reports.REPORT_JSON).write_text('not json', encoding='utf-8')
  note = web.gate_note(str(folder / reports.REPORT_JSON))
  assert 'is unreadable' in note and str(folder / reports.REPORT_JSON) in note
