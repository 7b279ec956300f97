"""The input check (pipeline/inputs.py) on CSV files as real exports write them, and
ExampleGen's decoding of the files it accepts (components/example_gen.py).

Each refusal names the file, the column where there is one, and the offending lines or values;
tests/test_corruption_matrix.py shows the same check stopping a real pipeline run in ExampleGen.
"""

import decimal
import gzip
import json
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tensorflow as tf
from conftest import REPO
from google.protobuf import json_format
from google.protobuf.message import Message
from tfx.components.example_gen import utils

from components.example_gen import CsvToExample, checked_example_gen
from components.parquet_batches import ParquetToSerializedExamples
from pipeline.inputs import InputDataError, check_input_files
from trainer.features import parse_feature_spec

LABELS = ('clicked', 'purchased')
DENSE = ('price', 'activity')
HEADER = 'user_id,price,activity,clicked,purchased'
GOOD_ROWS = ['u1,1.5,3,1,1', 'u2,2.0,,0,0', '"u,3",0.5,7,1,0']


def _check(tmp_path, content, name='logs.csv'):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return check_input_files(str(tmp_path), 'csv', LABELS, DENSE)


def _refusal(tmp_path, content) -> str:
    with pytest.raises(InputDataError) as error:
        _check(tmp_path, content)
    message = str(error.value)
    assert str(tmp_path / 'logs.csv') in message  # the file is named
    return message.replace(str(tmp_path / 'logs.csv'), 'logs.csv')


def _csv(*rows, header=HEADER, end='\n'):
    return end.join([header, *rows]) + end


def test_real_world_files_are_accepted(tmp_path):
    """Blank dense cells, labels written 1.0 / 0.0, quoted commas, a UTF-8 byte-order mark and
    CRLF line ends (Excel's CSV export)."""
    excel = '\ufeff' + _csv('u4,1.0,2,1.0,0.0', 'u5,,,0.0,0.0', *GOOD_ROWS, end='\r\n')
    assert _check(tmp_path, excel) == [str(tmp_path / 'logs.csv')]


@pytest.mark.parametrize('content, expected', [
    (_csv(*GOOD_ROWS, 'u7,N/A,1,0,0', 'u8,12 EUR,1,0,0'),
     "logs.csv, column 'price' (dense): 2 cell(s) are not numbers, at line 5 'N/A', "
     "line 6 '12 EUR'. Write a number, or leave the cell empty"),
    (_csv(*GOOD_ROWS, 'u7,1,1,2,0', 'u8,1,1,yes,0', 'u9,1,1,,0'),
     "logs.csv, column 'clicked' (label): 3 cell(s) are not 0 or 1, at line 5 '2', "
     "line 6 'yes', line 7 ''. Write each label as 0 or 1 (1.0 and 0.0 are accepted too)."),
    (_csv(*GOOD_ROWS, header='user_id,price,price,clicked,purchased'),
     'logs.csv: the header (line 1) names 1 column(s) more than once: price (header'),
    (_csv(*GOOD_ROWS, 'u7,1,1,0.0,1.0'),
     'logs.csv: 1 row(s) with purchased = 1 but clicked = 0 at line(s) 5'),
    (_csv(*GOOD_ROWS, 'u7,1,1,1'),
     "logs.csv: 1 row(s) do not have the header's 5 fields, at line(s) 5 (line 5 has 4)"),
    (_csv('u1,1,1,1,0', 'u2,1,1,0,0'),
     "the conversion label 'purchased' is 1 in none of the 2 rows (clicked = 1 in 1, = 0 in 1, "
     'purchased = 1 in 0, = 0 in 2): with one class only, the conversion task cannot be '
     'trained or evaluated'),
    (_csv('u1,1,1,1,0', 'u2,1,1,1,1'),
     "the click label 'clicked' is 0 in none of the 2 rows"),
    (_csv(*GOOD_ROWS, end='\r'),
     'logs.csv has lines that end in a carriage return alone (\\r, the line ends of classic '
     'Mac OS and of some exporters): its line 1 holds a carriage return at byte 41'),
    (_csv(*GOOD_ROWS) + _csv('u4,1,1,0,0', 'u5,1,1,0,0', header='u3,1,1,0,0', end='\r'),
     'logs.csv has lines that end in a carriage return alone (\\r, the line ends of classic '
     'Mac OS and of some exporters) from line 5 on'),
    ('sep=;\r\n' + _csv(*GOOD_ROWS).replace(',', ';'),
     'logs.csv: its first line is the delimiter hint "sep=;" of a spreadsheet export'),
    ('sep=,\n' + _csv(*GOOD_ROWS, header='user_id,price,price,clicked,purchased'),
     'logs.csv: the header (line 2) names 1 column(s) more than once: price (header'),
    (_csv(*GOOD_ROWS).encode('utf-16'),
     'logs.csv is UTF-16 text (byte-order mark), not a UTF-8 CSV text file. Save it as UTF-8'),
    (b'\x1f\x8b\x08\x00' + bytes(range(256)),
     'logs.csv is gzip-compressed, but its name does not end in .gz'),
    (_csv(*GOOD_ROWS, 'caf\xe9,1,1,0,0').encode('latin-1'),
     "logs.csv is not a CSV text file: not UTF-8 text at line 5 (byte b'\\xe9' at column 4). "
     'Save it as UTF-8 CSV.'),
    (_csv(*GOOD_ROWS).encode() + b'\x00\x01\x02garbage\n',
     'logs.csv is not a CSV text file: binary data (NUL bytes) at line 5.'),
], ids=['text in a dense column', 'labels not 0 or 1', 'duplicated header name',
        'conversion without a click', 'truncated row', 'no conversions', 'no unclicked rows',
        'classic Mac line ends', 'Mac lines appended', 'semicolons with sep=;',
        'header after sep=,', 'UTF-16 file', 'gzip file', 'latin-1 file', 'binary garbage'])
