"""Checks on the input files, run by ExampleGen before it reads them (components/example_gen.py),
so bad input stops the run with the file, the column and the line named.

What the schema can say is checked by TFDV (ExampleValidator, components/anomalies_gate.py);
what it cannot say is checked here, where a problem can still be named by file and line, in one
streamed pass over each file (only counts and the first offending lines are kept):

- files that are empty, compressed, not UTF-8 text (a UTF-8 byte-order mark is accepted: Excel
  writes one) or hold only a header; headers that name a column twice or differ between files;
- CSV rows with the wrong number of fields (a truncated last line);
- labels that are not 0 or 1 (`1.0` / `0.0` are accepted), a label column with no positive, and
  the funnel rule that a conversion needs a click, which relates two columns of one row;
- text in a dense column (a blank cell is a missing value, imputed by the Transform).
"""

import csv
import dataclasses
import os
import re
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.dsl.io import fileio

from trainer import features

MAX_LISTED = 5  # offending lines named per problem and file
TFRECORD_BATCH = 10_000
UTF8_BOM = b'\xef\xbb\xbf'
UTF16 = 'UTF-16 text (byte-order mark)'
NOT_TEXT = {b'\x1f\x8b': 'gzip-compressed', b'PK': 'a zip archive', b'\xff\xfe': UTF16,
            b'\xfe\xff': UTF16}
LABEL_VALUES = {0.0: '0', 1.0: '1'}  # what a label cell may hold, in any numeric spelling
Labels = Tuple[str, str]  # the raw (click, conversion) columns


class InputDataError(ValueError):
    """The input folder is missing, empty, or holds a file that cannot be used as it is."""


def _listed(positions: List) -> str:
    more = f' and {len(positions) - MAX_LISTED} more' if len(positions) > MAX_LISTED else ''
    return ', '.join(map(str, positions[:MAX_LISTED])) + more


def _funnel_problem(path: str, labels: Labels, where: str, positions: List[int]) -> str:
    click, conversion = labels
    return (f'Input file {path}: {len(positions)} row(s) with {conversion} = 1 but '
            f'{click} = 0 at {where} {_listed(positions)}; a conversion can only follow '
            'a click. Fix the labels upstream.')


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def label_value(cell: str):
    """'0' or '1' for a label cell holding 0 or 1 in any numeric spelling ('1.0'), else None."""
    return LABEL_VALUES.get(_number(cell))


def csv_header(path: str) -> List[str]:
    """The column names as CsvExampleGen reads them (the first line split at commas), without
    a UTF-8 byte-order mark."""
    with fileio.open(path, 'rb') as f:
        line = f.readline()
    return line.removeprefix(UTF8_BOM).decode('utf-8', 'replace').strip().split(',')


class _NotText(Exception):
    """A line that is not UTF-8 text; the message says where and why."""


def _text_lines(f) -> Iterator[str]:
    """The file's lines as text, the byte-order mark dropped; raises _NotText on a line that is
    not UTF-8 or holds NUL bytes (binary data)."""
    for number, line in enumerate(f, start=1):
        if number == 1:
            line = line.removeprefix(UTF8_BOM)
        if b'\0' in line:
            raise _NotText(f'binary data (NUL bytes) at line {number}')
        try:
            yield line.decode('utf-8')
        except UnicodeDecodeError as e:
            raise _NotText(f'not UTF-8 text at line {number} (byte {line[e.start:e.start + 1]!r} '
                           f'at column {e.start + 1})') from None


@dataclasses.dataclass
class _CsvScan:  # what one pass over a CSV file found
    header: List[str]
    rows: int = 0
    positives: Tuple[int, int] = (0, 0)  # clicks, conversions
    problems: List[str] = dataclasses.field(default_factory=list)


BAD_CELLS = {'label': ('are not 0 or 1', 'Write each label as 0 or 1 (1.0 and 0.0 are '
                       'accepted too).'),
             'dense': ('are not numbers', 'Write a number, or leave the cell empty for a '
                       'missing value (it is imputed).')}


