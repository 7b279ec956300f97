"""ExampleGen with the input check in its executor: CSV files as they really come from exports.

TFX's CsvExampleGen takes the column names from the first line as it is, so a UTF-8
byte-order mark (Excel's CSV export) becomes part of the first column's name, and it types a
column `1.0, 0.0, ...` as FLOAT. This executor keeps TFX's decoding (its reader,
tfx-bsl's CSV parser and column type inference, the same tf.Examples; run a batch of lines at a
time, components/csv_batches.py) and changes two things: the column names come without the
byte-order mark, and label cells are written as the integers 0 and 1 they stand for, so labels
are INT whatever their spelling.

Before that, `pipeline/inputs.py` checks the files ExampleGen is about to read (one streamed
pass each) and stops the run naming the file, the column and the lines. The check runs in
ExampleGen's executor rather than in a component of its own because ExampleGen runs again
whenever its input files change (its driver fingerprints them), whereas a separate step keyed
by the data folder would be a cache hit on tomorrow's files. It runs wherever ExampleGen runs:
the local runner, or a Kubeflow container (files are read through tfx.dsl.io.fileio, so the
data root may be an object store and a run parameter).

The feature spec's label, dense and id columns (with what a blank id means) reach the executor
in ExampleGen's `custom_config` (a protobuf Struct).

Parquet files go through TFX's Parquet executor class with the same input check first; their
rows are written by components/parquet_batches.py, because TFX's conversion writes every 0 as
a missing value.
"""

import os
from typing import Any, Dict, Iterator, List

import apache_beam as beam
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.components.example_gen.custom_executors import parquet_executor
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components import csv_batches, parquet_batches
from components.span_resolution import ResolvesSpan
from components.split_writer import WritesSplitsUnshuffled
from pipeline import inputs
from trainer import features

CSV_ID, TFRECORD_ID = 'CsvExampleGen', 'ImportExampleGen'  # the component ids, as TFX's
PARQUET_ID = 'ParquetExampleGen'


def custom_config(spec: features.FeatureSpec) -> example_gen_pb2.CustomConfig:
    """The columns the input check needs, for ExampleGen's custom_config."""
    columns = struct_pb2.Struct()
    columns.update({'labels': list(spec.label_columns), 'dense': list(spec.dense_names),
                    'blanks': spec.blank_ids})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(columns)
    return config


def _columns(exec_properties: Dict[str, Any]):
    """(labels, dense columns, id column -> blank option) from the custom_config (a JSON string
    in the executor)."""
    config = json_format.Parse(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY],
                               example_gen_pb2.CustomConfig())
    columns = struct_pb2.Struct()
    config.custom_config.Unpack(columns)
    return tuple(columns['labels']), tuple(columns['dense']), dict(columns['blanks'])


def _checked_files(exec_properties: Dict[str, Any], split_pattern: str, data_format: str):
    """The split's input files, after the input check (raises inputs.InputDataError)."""
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    files = inputs.list_files(pattern)
    if not files:
        raise inputs.InputDataError(f'No input file matches {pattern}.')
    inputs.check_files(files, data_format, *_columns(exec_properties))
    return files


def _label_as_integer(cell: bytes) -> bytes:
    """A label cell (checked before) as b'0' or b'1'."""
    return inputs.label_value(cell.decode()).encode()


def _decoding(files: List[str], labels):
    """(column names without a byte-order mark, the label columns' fix) for csv_batches."""
    header = inputs.csv_head(files[0]).header
    return header, {header.index(name): _label_as_integer for name in labels if name in header}


def CsvToExample(files: List[str], labels) -> beam.PTransform:  # noqa: N802 (a PTransform)
    """Checked CSV files (inputs.check_files) -> serialized tf.Examples with TFX's CsvExampleGen
    decoding, a batch of lines at a time (components/csv_batches.py); the column names without
    a byte-order mark and the labels as integers."""
    return csv_batches.CsvToSerializedExamples(files, *_decoding(files, labels))


def csv_examples_in_order(files: List[str], labels) -> Iterator[bytes]:
    """CsvToExample's records in the files' row order, in this process."""
    return csv_batches.decode_in_order(files, *_decoding(files, labels))


def checked_csv_to_example(exec_properties: Dict[str, Any], split_pattern: str):
    """The input check of the split's CSV files, then CsvToExample over them."""
    files = _checked_files(exec_properties, split_pattern, 'csv')
    return CsvToExample(files, _columns(exec_properties)[0])


class CsvExecutor(ResolvesSpan, WritesSplitsUnshuffled, csv_executor.Executor):
    """TFX's CsvExampleGen executor with the input check, the byte-order mark and labels as
    integers (CsvToExample), resolving the span itself where no driver did (Kubeflow), writing
    its splits without the per-record shuffle (components/split_writer.py)."""

    def GetInputSourceToExamplePTransform(self):
        return checked_csv_to_example


def checked_parquet_to_example(exec_properties: Dict[str, Any], split_pattern: str):
    """The input check of the split's Parquet files, then their rows as tf.Examples."""
    files = _checked_files(exec_properties, split_pattern, 'parquet')
    return parquet_batches.ParquetToSerializedExamples(files, _columns(exec_properties)[0])


class ParquetExecutor(ResolvesSpan, WritesSplitsUnshuffled, parquet_executor.Executor):
    """TFX's Parquet ExampleGen executor with the input check first and the rows written by
    components/parquet_batches.py (labels INT, a 0 kept as 0), resolving the span itself where
    no driver did (Kubeflow), writing its splits without the per-record shuffle."""

    def GetInputSourceToExamplePTransform(self):
        return checked_parquet_to_example


class TFRecordExecutor(ResolvesSpan, WritesSplitsUnshuffled, import_executor.Executor):
    """TFX's ImportExampleGen executor with the input check first (funnel rule per record),
    resolving the span itself where no driver did (Kubeflow), writing its splits without the
    per-record shuffle (components/split_writer.py)."""

    def GetInputSourceToExamplePTransform(self):
        read = super().GetInputSourceToExamplePTransform()

        def checked(exec_properties: Dict[str, Any], split_pattern: str):
            _checked_files(exec_properties, split_pattern, 'tfrecord')
            return read(exec_properties, split_pattern)
        return checked


EXECUTORS = {'csv': (CsvExecutor, CSV_ID), 'parquet': (ParquetExecutor, PARQUET_ID),
             'tfrecord': (TFRecordExecutor, TFRECORD_ID)}


def checked_example_gen(data_format: str, spec: features.FeatureSpec,
                        **kwargs) -> FileBasedExampleGen:
    """ExampleGen for `data_format` ('csv', 'parquet' or 'tfrecord') with the checked executor;
    `kwargs` are FileBasedExampleGen's (input_base, input_config, output_config, range_config)."""
    executor, component_id = EXECUTORS[data_format]
    return FileBasedExampleGen(
        custom_config=custom_config(spec),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor), **kwargs,
    ).with_id(component_id)