def test_refusals_name_the_file_column_and_lines(tmp_path, content, expected):
    assert expected in _refusal(tmp_path, content)


def test_files_with_different_headers_are_refused(tmp_path):
    _check(tmp_path, _csv(*GOOD_ROWS), name='a.csv')
    (tmp_path / 'b.csv').write_text(_csv(*GOOD_ROWS, header=HEADER.replace('price', 'bid')))
    with pytest.raises(InputDataError, match=r'a.csv and .*b.csv have different headers'):
        _check(tmp_path, _csv(*GOOD_ROWS), name='a.csv')


def test_example_gen_decodes_excel_files_as_plain_ones(tmp_path):
    """The executor's decoding (TFX's CSV reader, parser and type inference): a byte-order
    mark, the delimiter hint `sep=,` and CRLF change nothing, labels written 1.0 / 0.0 become
    INT 1 / 0, a blank cell is an empty value list (what the schema's missing values are)."""
    plain, excel = tmp_path / 'plain.csv', tmp_path / 'excel.csv'
    plain.write_text(_csv('u4,1.0,2,1,0', *GOOD_ROWS))
    excel.write_bytes(('\ufeffsep=,\r\n'
                       + _csv('u4,1.0,2,1.0,0.0', *GOOD_ROWS, end='\r\n')).encode())
    assert _check(tmp_path, excel.read_bytes(), name='excel.csv')
    decoded = {}
    for path in (plain, excel):
        with beam.Pipeline() as pipeline:
            _ = (pipeline | CsvToExample([str(path)], LABELS)
                 | beam.io.WriteToTFRecord(f'{path}.tfrecord', shard_name_template=''))
        decoded[path.name] = sorted(
            (tf.train.Example.FromString(record.numpy())
             for record in tf.data.TFRecordDataset(f'{path}.tfrecord')),
            key=lambda example: example.features.feature['user_id'].bytes_list.value[0])
    assert decoded['plain.csv'] == decoded['excel.csv'] and len(decoded['plain.csv']) == 4
    first = decoded['excel.csv'][3].features.feature  # u4
    assert sorted(first) == sorted(HEADER.split(','))
    assert first['clicked'].int64_list.value == [1] and first['purchased'].int64_list.value == [0]
    blank = decoded['excel.csv'][2].features.feature  # u2
    assert blank['activity'].HasField('int64_list') and not blank['activity'].int64_list.value


