"""Checks on the input files, run by ExampleGen before it reads them (components/example_gen.py),
so bad input stops the run with the file, the column and the line named.

What the schema can say is checked by TFDV (ExampleValidator, components/anomalies_gate.py);
what it cannot say is checked here, where a problem can still be named by file and line, in one
streamed pass over each file (only counts and the first offending lines are kept), in time
linear in the file's size whatever it holds (bench/input_check.py measures it):

- files that are empty, not UTF-8 text (a UTF-8 byte-order mark is accepted: Excel writes one)
  or hold only a header; a `*.gz` file is read decompressed (as ExampleGen's reader reads it, by
  the name's extension) and refused when it is not gzip data or is cut short (Beam's reader
  would read a truncated gzip file silently up to its cut); other compressed files are refused;
- header slips, named with their likely cause: a column with no name (a header that ends with
  a comma), names with spaces around them, a header of one column holding `;`, tabs or `|`
  (another delimiter); headers that name a column twice or differ between files;
- line ends: `\n` and `\r\n` are read; a carriage return alone (classic Mac OS line ends, or
  such a file concatenated after another) and a first line with no line break in its first
  MAX_HEADER_BYTES stop the run with that cause, not as a malformed header;
- a first line `sep=<c>` (the delimiter hint of spreadsheet exports) is skipped when `<c>` is
  the comma ExampleGen reads, and named as the cause otherwise;
- CSV rows with the wrong number of fields (a truncated last line);
- labels that are not 0 or 1 (`1.0` / `0.0` are accepted), a label column with one class only
  (no positive, or no negative), and the funnel rule that a conversion needs a click, which
  relates two columns of one row;
- text in a dense column (a blank cell is a missing value, imputed by the Transform);
- blank cells in an id (categorical) column: counted, with their first lines; they stop the run
  unless the feature spec says `blank: oov` for the column (trainer/features.py).

Parquet files (`data_format: parquet`) get the same checks where they apply, read with pyarrow a
batch of rows at a time, with row numbers: labels 0/1 in any numeric or boolean type, the funnel
rule, numeric dense columns, column names, blank (null or empty) ids, one class only.

How many positives and negatives each split holds is known only after ExampleGen has split the
rows: components/anomalies_gate.py checks it from StatisticsGen's statistics.
"""

import collections
import contextlib
import csv
import dataclasses
import functools
import gzip
import logging
import os
import re
import zlib
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf
from apache_beam.io import filesystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.dsl.io import fileio

from trainer import features

MAX_LISTED = 5  # offending lines named per problem and file
MAX_HEADER_BYTES = 16 * 2**20  # a first line longer than this is not a CSV header
READ_CHUNK = 2**20
DELIMITER = ','  # what ExampleGen's CSV reader splits fields at
DELIMITER_HINT = re.compile(rb'"?sep=(.?)"?\r?', re.IGNORECASE)  # spreadsheets' first line
MAC_LINE_ENDS = ('lines that end in a carriage return alone (\\r, the line ends of classic '
                 'Mac OS and of some exporters)')
FIX_LINE_ENDS = ("Convert the line ends to \\n or \\r\\n (e.g. `tr '\\r' '\\n' < in.csv > "
                 'out.csv`, or save the file again as "CSV UTF-8").')
TFRECORD_BATCH = 10_000
PARQUET_BATCH = 65_536  # rows read at a time
UNCOMPRESSED = filesystems.CompressionTypes.UNCOMPRESSED
UTF8_BOM = b'\xef\xbb\xbf'
UTF16 = 'UTF-16 text (byte-order mark)'
GZIP_MAGIC = b'\x1f\x8b'
NOT_TEXT = {GZIP_MAGIC: 'gzip-compressed', b'PK': 'a zip archive', b'BZh': 'bzip2-compressed',
            b'\xff\xfe': UTF16, b'\xfe\xff': UTF16}
OTHER_DELIMITERS = {';': 'semicolons', '\t': 'tabs', '|': 'vertical bars'}
LABEL_VALUES = {0.0: '0', 1.0: '1'}  # what a label cell may hold, in any numeric spelling
Labels = Tuple[str, str]  # the raw (click, conversion) columns
Blanks = Mapping[str, str]  # categorical column -> features.BLANK_STOP or BLANK_OOV


