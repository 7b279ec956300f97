"""The Trainer's training input: the transformed train split streamed from the files (default),
or read into memory once when it has at most model.in_memory_max_rows; both yield the same rows.
Without a materialized Transform (model.materialize_transform false), the raw examples
transformed batch by batch yield the rows the Transform writes."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_transformed_examples

from trainer import features, train
from trainer.config import ModelConfig
from trainer.warmup import serialize_example

BATCH = 8


@pytest.fixture(scope='module')
def rows(transform_run):
    """The tiny Transform's train rows, whole batches of them."""
    return transform_run.train_rows[:len(transform_run.train_rows) // BATCH * BATCH]


@pytest.fixture(scope='module')
def examples(transform_run, rows, tmp_path_factory):
    path = tmp_path_factory.mktemp('examples') / 'transformed.tfrecord.gz'
    write_transformed_examples(rows, transform_run.tft_output, path)
    return str(path)


@pytest.fixture(scope='module')
def raw_examples(transform_run, rows, tmp_path_factory):
    """The same rows before the Transform, as ExampleGen writes them (gzipped raw tf.Examples,
    a missing value left out), in the same order."""
    path = tmp_path_factory.mktemp('raw') / 'raw.tfrecord.gz'
    with tf.io.TFRecordWriter(str(path), 'GZIP') as writer:
        for row in transform_run.train_df[:len(rows)].to_dict('records'):
            writer.write(serialize_example(row))
    return str(path)


def _rows(columns) -> list:
    """Rows as sortable tuples, every column in name order."""
    names = sorted(columns)
    return sorted(zip(*(np.asarray(columns[name]).tolist() for name in names)))


def _epoch(dataset, rows: int) -> dict:
    """One epoch (rows / BATCH batches) of (inputs, labels, weights) as columns."""
    batches = list(dataset.take(rows // BATCH).as_numpy_iterator())
    assert all(len(labels[features.P_CLICK]) == BATCH for _, labels, _ in batches)
    columns = {name: np.concatenate([inputs[name] for inputs, _, _ in batches])
               for name in batches[0][0]}
    columns.update({label: np.concatenate([labels[output] for _, labels, _ in batches])
                    for output, label in ((features.P_CLICK, features.CLICK_LABEL),
                                          (features.P_CONVERSION, features.CONVERSION_LABEL))})
    return columns


def test_one_pass_parses_every_row_in_file_order(transform_run, rows, examples):
    batches = list(train.parsed_batches([examples], transform_run.tft_output, BATCH)
                   .as_numpy_iterator())
    assert [len(batch[features.CLICK_LABEL]) for batch in batches] == [BATCH] * len(batches)
    for name in transform_run.tft_output.transformed_feature_spec():
        np.testing.assert_allclose(np.concatenate([batch[name] for batch in batches]),
                                   [row[name] for row in rows], err_msg=name)


@pytest.mark.parametrize('materialize', [True, False])
def test_raw_examples_are_transformed_as_the_transform_writes_them(
        transform_run, rows, examples, raw_examples, materialize):
    """transform_output follows model.materialize_transform: with it off, parsed_batches reads the
    raw examples and applies the transform graph, giving the Transform's rows, column for column
    (dtypes included), and so does the in-memory load; with it on, both read the transformed
    ones."""
    config = ModelConfig(materialize_transform=materialize)
    output = train.transform_output(transform_run.transform_fn_dir, config)
    assert isinstance(output, train.RawExamplesOutput) != materialize
    batches = list(train.parsed_batches([examples if materialize else raw_examples], output,
                                        BATCH).as_numpy_iterator())
    spec = transform_run.tft_output.transformed_feature_spec()
    assert [set(batch) for batch in batches] == [set(spec)] * (len(rows) // BATCH)
    for name, feature in spec.items():
        values = np.concatenate([batch[name] for batch in batches])
        assert values.dtype == feature.dtype.as_numpy_dtype, name
        np.testing.assert_allclose(values, [row[name] for row in rows], rtol=1e-6, err_msg=name)
    assert train.count_rows([raw_examples]) == len(rows)
    loaded = train.load_columns([examples if materialize else raw_examples], output, 10_000)
    assert set(loaded) == set(spec)
    for name, values in loaded.items():  # in file order, as float32 (the last bit may differ)
        np.testing.assert_allclose(values, [row[name] for row in rows], rtol=1e-6, err_msg=name)


def test_load_columns_reads_every_row(transform_run, rows, examples):
    columns = train.load_columns([examples], transform_run.tft_output, max_rows=10_000)
    expected = rows
    assert set(columns) == set(transform_run.tft_output.transformed_feature_spec())
    assert all(len(values) == len(expected) for values in columns.values())
    assert _rows(columns) == _rows({name: [row[name] for row in expected] for name in columns})


def test_load_columns_gives_up_above_max_rows(transform_run, rows, examples):
    output = transform_run.tft_output
    assert train.load_columns([examples], output, max_rows=len(rows) - 1) is None
    assert len(train.load_columns([examples], output, max_rows=len(rows))[
        features.CLICK_LABEL]) == len(rows)


def test_in_memory_epochs_hold_every_row_once_in_a_new_order(transform_run, rows, examples):
    config = ModelConfig(batch_size=BATCH, seed=0, in_memory_max_rows=10_000)
    dataset = train.train_input([examples], transform_run.tft_output, config)
    first = _epoch(dataset, len(rows))
    second = _epoch(dataset.skip(len(rows) // BATCH), len(rows))
    loaded = train.load_columns([examples], transform_run.tft_output, max_rows=10_000)
    assert _rows(first) == _rows(loaded) == _rows(second)
    assert any(not np.array_equal(first[name], second[name]) for name in first)


def test_streamed_and_in_memory_inputs_have_the_same_structure(transform_run, examples):
    config = ModelConfig(batch_size=BATCH, seed=0)  # the default: streamed
    output = transform_run.tft_output
    streamed = next(iter(train.train_input([examples], output, config)))
    in_memory = next(iter(train.train_input([examples], output, dataclasses.replace(
        config, in_memory_max_rows=10_000))))
    for memory_part, streamed_part in zip(in_memory, streamed):
        assert set(memory_part) == set(streamed_part)
        for name in memory_part:
            assert memory_part[name].shape == streamed_part[name].shape == (BATCH,), name
            assert memory_part[name].dtype == streamed_part[name].dtype, name