@pytest.mark.slow  # a fresh process importing TFX
def test_the_kubeflow_step_stops_with_the_same_message(tmp_path):
    """ExampleGen as a Kubeflow pod runs it: TFX's container entrypoint with the executor class
    and the parameters the compiled spec gives it (tests/test_kubeflow_compile.py compiles
    them). A truncated row stops the step with the input check's message."""
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'logs.csv').write_text(_csv(*GOOD_ROWS, 'u7,1,1,1'))
    spec = parse_feature_spec({'labels': {'click': LABELS[0], 'conversion': LABELS[1]},
                               'categorical': ['user_id'], 'dense': list(DENSE)})
    component = checked_example_gen('csv', spec, input_base=str(data))
    values = {name: json_format.MessageToJson(value) if isinstance(value, Message) else value
              for name, value in component.exec_properties.items() if value is not None}
    invocation = {'inputs': {'parameterValues': values}, 'outputs': {
        'artifacts': {'examples': {'artifacts': [{
            'name': 'examples', 'type': {'instanceSchema': 'title: tfx.Examples\ntype: object\n'},
            'uri': str(tmp_path / 'examples'), 'metadata': {}}]}},
        'outputFile': str(tmp_path / 'task' / 'executor_output.json')}}
    inputs_spec = {'parameters': {name: {'parameterType': 'NUMBER_INTEGER' if isinstance(
        value, int) else 'STRING'} for name, value in values.items()}}
    pod_tmp = tmp_path / 'pod-tmp'
    pod_tmp.mkdir()
    result = subprocess.run(
        [sys.executable, '-m', 'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor',
         '--executor_class_path', 'components.example_gen.CsvExecutor',
         '--json_serialized_invocation_args', json.dumps(invocation),
         '--json_serialized_inputs_spec_args', json.dumps(inputs_spec)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, 'TMPDIR': str(pod_tmp)})  # a pod's own: TFX leaves an sdist there
    assert result.returncode != 0
    assert (f"InputDataError: Input file {data / 'logs.csv'}: 1 row(s) do not have the header's "
            '5 fields, at line(s) 5 (line 5 has 4)') in result.stderr, result.stderr[-3000:]


# The kinds of file bench/input_check.py times (at 1M rows: bench/results/input_check.md), at a
# test's size: each is checked in one pass (the duplicate-header check used to count every
# name against every other), with the verdict a user needs.
HARD_FILE_VERDICTS = {
    'rows': 'accepted',
    'gzip rows': 'accepted',
    'parquet rows': 'accepted',
    'mac': 'logs.csv has lines that end in a carriage return alone',
    'appended mac': 'logs.csv has lines that end in a carriage return alone (\\r, the line ends '
                    'of classic Mac OS and of some exporters) from line 10002 on',
    'wide header': 'accepted',
    'duplicated header': 'logs.csv: the header (line 1) names 100000 column(s) more than once: '
                         'c0, c1, c10, c100, c1000 and 99995 more (header',
    'long row': 'logs.csv is not a CSV text file: field larger than field limit (131072), at '
                'line 2',
    'no line break': 'logs.csv has no line break in its first 16 MiB, so no header a CSV reader '
                     'could use',
}


@pytest.mark.parametrize('kind', HARD_FILE_VERDICTS)
def test_hard_files_get_the_verdict_a_user_needs(tmp_path, kind):
    from bench import input_check

    verdict, expected = input_check.measure(kind, 20_000, str(tmp_path))['verdict'], \
        HARD_FILE_VERDICTS[kind]
    assert verdict == expected if expected == 'accepted' else expected in verdict, verdict[:300]


# Header slips, as tools write them: each stops at the input check with its likely cause.
def _spreadsheet_trailing_column(tmp_path):
    """A spreadsheet with an empty column after the last (a stray formatted cell): LibreOffice
    and Excel write a trailing comma on every line; pandas reads it back as 'Unnamed: 5'."""
    return _csv(*[row + ',' for row in ('u1,1.5,3,1,1', 'u2,2.0,,0,0')], header=HEADER + ',')