class InputDataError(ValueError):
    """The input folder is missing, empty, or holds a file that cannot be used as it is."""


def _listed(positions: List) -> str:
    more = f' and {len(positions) - MAX_LISTED} more' if len(positions) > MAX_LISTED else ''
    return ', '.join(map(str, positions[:MAX_LISTED])) + more


def _is_gzip(path: str) -> bool:
    """Whether ExampleGen reads `path` decompressed: Beam's file systems decide by the name."""
    return path.endswith('.gz')


@contextlib.contextmanager
def _open(path: str):
    """The file's bytes as ExampleGen reads them: decompressed when named *.gz, streaming.
    Python's gzip (not Beam's reader) so that a file cut short raises EOFError."""
    with fileio.open(path, 'rb') as f:
        yield gzip.GzipFile(fileobj=f, mode='rb') if _is_gzip(path) else f


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


@functools.lru_cache(maxsize=1024)
def _label_cell(cell: str):
    """label_value of a CSV cell (surrounding spaces allowed), once per distinct cell."""
    return label_value(cell.strip())


@dataclasses.dataclass
class CsvHead:
    """A CSV file's first line(s): the column names, and the delimiter hint before them."""
    header: List[str]
    hint: Optional[str] = None  # the <c> of a first line `sep=<c>`, if there is one
    problem: str = ''  # why the lines cannot be a header: a line end or the size

    @property
    def header_line(self) -> int:
        return 2 if self.hint is not None else 1


def _leading_lines(f, count: int) -> List[bytes]:
    """The file's first `count` lines without their \\n (fewer if it has fewer), read a chunk at
    a time: at most about count * MAX_HEADER_BYTES bytes, so a file without line breaks is not
    read whole (its first line is then longer than MAX_HEADER_BYTES)."""
    chunks, breaks, size = [], 0, 0
    while breaks < count and size <= count * MAX_HEADER_BYTES:
        chunk = f.read(READ_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
        breaks, size = breaks + chunk.count(b'\n'), size + len(chunk)
    return b''.join(chunks).split(b'\n', count)[:count]


def delimiter_hint(first_line: bytes) -> Optional[str]:
    """The <c> of a file's first line `sep=<c>` (a byte-order mark before it and its line end
    allowed), or None when the line is no delimiter hint."""
    hint = DELIMITER_HINT.fullmatch(first_line.removeprefix(UTF8_BOM).removesuffix(b'\n'))
    return hint.group(1).decode('utf-8', 'replace') if hint else None


def csv_head(path: str) -> CsvHead:
    """The column names as ExampleGen reads them (the first line split at commas, without a
    UTF-8 byte-order mark), from the second line when the first is a delimiter hint `sep=,`;
    what keeps the line from being a header, if anything."""
    with _open(path) as f:
        first, *rest = _leading_lines(f, 2) or [b'']
    hint = delimiter_hint(first)
    line = (rest or [b''])[0] if hint is not None else first.removeprefix(UTF8_BOM)
    head = CsvHead(line.decode('utf-8', 'replace').rstrip('\r\n').split(','), hint)
    carriage_return = line.removesuffix(b'\r').find(b'\r')
    if carriage_return >= 0:
        head.problem = (f'{MAC_LINE_ENDS}: its line {head.header_line} holds a carriage return '
                        f'at byte {carriage_return + 1} with no line feed after it. '
                        f'{FIX_LINE_ENDS}')
    elif len(line) > MAX_HEADER_BYTES:
        head.problem = (f'no line break in its first {MAX_HEADER_BYTES // 2**20} MiB, so no '
                        'header a CSV reader could use: not a CSV file of one row per line. '
                        'Export it as CSV, one row per line.')
    return head


class _Unreadable(Exception):
    """A line that is not UTF-8 CSV text; the message says where, why and what to do."""


def _lines(f) -> Iterator[bytes]:
    """The file's lines split at \\n, each with its line end as written (TensorFlow's GFile
    drops carriage returns from the lines it iterates, which would hide them), read a chunk at
    a time."""
    pending = []  # the pieces of a line longer than a chunk
    while chunk := f.read(READ_CHUNK):
        *lines, last = chunk.split(b'\n')
        if lines:
            lines[0] = b''.join([*pending, lines[0]])
            pending = []
            yield from (line + b'\n' for line in lines)
        pending.append(last)
    if any(pending):
        yield b''.join(pending)


def _text_lines(f) -> Iterator[str]:
    """The file's lines as text, the byte-order mark dropped; raises _Unreadable on a line that
    is not UTF-8 or holds NUL bytes (binary data)."""
    for number, line in enumerate(_lines(f), start=1):
        if number == 1:
            line = line.removeprefix(UTF8_BOM)
        if b'\0' in line:
            raise _Unreadable(f'is not a CSV text file: binary data (NUL bytes) at line {number}. '
                              'Save it as UTF-8 CSV.')
        try:
            yield line.decode('utf-8')
        except UnicodeDecodeError as e:
            raise _Unreadable(f'is not a CSV text file: not UTF-8 text at line {number} (byte '
                              f'{line[e.start:e.start + 1]!r} at column {e.start + 1}). Save '
                              'it as UTF-8 CSV.') from None


def _csv_rows(f, skip: int) -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) of each non-blank CSV record after the first `skip` lines; raises
    _Unreadable where Python's CSV reader cannot go on, naming the line."""
    reader = csv.reader(_text_lines(f))
    try:
        for _ in range(skip):
            next(reader, None)
        for row in filter(None, reader):  # blank lines are not rows
            yield reader.line_num, row
    except csv.Error as e:
        if 'new-line character' in str(e):
            raise _Unreadable(f'has {MAC_LINE_ENDS} from line {reader.line_num} on (a carriage '
                              f'return outside quotes, with no line feed after it). '
                              f'{FIX_LINE_ENDS}') from None
        raise _Unreadable(f'is not a CSV text file: {e}, at line {reader.line_num}. Save it '
                          'as UTF-8 CSV.') from None