def _scan_rows(path: str, scan: _CsvScan, labels: Labels, dense: Sequence[str]) -> None:
    """Reads the rows of a CSV file once, adding their problems to `scan`."""
    where = {name: scan.header.index(name) for name in (*labels, *dense) if name in scan.header}
    malformed, unclicked, bad, positives = [], [], {name: [] for name in where}, [0, 0]
    with fileio.open(path, 'rb') as f:
        reader = csv.reader(_text_lines(f))
        next(reader, None)
        for row in filter(None, reader):  # blank lines are not rows
            scan.rows += 1
            if len(row) != len(scan.header):
                malformed.append((reader.line_num, len(row)))
                continue
            values = {name: row[index].strip() for name, index in where.items()}
            for name, value in values.items():
                if (label_value(value) is None if name in labels
                        else value and _number(value) is None):
                    bad[name].append(f'line {reader.line_num} {row[where[name]]!r}')
            click, conversion = (label_value(values.get(name, '')) for name in labels)
            positives = [positives[0] + (click == '1'), positives[1] + (conversion == '1')]
            if conversion == '1' and click == '0':
                unclicked.append(reader.line_num)
    scan.positives = tuple(positives)
    if not scan.rows:
        scan.problems.append(f'Input file {path} has a header ({",".join(scan.header)[:80]!r}) '
                             'but no data rows. Remove it or add rows.')
    if malformed:
        line, fields = malformed[0]
        scan.problems.append(
            f"Input file {path}: {len(malformed)} row(s) do not have the header's "
            f'{len(scan.header)} fields, at line(s) {_listed([line for line, _ in malformed])} '
            f'(line {line} has {fields}); a truncated or malformed row. Repair or remove it.')
    for name, cells in ((name, cells) for name, cells in bad.items() if cells):
        role = 'label' if name in labels else 'dense'
        scan.problems.append(f'Input file {path}, column {name!r} ({role}): {len(cells)} '
                             f'cell(s) {BAD_CELLS[role][0]}, at {_listed(cells)}. '
                             f'{BAD_CELLS[role][1]}')
    if unclicked:
        scan.problems.append(_funnel_problem(path, labels, 'line(s)', unclicked))


def _scan_csv(path: str, labels: Labels, dense: Sequence[str]) -> _CsvScan:
    """One streamed pass over a CSV file: see the module docstring."""
    with fileio.open(path, 'rb') as f:
        start = f.read(4)
    kind = next((kind for magic, kind in NOT_TEXT.items() if start.startswith(magic)), None)
    scan = _CsvScan(csv_header(path))
    duplicated = sorted({name for name in scan.header if scan.header.count(name) > 1})
    if kind:
        scan.problems.append(f'Input file {path} is {kind}, not a UTF-8 CSV text file. '
                             'Save it as UTF-8 CSV (uncompressed).')
    elif duplicated:
        scan.problems.append(
            f'Input file {path}: the header names column(s) {duplicated} more than once '
            f'({",".join(scan.header)[:120]!r}); ExampleGen would keep one and drop the other. '
            'Rename or remove the duplicates.')
    else:
        try:
            _scan_rows(path, scan, labels, dense)
        except (_NotText, csv.Error) as e:
            scan.problems.append(f'Input file {path} is not a CSV text file: {e}. Save it as '
                                 'UTF-8 CSV.')
    return scan


def _tfrecord_problems(path: str, labels: Labels) -> List[str]:
    """Conversions without a click in a (gzipped) TFRecord file of tf.Examples."""
    spec = {name: tf.io.FixedLenFeature([], tf.int64, default_value=-1)
            for name in labels}
    compression = 'GZIP' if path.endswith('.gz') else None
    unclicked, offset = [], 0
    try:
        for batch in tf.data.TFRecordDataset(path, compression).batch(TFRECORD_BATCH):
            click, conversion = (tf.io.parse_example(batch, spec)[name].numpy()
                                 for name in labels)
            bad = (conversion == 1) & (click == 0)
            unclicked += (np.flatnonzero(bad) + offset).tolist()
            offset += len(batch)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        return [f'Input file {path} is not a {"gzipped " if compression else ""}TFRecord file '
                f'of tf.Examples after record {offset}: {e.message.splitlines()[0]}']
    return [_funnel_problem(path, labels, 'record(s)', unclicked)] if unclicked else []