SLIPS = {
    'header ends with a comma': (
        _spreadsheet_trailing_column,
        "the header (line 1, 'user_id,price,activity,clicked,purchased,') has 1 column(s) with "
        'no name, at position(s) 6 of 6 (the header ends with a comma? A spreadsheet writes one '
        'for an empty column after the last)'),
    'column without a title': (
        lambda tmp_path: _csv('u1,1.5,,3,1,1', header='user_id,price,,activity,clicked,'
                                                      'purchased'),
        'has 1 column(s) with no name, at position(s) 3 of 6 (two commas in a row, or a column '
        'exported without a title?)'),
    'spaces after the commas': (
        lambda tmp_path: pd.DataFrame({'user_id': ['u1', 'u2'], ' price': [1.5, 2.0],
                                       ' activity': [3, 4], ' clicked': [1, 0],
                                       ' purchased': [1, 0]}).to_csv(index=False),
        "has 4 column name(s) with spaces around them: ' price', ' activity', ' clicked', "
        "' purchased' (a space after each comma?)"),
    'semicolons (a decimal-comma locale)': (
        lambda tmp_path: pd.DataFrame({'user_id': ['u1', 'u2'], 'price': [1.5, 2.0],
                                       'activity': [3, 4], 'clicked': [1, 0],
                                       'purchased': [1, 0]}).to_csv(index=False, sep=';',
                                                                    decimal=','),
        "is one column holding ';': the fields are separated by semicolons, but the pipeline "
        "reads CSV separated by ','"),
    'tabs (a TSV export)': (
        lambda tmp_path: pd.DataFrame({'user_id': ['u1'], 'price': [1.5], 'activity': [3],
                                       'clicked': [1], 'purchased': [0]}).to_csv(
            index=False, sep='\t'),
        "is one column holding '\\t': the fields are separated by tabs"),
}


@pytest.mark.parametrize('case', SLIPS)
def test_header_slips_are_named_with_their_cause(tmp_path, case):
    write, expected = SLIPS[case]
    assert expected in _refusal(tmp_path, write(tmp_path))


# Compressed daily dumps: read decompressed when named *.gz (as ExampleGen's reader reads them).
def _frame(rows=200, seed=0):
    rng = np.random.default_rng(seed)
    clicked = (rng.random(rows) < 0.3).astype(int)
    return pd.DataFrame({'user_id': [f'u{i % 17}' for i in range(rows)],
                         'price': rng.random(rows).round(3), 'activity': rng.integers(0, 9, rows),
                         'clicked': clicked, 'purchased': clicked * (rng.random(rows) < 0.5)})


def test_gzip_dumps_are_read(tmp_path):
    """pandas `to_csv(compression='gzip')` and the `gzip` CLI (two dumps concatenated with cat:
    two gzip members) are checked as the plain file is: accepted, and the same problems found."""
    _frame().to_csv(tmp_path / 'pandas.csv.gz', index=False, compression='gzip')
    first, second = tmp_path / 'cli_a.csv', tmp_path / 'cli_b.csv'
    frame = _frame(seed=1)
    frame[:100].to_csv(first, index=False)
    frame[100:].to_csv(second, index=False, header=False)
    subprocess.run(['gzip', str(first), str(second)], check=True)
    (tmp_path / 'cli.csv.gz').write_bytes(b''.join(
        path.with_suffix('.csv.gz').read_bytes() for path in (first, second)))
    for path in (first, second):
        path.with_suffix('.csv.gz').unlink()
    assert check_input_files(str(tmp_path), 'csv', LABELS, DENSE) == [
        str(tmp_path / 'cli.csv.gz'), str(tmp_path / 'pandas.csv.gz')]
    bad = _frame().astype({'price': object})
    bad.loc[41, 'price'] = 'N/A'
    bad.to_csv(tmp_path / 'pandas.csv.gz', index=False, compression='gzip')
    with pytest.raises(InputDataError, match=r"pandas.csv.gz, column 'price' \(dense\): 1 "
                                             r"cell\(s\) are not numbers, at line 43 'N/A'"):
        check_input_files(str(tmp_path), 'csv', LABELS, DENSE)