@dataclasses.dataclass
class _Scan:  # what one pass over a file found
    header: List[str]
    types: Tuple[str, ...] = ()  # Parquet: the columns' types
    rows: int = 0
    ones: Tuple[int, int] = (0, 0)  # rows with click = 1, with conversion = 1
    zeros: Tuple[int, int] = (0, 0)  # rows with click = 0, with conversion = 0
    problems: List[str] = dataclasses.field(default_factory=list)


BAD_CELLS = {'label': ('are not 0 or 1', 'Write each label as 0 or 1 (1.0 and 0.0 are '
                       'accepted too).'),
             'dense': ('are not numbers', 'Write a number, or leave the cell empty for a '
                       'missing value (it is imputed).')}


def _count_labels(scan: _Scan, pairs: collections.Counter, others: int = 0) -> None:
    """The scan's rows and label counts from its (click, conversion) value pairs -> rows."""
    scan.rows = sum(pairs.values()) + others
    scan.ones, scan.zeros = (tuple(sum(count for pair, count in pairs.items()
                                       if pair[task] == value) for task in (0, 1))
                             for value in ('1', '0'))


def _scan_rows(path: str, scan: _Scan, head: CsvHead, labels: Labels,
               dense: Sequence[str], blanks: Blanks) -> None:
    """Reads the rows of a CSV file once, adding their problems to `scan`."""
    position = {name: index for index, name in enumerate(scan.header)}
    label_at = [position.get(name) for name in labels]  # None: the column is not in the file
    dense_at = {name: position[name] for name in dense if name in position}
    id_at = {name: position[name] for name in blanks if name in position}
    malformed, unclicked = [], []
    bad = {name: [] for name in (*labels, *dense_at)}
    blank = {name: [] for name in id_at}
    pairs = collections.Counter()  # (click, conversion) label values -> rows
    with _open(path) as f:
        for line, row in _csv_rows(f, skip=head.header_line):
            if len(row) != len(scan.header):
                malformed.append((line, len(row)))
                continue
            values = tuple(None if index is None else _label_cell(row[index])
                           for index in label_at)
            pairs[values] += 1
            if values == ('0', '1'):
                unclicked.append(line)
            for name, index, value in zip(labels, label_at, values):
                if index is not None and value is None:
                    bad[name].append(f'line {line} {row[index]!r}')
            for name, index in dense_at.items():
                cell = row[index].strip()
                if cell and _number(cell) is None:
                    bad[name].append(f'line {line} {row[index]!r}')
            for name, index in id_at.items():
                if not row[index].strip():
                    blank[name].append(line)
    _count_labels(scan, pairs, len(malformed))
    if not scan.rows:
        scan.problems.append(f'Input file {path} has a header ({",".join(scan.header)[:80]!r}) '
                             'but no data rows. Remove it or add rows.')
    if malformed:
        line, fields = malformed[0]
        scan.problems.append(
            f"Input file {path}: {len(malformed)} row(s) do not have the header's "
            f'{len(scan.header)} fields, at line(s) {_listed([line for line, _ in malformed])} '
            f'(line {line} has {fields}); a truncated or malformed row. Repair or remove it.')
    scan.problems += _cell_problems(path, labels, bad, unclicked, blank, blanks, 'line(s)')


