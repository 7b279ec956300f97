"""CSV files -> serialized tf.Examples, decoded a batch of lines at a time (ExampleGen's
executor and the schema inference run it, components/example_gen.py).

TFX's CsvExampleGen sends every line through five Beam steps and builds each tf.Example in
Python, field by field; at 1M rows that was most of ExampleGen's time (bench/README.md,
ExampleGen profile). Here the same decisions are made on batches, by the same libraries: TFX's
reader's rules (header skipped, quoted line breaks joined; *.gz read decompressed) and
tfx-bsl's CSV parser per line, tfx-bsl's
type inference (INT < FLOAT < STRING over all the files, blank cells left out) once per distinct
cell value, and tfx-bsl's C++ encoder from Arrow columns to tf.Examples. A blank cell is an empty
value list, as TFX writes it (a column blank in every file, which TFX writes as a feature of no
kind, goes through TFX's own conversion). The records are serialized deterministically: the
bytes TFX's hash split keys on, so every row lands in the split it did under TFX's decoding.
"""

from typing import Callable, Dict, Iterable, Iterator, List, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx_bsl.coders import csv_decoder, example_coder

from pipeline import inputs

BATCH_LINES = 5_000  # CSV records per Beam element

ColumnType = csv_decoder.ColumnType
Columns = List[tuple]  # one tuple of cells (bytes) per column; blank lines left out


def _csv_records(path: str) -> Iterator[str]:
    """The file's CSV records after its header, as TFX's reader
    (csv_executor._ReadCsvRecordsFromTextFile) gives them: quoted line breaks joined, a file
    decompressed by Beam when its name says so (*.gz). Read with readline, because Beam's
    decompressing file cannot be iterated, as TFX's reader iterates its file. A first line
    `sep=,` (a spreadsheet's delimiter hint, pipeline/inputs.py) is skipped with the header."""
    with beam.io.filesystems.FileSystems.open(path) as file:
        if inputs.delimiter_hint(file.readline()) is not None:
            file.readline()
        buffer = csv_executor._CsvLineBuffer()
        for line in iter(file.readline, b''):
            buffer.write(line.decode('utf-8'))
            if buffer.is_complete_line():
                yield buffer.read()
        if not buffer.is_empty():
            raise ValueError(f'Csv record had unbalanced quotes. File: {path}')


class _ReadCsvBatches(beam.DoFn):
    """A file's CSV records (_csv_records), in lists of BATCH_LINES."""

    def process(self, path: str) -> Iterable[List[str]]:
        batch = []
        for record in _csv_records(path):
            batch.append(record)
            if len(batch) == BATCH_LINES:
                yield batch
                batch = []
        if batch:
            yield batch


class _ParseBatch(beam.DoFn):
    """CSV records -> columns of cells (tfx-bsl's parser, blank lines skipped), the cells of
    `fixes`' columns replaced as their function says (called once per distinct cell)."""

    def __init__(self, width: int, fixes: Dict[int, Callable[[bytes], bytes]]):
        self._width, self._fixes = width, fixes
        self._reader = None

    def setup(self):
        self._reader = csv_decoder._CSVRecordReader(',')

    def process(self, records: List[str]) -> Iterable[Columns]:
        rows = [cells for cells in map(self._reader.ReadLine, records) if cells]
        if not rows:
            return
        wrong = next((cells for cells in rows if len(cells) != self._width), None)
        if wrong:  # as TFX's conversion stops (the input check names the line before)
            raise ValueError(f'Invalid CSV line: {wrong}')
        columns = list(zip(*rows))
        for index, fix in self._fixes.items():
            fixed = {cell: fix(cell) for cell in set(columns[index])}
            columns[index] = tuple(map(fixed.__getitem__, columns[index]))
        yield columns


@beam.typehints.with_input_types(Columns)
@beam.typehints.with_output_types(List[csv_decoder.ColumnInfo])
class _BatchTypeInferrer(csv_decoder.ColumnTypeInferrer):
    """tfx-bsl's column type inference over batches of columns, each distinct cell typed once."""

    def add_input(self, accumulator, columns: Columns):
        for name, column in zip(self._column_names, columns):
            for cell_type in map(csv_decoder._InferValueType, set(column)):
                if name not in accumulator or cell_type > accumulator[name]:
                    accumulator[name] = cell_type
        return accumulator