def _csv_files_problems(files: List[str], labels: Labels, dense: Sequence[str]) -> List[str]:
    """Each file's problems, then what only the files together show: headers that differ (one
    ExampleGen split needs one header) and a label column without positives."""
    scans = [_scan_csv(path, labels, dense) for path in files]
    problems = [problem for scan in scans for problem in scan.problems]
    if problems:
        return problems
    for scan, path in zip(scans[1:], files[1:]):
        if scan.header != scans[0].header:
            return [f'Input files {files[0]} and {path} have different headers '
                    f'({",".join(scans[0].header)[:80]!r} and {",".join(scan.header)[:80]!r}); '
                    'the files of one folder must have the same columns in the same order.']
    rows = sum(scan.rows for scan in scans)
    positives = [sum(scan.positives[i] for scan in scans) for i in (0, 1)]
    for (role, column), count in zip(zip(('click', 'conversion'), labels), positives):
        if not count and column in scans[0].header:
            problems.append(
                f'Input files {_listed(files)}: the {role} label {column!r} is 1 in none of '
                f'the {rows} rows ({labels[0]} = 1 in {positives[0]}, {labels[1]} = 1 in '
                f'{positives[1]}): the {role} task cannot be trained or evaluated. Check the '
                'export (a filter or a join that lost the positives).')
    return problems


def list_files(pattern: str) -> List[str]:
    """The files matching `pattern` (subfolders are not input files), sorted."""
    return sorted(path for path in fileio.glob(pattern) if not fileio.isdir(path))


def check_files(files: List[str], data_format: str, labels: Labels,
                dense: Sequence[str] = ()) -> None:
    """Raises InputDataError naming every problem of `files` (one ExampleGen split)."""
    problems = []
    nonempty = []
    for path in files:
        if fileio.stat(path).length == 0:
            problems.append(f'Input file {path} is empty. Remove it or replace it with '
                            f'{data_format.upper()} data.')
        else:
            nonempty.append(path)
    if data_format == 'csv':
        problems += _csv_files_problems(nonempty, labels, dense) if nonempty else []
    else:
        problems += [p for path in nonempty for p in _tfrecord_problems(path, labels)]
    if problems:
        raise InputDataError('\n'.join(problems))


def folder_files(data_root: str) -> List[str]:
    """The input files directly in `data_root` (what ExampleGen reads), or InputDataError if
    the folder is missing or holds none."""
    how_to_fix = ('Point FUNNEL_DATA_ROOT at a folder of input files, or run `make data` to '
                  'generate the default simulated data.')
    if not fileio.isdir(data_root):
        raise InputDataError(f'Input folder {data_root} does not exist. {how_to_fix}')
    files = list_files(os.path.join(data_root, '*'))
    if not files:
        raise InputDataError(f'Input folder {data_root} holds no files. {how_to_fix}')
    return files


def check_input_files(data_root: str, data_format: str, labels: Labels,
                      dense: Sequence[str] = ()) -> List[str]:
    """The input files directly in `data_root` after the check, or InputDataError saying what
    is wrong. `labels` are the feature spec's raw (click, conversion) columns, `dense` its dense
    columns."""
    files = folder_files(data_root)
    check_files(files, data_format, labels, dense)
    return files


def find_spans(data_root: str, span_folder: str) -> Dict[int, str]:
    """The span folders under `data_root` named like `span_folder` ('span-{SPAN}'), by span.

    Raises InputDataError when there is none, or when two folders hold the same span (e.g.
    span-1 and span-01), which ExampleGen would read as one.
    """
    prefix, suffix = span_folder.split('{SPAN}')
    pattern = re.compile(re.escape(prefix) + r'(\d+)' + re.escape(suffix))
    names = tf.io.gfile.listdir(data_root) if tf.io.gfile.isdir(data_root) else []
    spans = {}
    for name in sorted(name.rstrip('/') for name in names):
        match = pattern.fullmatch(name)
        if match:
            span = int(match.group(1))
            if span in spans:
                raise InputDataError(f'Folders {os.path.basename(spans[span])} and {name} in '
                                     f'{data_root} both hold span {span}; keep one.')
            spans[span] = os.path.join(data_root, name)
    if not spans:
        raise InputDataError(f'No span folder named like {span_folder!r} in {data_root} '
                             '(daily data: one folder per span, e.g. span-1/, span-2/).')
    return dict(sorted(spans.items()))


def check_spec_in_schema(spec: features.FeatureSpec, schema_path: str) -> None:
    """Every column the feature spec names must be in the schema the pipeline validates against;
    otherwise the Transform would fail deep inside Beam."""
    schema = schema_pb2.Schema()
    with tf.io.gfile.GFile(schema_path) as f:
        text_format.Parse(f.read(), schema)
    known = {feature.name for feature in schema.feature}
    missing = [name for name in spec.columns if name not in known]
    if missing:
        raise features.FeatureSpecError(
            f'Column(s) {missing} of the feature spec are not in the schema {schema_path} '
            f'(which has {sorted(known)}). Fix the spec, or infer a schema for your data with '
            '`make schema` (see README).')