def _cell_problems(path: str, labels: Labels, bad: Dict[str, List[str]], unclicked: List[int],
                   blank: Dict[str, List[int]], blanks: Blanks, where: str) -> List[str]:
    """The messages of one file's bad label and dense cells, conversions without a click and
    blank ids (`where`: 'line(s)' of a CSV file, 'row(s)' of a Parquet file)."""
    problems = []
    for name, cells in ((name, cells) for name, cells in bad.items() if cells):
        role = 'label' if name in labels else 'dense'
        problems.append(f'Input file {path}, column {name!r} ({role}): {len(cells)} cell(s) '
                        f'{BAD_CELLS[role][0]}, at {_listed(cells)}. {BAD_CELLS[role][1]}')
    if unclicked:
        problems.append(_funnel_problem(path, labels, where, unclicked))
    return problems + _blank_id_problems(path, blank, blanks, where)


def _blank_id_problems(path: str, blank: Dict[str, List[int]], blanks: Blanks,
                       where: str) -> List[str]:
    """Blank cells of id columns whose spec says `blank: stop`; the others are logged."""
    problems = []
    for name, positions in blank.items():
        if not positions:
            continue
        if blanks[name] == features.BLANK_OOV:
            logging.info('Input file %s, id column %r: %d blank cell(s), read as an unknown id '
                         '(blank: oov).', path, name, len(positions))
            continue
        problems.append(
            f'Input file {path}, column {name!r} (categorical id): {len(positions)} blank '
            f'cell(s), at {where} {_listed(positions)}. A blank id stops the run by default. '
            'Fill the ids upstream, or, if a blank means the id is unknown (as in production, '
            f'e.g. an unknown device), declare it in the feature spec: `{{name: {name}, '
            'blank: oov}` (a blank is then an out-of-vocabulary id).')
    return problems


def _duplicated(names: Sequence[str]) -> List[str]:
    """The names that stand more than once, sorted (ExampleGen would keep one column of each)."""
    return sorted(name for name, count in collections.Counter(names).items() if count > 1)


def _header_slip(head: CsvHead) -> str:
    """What is wrong with the column names, with its likely cause, or ''."""
    header = head.header
    if len(header) == 1:
        delimiter = next((d for d in OTHER_DELIMITERS if d in header[0]), None)
        if delimiter:
            return (f'is one column holding {delimiter!r}: the fields are separated by '
                    f'{OTHER_DELIMITERS[delimiter]}, but the pipeline reads CSV separated by '
                    f'{DELIMITER!r}. Export it again with commas as the separator (e.g. "CSV '
                    'UTF-8 (comma delimited)"; a spreadsheet set to a language with decimal '
                    'commas writes semicolons).')
    unnamed = [index + 1 for index, name in enumerate(header) if not name.strip()]
    if unnamed:
        cause = ('the header ends with a comma? A spreadsheet writes one for an empty column '
                 'after the last' if unnamed == [len(header)] else
                 'two commas in a row, or a column exported without a title?')
        return (f'has {len(unnamed)} column(s) with no name, at position(s) {_listed(unnamed)} '
                f'of {len(header)} ({cause}). Name the column or remove it (and its cells).')
    spaced = [name for name in header if name != name.strip()]
    if spaced:
        return (f'has {len(spaced)} column name(s) with spaces around them: '
                f'{_listed([repr(name) for name in spaced])} (a space after each comma?); '
                'ExampleGen would keep the spaces in the names, which the feature spec does not '
                'have. Remove the spaces from the header.')
    return ''