@pytest.mark.parametrize('write, expected', [
    (lambda path: path.write_bytes(gzip.compress(_frame(5000).to_csv(index=False).encode())[
        :5_000]),
     'is named *.gz, so it is read gzip-decompressed, but it ends before the end of its '
     'compressed data: cut short (an interrupted copy or download?)'),
    (lambda path: _frame().to_csv(path, index=False, compression=None),
     'is named *.gz, so it is read gzip-decompressed, but it is not gzip data'),
    (lambda path: path.write_bytes(gzip.compress(b'')), 'is empty once decompressed'),
], ids=['cut short', 'not gzip', 'empty inside'])
def test_broken_gzip_files_are_refused(tmp_path, write, expected):
    write(tmp_path / 'logs.csv.gz')
    with pytest.raises(InputDataError) as error:
        check_input_files(str(tmp_path), 'csv', LABELS, DENSE)
    assert f"Input file {tmp_path / 'logs.csv.gz'} {expected}" in str(error.value)


def test_a_gzip_file_not_named_gz_is_named_so(tmp_path):
    _frame().to_csv(tmp_path / 'logs.csv', index=False, compression='gzip')
    with pytest.raises(InputDataError, match=r'logs.csv is gzip-compressed, but its name does '
                                             r'not end in .gz'):
        check_input_files(str(tmp_path), 'csv', LABELS, DENSE)


# Blank ids: counted per id column, with their first lines; they stop unless `blank: oov`.
def test_blank_ids_stop_with_counts_and_lines_unless_declared_oov(tmp_path):
    frame = _frame().astype({'user_id': object})
    frame.loc[[3, 50, 51], 'user_id'] = None  # pandas writes a missing value as a blank cell
    frame.to_csv(tmp_path / 'logs.csv', index=False)
    with pytest.raises(InputDataError) as error:
        check_input_files(str(tmp_path), 'csv', LABELS, DENSE, {'user_id': 'stop'})
    assert (f"Input file {tmp_path / 'logs.csv'}, column 'user_id' (categorical id): 3 blank "
            'cell(s), at line(s) 5, 52, 53. A blank id stops the run by default.') in \
        str(error.value)
    assert '`{name: user_id, blank: oov}`' in str(error.value)
    assert 'Feature shape dropped' not in str(error.value)
    assert check_input_files(str(tmp_path), 'csv', LABELS, DENSE, {'user_id': 'oov'})


# Parquet, as pandas / pyarrow (and so Spark and Hive exports) write it.
def _check_parquet(tmp_path, frame, blanks=None, **options):
    frame.to_parquet(tmp_path / 'logs.parquet', index=False, **options)
    return check_input_files(str(tmp_path), 'parquet', LABELS, DENSE, blanks)


def test_parquet_files_are_accepted_with_any_numeric_label_type(tmp_path):
    """Labels as int64, float64 and bool, a null in a dense column, dictionary-encoded ids, a
    timestamp column the model does not use, several row groups."""
    frame = _frame(3000).astype({'clicked': float, 'purchased': bool})
    frame['price'] = frame['price'].mask(frame.index % 7 == 0)
    frame['user_id'] = frame['user_id'].astype('category')
    frame['request_time'] = pd.date_range('2026-11-01', periods=len(frame), freq='min')
    assert _check_parquet(tmp_path, frame, {'user_id': 'stop'}, row_group_size=1000)


@pytest.mark.parametrize('change, expected', [
    (lambda f: f.astype({'clicked': float}).assign(clicked=lambda f: f.clicked.mask(
        f.index == 4)), "column 'clicked' (label): 1 cell(s) are not 0 or 1, at row 5 nan. "
                        'Write each label as 0 or 1'),
    (lambda f: f.assign(purchased=np.where(f.index == 9, 1, f.purchased), clicked=np.where(
        f.index == 9, 0, f.clicked)), '1 row(s) with purchased = 1 but clicked = 0 at row(s) 10'),
    (lambda f: f.astype({'price': str}), "column 'price' (dense): of Parquet type string, not a "
                                         'number'),
    (lambda f: f.assign(user_id=f.user_id.where(f.index % 50 != 1, '')),
     "column 'user_id' (categorical id): 4 blank cell(s), at row(s) 2, 52, 102, 152."),
    (lambda f: f.rename(columns={'price': 'price '}), "the column names ('user_id,price ,"),
    (lambda f: f.assign(activity=[[1, 2]] * len(f)), "column 'activity': of Parquet type "
                                                     'list<item: int64>, not one value per row'),
], ids=['null label', 'conversion without a click', 'dense column of text', 'blank ids',
        'name with a space', 'list column'])
