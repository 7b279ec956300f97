"""Parquet files -> serialized tf.Examples, a batch of rows at a time (ExampleGen's Parquet
executor and the schema inference run it, components/example_gen.py).

TFX's Parquet executor reads rows as Python dicts and converts them with
`example_gen.utils.dict_to_example`, which writes every falsy value as a feature with no value:
a label 0, a price 0.0, a False and an empty string become missing (tests/test_inputs.py
shows it), and float labels stay FLOAT. Here Beam's Parquet reading gives Arrow tables and
tfx-bsl's C++ encoder writes them, as the CSV decoding does (components/csv_batches.py): a null
(or an empty string) is an empty value list, integers and booleans INT, floats and decimals
(Spark's DECIMAL) FLOAT (float32, as tf.Example stores them), strings BYTES, other scalar types
(timestamps, dates) their text; label columns (checked 0/1 by pipeline/inputs.py before) INT.
"""

from typing import Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tfx_bsl.coders import example_coder

BATCH_ROWS = 10_000


def _values(column: pa.Array, label: bool) -> pa.Array:
    """One column's present values in the type tf.Example stores (see the module docstring)."""
    kind = column.type
    if label or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.int64())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(column, pa.float32())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pc.cast(column, pa.binary())
    return pc.cast(pc.cast(column, pa.string()), pa.binary())


def _value_list(column: pa.Array, label: bool) -> pa.ListArray:
    """[value] per cell, [] per null (or empty string) cell."""
    present = pc.invert(pc.is_null(column))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        present = pc.and_(present, pc.not_equal(pc.utf8_trim_whitespace(column), ''))
    present = pc.fill_null(present, False).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(present, dtype=np.int32)])
    values = _values(column.filter(pa.array(present)), label)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def to_serialized_examples(table: pa.Table, labels: Sequence[str]) -> Iterator[bytes]:
    """The rows of an Arrow table as serialized tf.Examples."""
    for batch in table.to_batches(BATCH_ROWS):
        lists = [_value_list(column, name in labels)
                 for name, column in zip(batch.schema.names, batch.columns)]
        yield from example_coder.RecordBatchToExamples(
            pa.RecordBatch.from_arrays(lists, batch.schema.names))


class ParquetToSerializedExamples(beam.PTransform):
    """Checked Parquet `files` -> serialized tf.Examples, by Beam's Parquet reading."""

    def __init__(self, files: Sequence[str], labels: Sequence[str]):
        super().__init__()
        self._files, self._labels = list(files), tuple(labels)

    def expand(self, pipeline):
        labels = self._labels
        return (pipeline
                | 'CreateFilenames' >> beam.Create(self._files)
                | 'ReadParquet' >> beam.io.ReadAllFromParquetBatched()
                | 'ToSerializedExamples' >> beam.FlatMap(to_serialized_examples, labels))