def _head_problem(path: str, head: CsvHead) -> str:
    """What keeps the file's first line(s) from being read as a header, or ''."""
    if head.problem:
        return f'Input file {path} has {head.problem}'
    if head.hint is not None and head.hint != DELIMITER:
        return (f'Input file {path}: its first line is the delimiter hint "sep={head.hint}" of '
                f'a spreadsheet export: its fields are separated by {head.hint!r}, but the '
                f'pipeline reads CSV separated by {DELIMITER!r}. Export it again with commas as '
                'the separator (e.g. "CSV UTF-8 (comma delimited)").')
    slip = _header_slip(head)
    if slip:
        return (f'Input file {path}: the header (line {head.header_line}, '
                f'{",".join(head.header)[:120]!r}) {slip}')
    duplicated = _duplicated(head.header)
    if duplicated:
        return (f'Input file {path}: the header (line {head.header_line}) names '
                f'{len(duplicated)} column(s) more than once: {_listed(duplicated)} (header '
                f'{",".join(head.header)[:120]!r}); ExampleGen would keep one and drop the '
                'other. Rename or remove the duplicates.')
    return ''


def _scan_csv(path: str, labels: Labels, dense: Sequence[str], blanks: Blanks) -> _Scan:
    """One streamed pass over a CSV file: see the module docstring."""
    try:
        return _scan_csv_text(path, labels, dense, blanks)
    except (OSError, EOFError, zlib.error) as e:  # raised by gzip only: fileio's are not here
        cause = ('it ends before the end of its compressed data: cut short (an interrupted '
                 'copy or download?)' if isinstance(e, EOFError) else f'it is not gzip data '
                 f'({e})')
        return _Scan([], problems=[f'Input file {path} is named *.gz, so it is read '
                                      f'gzip-decompressed, but {cause}. Copy or compress it '
                                      'again (`gzip file.csv`).'])


def _scan_csv_text(path: str, labels: Labels, dense: Sequence[str], blanks: Blanks) -> _Scan:
    with _open(path) as f:
        start = f.read(4)
    if not start:
        return _Scan([], problems=[f'Input file {path} is empty once decompressed. Remove '
                                      'it or replace it with CSV data.'])
    kind = next((kind for magic, kind in NOT_TEXT.items() if start.startswith(magic)), None)
    if kind == NOT_TEXT[GZIP_MAGIC] and not _is_gzip(path):
        return _Scan([], problems=[f'Input file {path} is gzip-compressed, but its name does '
                                      'not end in .gz, so it would be read as text. Name it '
                                      '*.csv.gz (it is then read decompressed).'])
    if kind:
        return _Scan([], problems=[f'Input file {path} is {kind}, not a UTF-8 CSV text '
                                      'file. Save it as UTF-8 CSV (plain, or gzip-compressed '
                                      'as *.csv.gz).'])
    head = csv_head(path)
    scan = _Scan(head.header)
    problem = _head_problem(path, head)
    if problem:
        scan.problems.append(problem)
        return scan
    try:
        _scan_rows(path, scan, head, labels, dense, blanks)
    except _Unreadable as e:
        scan.problems.append(f'Input file {path} {e}')
    return scan