def test_parquet_refusals_name_the_file_column_and_rows(tmp_path, change, expected):
    with pytest.raises(InputDataError) as error:
        _check_parquet(tmp_path, change(_frame()), {'user_id': 'stop'})
    assert f"Input file {tmp_path / 'logs.parquet'}" in str(error.value)
    assert expected in str(error.value), str(error.value)


def test_a_csv_file_read_as_parquet_is_named(tmp_path):
    _frame().to_csv(tmp_path / 'logs.parquet', index=False)
    with pytest.raises(InputDataError, match='logs.parquet is not a readable Parquet file'):
        check_input_files(str(tmp_path), 'parquet', LABELS, DENSE)


def _examples(transform, path):
    with beam.Pipeline() as pipeline:
        _ = (pipeline | transform | beam.io.WriteToTFRecord(path, shard_name_template=''))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_parquet_rows_keep_their_zeros_and_labels_are_integers(tmp_path):
    """TFX's own Parquet conversion (example_gen.utils.dict_to_example) writes every falsy value
    as a feature with no value: a label 0 would be missing. Ours keeps it, writes float and bool
    labels as INT 0/1, a null as an empty value list, floats as FLOAT and ids as BYTES."""
    frame = _frame(50).astype({'clicked': float, 'purchased': bool})
    frame.loc[0, ['clicked', 'purchased', 'activity']] = [0.0, False, 0]
    frame['price'] = frame['price'].mask(frame.index == 1)
    frame['bid'] = [decimal.Decimal(f'{i}.25') for i in range(50)]  # Spark's DECIMAL(10, 2)
    frame.to_parquet(tmp_path / 'logs.parquet', index=False, schema=pa.schema([
        *[(name, pa.from_numpy_dtype(frame[name].dtype)) for name in ('price', 'activity',
                                                                      'clicked', 'purchased')],
        ('user_id', pa.string()), ('bid', pa.decimal128(10, 2))]))
    assert check_input_files(str(tmp_path), 'parquet', LABELS, DENSE + ('bid',))
    assert utils.dict_to_example({'clicked': 0.0}).features.feature['clicked'] == \
        tf.train.Feature()  # TFX's conversion, measured
    examples = _examples(ParquetToSerializedExamples([str(tmp_path / 'logs.parquet')], LABELS),
                         str(tmp_path / 'examples.tfrecord'))
    assert len(examples) == 50
    first = examples[0].features.feature  # the files' row order (one file, one batch)
    assert [first[name].int64_list.value for name in ('clicked', 'purchased', 'activity')] == \
        [[0], [0], [0]]
    clicks = sorted(e.features.feature['clicked'].int64_list.value[0] for e in examples)
    assert clicks == sorted(frame['clicked'].astype(int))
    blank = [e for e in examples if not e.features.feature['price'].float_list.value]
    assert len(blank) == 1 and blank[0].features.feature['price'].HasField('float_list')
    assert first['bid'].float_list.value == [0.25]


def test_parquet_files_of_one_folder_must_agree(tmp_path):
    """A label with one class only across the files, and a column typed differently in two
    files (a day exported with prices as integers), as for CSV."""
    _frame().assign(purchased=0).to_parquet(tmp_path / 'a.parquet', index=False)
    with pytest.raises(InputDataError, match="the conversion label 'purchased' is 1 in none of "
                                             'the 200 rows'):
        check_input_files(str(tmp_path), 'parquet', LABELS, DENSE)
    _frame().to_parquet(tmp_path / 'a.parquet', index=False)
    _frame().astype({'price': int}).to_parquet(tmp_path / 'b.parquet', index=False)
    with pytest.raises(InputDataError, match=r'give column\(s\) different types: price '
                                             r'\(double and int64\)'):
        check_input_files(str(tmp_path), 'parquet', LABELS, DENSE)