def _value_list(column: tuple, column_type: ColumnType) -> pa.Array:
    """One column of a batch as Arrow lists: [value] per filled cell, [] per blank one; the
    values parsed as TFX's handlers parse them (int(), float() stored as float32, bytes)."""
    filled = [cell for cell in column if cell]
    lengths = np.fromiter(map(bool, column), np.int32, len(column))
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)])
    if column_type == ColumnType.INT:
        values = pa.array(list(map(int, filled)), pa.int64())
    elif column_type == ColumnType.FLOAT:
        values = pa.array(np.array(list(map(float, filled))).astype(np.float32))
    else:
        values = pa.array(filled, pa.binary())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


class _ToSerializedExamples(beam.DoFn):
    """A batch of columns -> its rows' tf.Examples, serialized deterministically."""

    def __init__(self, names: Sequence[str]):
        self._names = list(names)

    def process(self, columns: Columns, column_infos) -> Iterable[List[bytes]]:
        types = [info.type for info in column_infos]
        if ColumnType.UNKNOWN in types:  # a feature of no kind: TFX's own conversion
            to_example = csv_executor._ParsedCsvToTfExample()
            examples = [example for row in zip(*columns)
                        for example in to_example.process(list(row), column_infos)]
        else:
            batch = pa.RecordBatch.from_arrays(
                [_value_list(column, kind) for column, kind in zip(columns, types)],
                self._names)
            examples = map(tf.train.Example.FromString,
                           example_coder.RecordBatchToExamples(batch))
        yield [example.SerializeToString(deterministic=True) for example in examples]


class CsvToSerializedExamples(beam.PTransform):
    """CSV `files` whose columns are `header` -> serialized tf.Examples (batches of lines
    reshuffled, so that a cluster spreads them over its workers);
    `fixes` maps a column's index to a function of its cells (bytes -> bytes)."""

    def __init__(self, files: Sequence[str], header: List[str],
                 fixes: Dict[int, Callable[[bytes], bytes]]):
        super().__init__()
        self._files, self._header, self._fixes = list(files), header, fixes

    def expand(self, pipeline):
        batches = (pipeline
                   | 'CreateFilenames' >> beam.Create(self._files)
                   | 'ReadCsvBatches' >> beam.ParDo(_ReadCsvBatches())
                   | 'SpreadBatches' >> beam.Reshuffle()  # over the workers of a cluster
                   | 'ParseBatches' >> beam.ParDo(_ParseBatch(len(self._header), self._fixes)))
        column_infos = beam.pvalue.AsSingleton(batches | 'InferColumnTypes' >> beam.CombineGlobally(
            _BatchTypeInferrer(self._header, skip_blank_lines=True)))
        return (batches
                | 'ToSerializedExamples' >> beam.ParDo(_ToSerializedExamples(self._header),
                                                       column_infos)
                | 'Unbatch' >> beam.FlatMap(lambda records: records))


def decode_in_order(files: Sequence[str], header: List[str],
                    fixes: Dict[int, Callable[[bytes], bytes]]) -> Iterator[bytes]:
    """The same serialized tf.Examples as CsvToSerializedExamples, in the files' row order, in
    this process (no Beam): for checks that line the records up with the rows."""
    parse = _ParseBatch(len(header), fixes)
    parse.setup()
    batches = [columns for path in files for records in _ReadCsvBatches().process(path)
               for columns in parse.process(records)]
    inferrer = _BatchTypeInferrer(header, skip_blank_lines=True)
    accumulator = inferrer.create_accumulator()
    for columns in batches:
        accumulator = inferrer.add_input(accumulator, columns)
    column_infos = inferrer.extract_output(accumulator)
    to_examples = _ToSerializedExamples(header)
    for columns in batches:
        yield from next(iter(to_examples.process(columns, column_infos)))