def _parquet_types_problems(path: str, schema, labels: Labels, dense: Sequence[str],
                            blanks: Blanks) -> List[str]:
    """Columns whose Parquet type cannot hold what the spec says they hold, or that ExampleGen
    cannot write as one value per row (lists, structs, maps)."""
    problems = []
    for field in schema:
        kind = ('label' if field.name in labels else 'dense' if field.name in dense else
                'categorical id' if field.name in blanks else None)
        if pa.types.is_nested(field.type):
            problems.append(f'Input file {path}, column {field.name!r}: of Parquet type '
                            f'{field.type}, not one value per row. Flatten it or leave it out '
                            'of the export.')
        elif kind in ('label', 'dense') and not _is_numeric(field.type):
            problems.append(f'Input file {path}, column {field.name!r} ({kind}): of Parquet '
                            f'type {field.type}, not a number. Export it as a number '
                            f'({"0 or 1" if kind == "label" else "int or float"}).')
    return problems


def _is_numeric(arrow_type) -> bool:
    return any(test(arrow_type) for test in (pa.types.is_integer, pa.types.is_floating,
                                              pa.types.is_decimal, pa.types.is_boolean))


def _blank_cells(column) -> np.ndarray:
    """True where an id cell is null or holds only spaces (what the decoding writes as no
    value: components/parquet_batches.py)."""
    blank = pc.is_null(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        blank = pc.or_(blank, pc.equal(pc.utf8_trim_whitespace(column), ''))
    return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)


def _scan_parquet(path: str, labels: Labels, dense: Sequence[str], blanks: Blanks) -> _Scan:
    """One pass over a Parquet file, a batch of rows at a time: the CSV checks where they apply
    (module docstring), with row numbers (the first data row is row 1)."""
    try:
        # Beam's file systems, as ExampleGen's Parquet reading: a seekable Python file.
        with filesystems.FileSystems.open(path, compression_type=UNCOMPRESSED) as f:
            parquet = pq.ParquetFile(f)
            schema = parquet.schema_arrow
            names = list(schema.names)
            scan = _Scan(names, tuple(str(field.type) for field in schema))
            slip = _header_slip(CsvHead(names))
            duplicated = _duplicated(names)
            if slip or duplicated:
                scan.problems.append(
                    f'Input file {path}: the column names ({",".join(names)[:120]!r}) '
                    + (slip or f'name {len(duplicated)} column(s) more than once: '
                       f'{_listed(duplicated)}. Rename or remove the duplicates.'))
            scan.problems += _parquet_types_problems(path, schema, labels, dense, blanks)
            if not scan.problems:
                _scan_parquet_rows(path, parquet, scan, labels, blanks)
    except (pa.ArrowException, OSError) as e:
        return _Scan([], problems=[f'Input file {path} is not a readable Parquet file ({e}). '
                                   'Export it again as Parquet, or set data_format to the '
                                   "files' format."])
    return scan


def _scan_parquet_rows(path: str, parquet, scan: _Scan, labels: Labels,
                       blanks: Blanks) -> None:
    """The label, funnel and blank-id checks over the rows of an open Parquet file."""
    present = [name for name in (*labels, *blanks) if name in parquet.schema_arrow.names]
    label_names = [name for name in labels if name in present]
    bad = {name: [] for name in label_names}
    blank = {name: [] for name in blanks if name in present}
    unclicked, pairs, offset = [], collections.Counter(), 1
    for batch in parquet.iter_batches(PARQUET_BATCH, columns=present):
        values = {}
        for name in label_names:
            numbers = pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False)
            is_label = (numbers == 0) | (numbers == 1)  # NaN (a null) is neither
            bad[name] += [f'row {row + offset} {numbers[row]!r}'
                          for row in np.flatnonzero(~is_label)]
            values[name] = np.where(is_label, numbers, -1)
        click, conversion = (values.get(name, np.full(batch.num_rows, -1.0)) for name in labels)
        unclicked += (np.flatnonzero((conversion == 1) & (click == 0)) + offset).tolist()
        codes = collections.Counter(zip(click.tolist(), conversion.tolist()))
        for (c, v), count in codes.items():
            pairs[tuple(LABEL_VALUES.get(x) for x in (c, v))] += count
        for name in blank:
            blank[name] += (np.flatnonzero(_blank_cells(batch.column(name))) + offset).tolist()
        offset += batch.num_rows
    _count_labels(scan, pairs)
    if not scan.rows:
        scan.problems.append(f'Input file {path} has columns but no rows. Remove it or add '
                             'rows.')
    scan.problems += _cell_problems(path, labels, bad, unclicked, blank, blanks, 'row(s)')


def _tfrecord_problems(path: str, labels: Labels) -> List[str]:
    """Conversions without a click in a (gzipped) TFRecord file of tf.Examples."""
    spec = {name: tf.io.FixedLenFeature([], tf.int64, default_value=-1)
            for name in labels}
    compression = 'GZIP' if _is_gzip(path) else None
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


def _files_problems(files: List[str], scans: List[_Scan], labels: Labels) -> List[str]:
    """Each file's problems, then what only the files together show: headers that differ (one
    ExampleGen split needs one header) and a label column with one class only."""
    problems = [problem for scan in scans for problem in scan.problems]
    if problems:
        return problems
    for scan, path in zip(scans[1:], files[1:]):
        if scan.header != scans[0].header:
            return [f'Input files {files[0]} and {path} have different headers '
                    f'({",".join(scans[0].header)[:80]!r} and {",".join(scan.header)[:80]!r}); '
                    'the files of one folder must have the same columns in the same order.']
        changed = [f'{name} ({first} and {other})' for name, first, other in zip(
            scan.header, scans[0].types, scan.types) if first != other]
        if changed:
            return [f'Input files {files[0]} and {path} give column(s) different types: '
                    f'{_listed(changed)}; the files of one folder must agree (cast them alike '
                    'in the export).']
    rows = sum(scan.rows for scan in scans)
    ones, zeros = ([sum(getattr(scan, kind)[i] for scan in scans) for i in (0, 1)]
                   for kind in ('ones', 'zeros'))
    counts = ', '.join(f'{column} = 1 in {ones[i]}, = 0 in {zeros[i]}'
                       for i, column in enumerate(labels))
    for task, (role, column) in enumerate(zip(('click', 'conversion'), labels)):
        missing = [str(value) for value, count in ((1, ones[task]), (0, zeros[task]))
                   if not count]
        if column in scans[0].header and missing:
            problems.append(
                f'Input files {_listed(files)}: the {role} label {column!r} is '
                f'{" or ".join(missing)} in none of the {rows} rows ({counts}): with one class '
                f'only, the {role} task cannot be trained or evaluated. Check the export (a '
                'filter or a join that lost the positives or the negatives).')
    return problems


def list_files(pattern: str) -> List[str]:
    """The files matching `pattern` (subfolders are not input files), sorted."""
    return sorted(path for path in fileio.glob(pattern) if not fileio.isdir(path))


def check_files(files: List[str], data_format: str, labels: Labels,
                dense: Sequence[str] = (), blanks: Optional[Blanks] = None) -> None:
    """Raises InputDataError naming every problem of `files` (one ExampleGen split); `blanks`
    says what a blank means in each id column (trainer/features.py: BLANK_OPTIONS)."""
    blanks = blanks or {}
    problems = []
    nonempty = []
    for path in files:
        if fileio.stat(path).length == 0:
            problems.append(f'Input file {path} is empty. Remove it or replace it with '
                            f'{data_format.upper()} data.')
        else:
            nonempty.append(path)
    if data_format in ('csv', 'parquet') and nonempty:
        scan = _scan_csv if data_format == 'csv' else _scan_parquet
        problems += _files_problems(nonempty, [scan(path, labels, dense, blanks)
                                               for path in nonempty], labels)
    elif data_format == 'tfrecord':
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
                      dense: Sequence[str] = (), blanks: Optional[Blanks] = None) -> List[str]:
    """The input files directly in `data_root` after the check, or InputDataError saying what
    is wrong. `labels` are the feature spec's raw (click, conversion) columns, `dense` its dense
    columns, `blanks` its id columns' blank option."""
    files = folder_files(data_root)
    check_files(files, data_format, labels, dense, blanks)
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
