"""A user's own logs, end to end: other column names and feature counts, a feature spec for
them, an inferred schema, daily spans with a rolling training window, and warm start.

The logs are written as real exports write them: an activity count blank in about 10% of rows,
a publisher id blank in about 5% (unknown: the spec says `blank: oov`), labels written 1.0 / 0.0
by pandas (span 2), an Excel CSV with a UTF-8 byte-order mark and CRLF line ends (span 3, the
span the schema is inferred from) and a gzip-compressed dump (span 4, `*.csv.gz`). No hand edit
of the schema. A Parquet export (pandas / pyarrow, as Spark and Hive write it) goes through
`make schema`'s code and a validate-only run.

Day 1: spans 1-3 exist, the window is 2 spans: span 2 is ingested first, span 3 by the run;
Transform and Trainer see spans 2 and 3, the Evaluator span 3. Day 2: span 4 arrives; the next
run trains on spans 3 and 4, warm-started from day 1's blessed model.
"""

import glob
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import run_pipeline
from ml_metadata import metadata_store
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from pipeline import infer_schema, summary
from pipeline.config import EvaluationConfig, ModelConfig, load_config
from simulator.funnel import simulate
from trainer import features
from trainer.warmup import serialize_example

pytestmark = pytest.mark.slow

ROWS_PER_SPAN = 2000
# The user's columns, from the simulator's: 3 categorical, 3 dense, renamed labels, one column
# the model does not use.
RENAMED = {'item_category': 'publisher', 'device': 'os', 'ad_position': 'slot',
           'price': 'bid', 'user_age': 'age', 'user_activity': 'activity', 'click': 'clicked',
           'conversion': 'purchased'}
FLOAT_LABELS_SPAN, EXCEL_SPAN, GZIP_SPAN = 2, 3, 4
SPEC = """
labels: {click: clicked, conversion: purchased}
categorical:
  - {name: publisher, blank: oov}
  - {name: os, embedding_dim: 3}
  - {name: slot, top_k: 5}
dense:
  - {name: bid, log: true}
  - age
  - {name: activity, log: true}
slices: [os]
"""


def _logs(span: int):
    examples, _ = simulate(ROWS_PER_SPAN, seed=span)
    logs = examples[list(RENAMED)].rename(columns=RENAMED)
    logs['request_time'] = [f'2026-11-{span:02d}T{i % 24:02d}:00' for i in range(len(logs))]
    blank = np.random.default_rng(span).random(len(logs)) < 0.1
    logs['activity'] = logs['activity'].astype('Int64').mask(blank)  # written as blank cells
    logs['publisher'] = logs['publisher'].mask(np.random.default_rng(100 + span).random(len(logs))
                                               < 0.05)
    return logs


def _write_span(data_root, span: int):
    folder = data_root / f'day-{span}'
    folder.mkdir(parents=True)
    logs = _logs(span)
    if span == FLOAT_LABELS_SPAN:
        logs = logs.astype({'clicked': float, 'purchased': float})
    excel = dict(encoding='utf-8-sig', lineterminator='\r\n') if span == EXCEL_SPAN else {}
    name = 'impressions.csv.gz' if span == GZIP_SPAN else 'impressions.csv'
    logs.to_csv(folder / name, index=False, **excel)  # compressed by the name's extension


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('own_logs')
    for span in (1, 2, 3):
        _write_span(root / 'logs', span)
    (root / 'spec.yaml').write_text(SPEC)
    config = load_config(
        env={}, pipeline_name='own-logs', data_root=str(root / 'logs'),
        output_root=str(root / 'outputs'), feature_spec_path=str(root / 'spec.yaml'),
        schema_path=str(root / 'schema' / 'schema.pbtxt'), span_folder='day-{SPAN}',
        train_window_spans=2,
        # 2,000-row spans: about one conversion in the validation and the eval split, too few
        # to fit or to judge a calibration (tests/test_pipeline_e2e.py does, on more rows).
        model=ModelConfig(train_steps=60, steps_per_validation=30, eval_steps=3, batch_size=128,
                          warm_start=True, calibration=False),
        evaluation=EvaluationConfig(min_click_auc=0.0, min_conversion_auc=0.0, min_cvr_auc=0.0,
                                    max_auc_regression=1.0, gate_calibration=False,
                                    min_class_rows=0, min_eval_positives=0))
    schema = infer_schema.infer_schema(config)
    return root, config, schema


@pytest.fixture(scope='module')
def day_1(setup):
    _, config, _ = setup
    run_pipeline(config)
    return summary.summarize(config)


@pytest.fixture(scope='module')
def day_2(setup, day_1):
    root, config, _ = setup
    _write_span(root / 'logs', 4)
    run_pipeline(config)
    return summary.summarize(config)


def _store(config):
    return metadata_store.MetadataStore(sqlite_metadata_connection_config(config.metadata_path))


def _latest_inputs(config, node: str, key: str):
    """The input artifacts `key` of the latest execution of pipeline node `node`."""
    store = _store(config)
    context = store.get_context_by_type_and_name('node', f'{config.pipeline_name}.{node}')
    execution = max(store.get_executions_by_context(context.id),
                    key=lambda e: e.create_time_since_epoch)
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == e.INPUT and e.path.steps[0].key == key]
    return store.get_artifacts_by_id([e.artifact_id for e in events])


def _spans(config, node: str):
    return sorted(a.custom_properties['span'].int_value
                  for a in _latest_inputs(config, node, 'examples'))


def test_inferred_schema_applies_the_spec(setup):
    _, config, schema = setup
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(RENAMED.values()) | {'request_time'}
    for label in ('clicked', 'purchased'):
        assert (by_name[label].int_domain.min, by_name[label].int_domain.max) == (0, 1)
        assert list(by_name[label].not_in_environment) == ['SERVING']
    assert by_name['os'].presence.min_fraction == 1.0
    # publisher, blank: oov: may miss (a blank is an unknown id), at most one value
    assert not by_name['publisher'].HasField('presence') and not by_name['publisher'].HasField(
        'shape') and by_name['publisher'].value_count.max == 1
    assert by_name['os'].WhichOneof('domain_info') is None  # unseen values go to OOV buckets
    assert by_name['activity'].value_count.max == 1 and not by_name['activity'].HasField('shape')
    assert by_name['bid'].float_domain.min == 0 and by_name['bid'].float_domain.disallow_nan
    assert by_name['bid'].drift_comparator.jensen_shannon_divergence.threshold > 0
    assert by_name['os'].drift_comparator.infinity_norm.threshold > 0
    assert os.listdir(os.path.dirname(config.schema_path)) == ['schema.pbtxt']


def test_day_1_trains_on_the_window_and_evaluates_on_the_latest_span(setup, day_1):
    _, config, _ = setup
    assert day_1['blessed'] and day_1['pushed_to']
    assert _spans(config, 'Transform') == [2, 3]
    assert _spans(config, 'Evaluator') == [3]
    # Nothing in production yet: the base model holds no version (components/production_model.py)
    [base] = _latest_inputs(config, 'Trainer', 'base_model')
    assert base.custom_properties['production_version'].string_value == ''
    assert not os.path.exists(os.path.join(base.uri, 'Format-Serving'))


def test_pushed_model_takes_the_users_features(setup, day_1):
    model = tf.saved_model.load(day_1['pushed_to'])
    raw = _logs(9).drop(columns=['clicked', 'purchased', 'request_time'])[:32]
    raw['activity'] = raw['activity'].fillna(0).astype(int)  # an integer has no NaN to send
    raw['publisher'] = raw['publisher'].fillna('')  # an unknown id, sent empty
    serve = model.signatures[features.RAW_SIGNATURE]
    assert set(serve.structured_input_signature[1]) == {'publisher', 'os', 'slot', 'bid', 'age',
                                                        'activity'}
    outputs = serve(**{name: tf.constant(raw[name].to_numpy(
        dtype=np.float32 if raw[name].dtype == float else None)) for name in raw.columns})
    from_examples = model.signatures[features.DEFAULT_SIGNATURE](examples=tf.constant(
        [serialize_example(row) for row in raw.to_dict('records')]))
    for name in features.OUTPUTS:
        assert outputs[name].shape == (32,)
        assert np.all((outputs[name].numpy() >= 0) & (outputs[name].numpy() <= 1))
        np.testing.assert_allclose(outputs[name], from_examples[name], rtol=1e-5)


def test_a_blank_publisher_is_served_as_an_unknown_id(day_1):
    """`blank: oov`: the vocabulary has no entry for a blank (it was computed over the present
    ids); a request without the publisher (tf.Example) or with an empty one (serving_raw) gets
    the same scores as an id never seen in training would in its OOV bucket, finite and in
    [0, 1], and both forms agree."""
    model = tf.saved_model.load(day_1['pushed_to'])
    with open(os.path.join(day_1['pushed_to'], 'assets', 'publisher')) as f:
        vocabulary = f.read().splitlines()
    assert vocabulary and '' not in vocabulary
    raw = _logs(9).drop(columns=['clicked', 'purchased', 'request_time'])[:8]
    raw['activity'] = raw['activity'].fillna(0).astype(int)
    raw['publisher'] = ''
    serve = model.signatures[features.RAW_SIGNATURE]
    empty = serve(**{name: tf.constant(raw[name].to_numpy(
        dtype=np.float32 if raw[name].dtype == float else None)) for name in raw.columns})
    without = model.signatures[features.DEFAULT_SIGNATURE](examples=tf.constant(
        [serialize_example(row) for row in raw.drop(columns=['publisher']).to_dict('records')]))
    for name in features.OUTPUTS:
        assert np.all((empty[name].numpy() >= 0) & (empty[name].numpy() <= 1))
        np.testing.assert_allclose(empty[name], without[name], rtol=1e-5)


def test_evaluation_uses_the_users_labels_and_slices(day_1):
    assert {'click', 'conversion', 'cvr (clicked)'} <= set(day_1['tasks'])
    assert day_1['tasks']['cvr (clicked)']['example_count'] > 0  # the clicked = 1 slice


def test_day_2_slides_the_window_and_warm_starts(setup, day_1, day_2):
    _, config, _ = setup
    assert _spans(config, 'Transform') == [3, 4]
    assert _spans(config, 'Evaluator') == [4]
    [base] = _latest_inputs(config, 'Trainer', 'base_model')  # day 1's pushed model
    version = base.custom_properties['production_version'].string_value
    assert day_1['pushed_to'] and version == os.path.basename(day_1['pushed_to'])
    assert day_2['blessed'] and day_2['pushed_to'] != day_1['pushed_to']


@pytest.fixture(scope='module')
def parquet_run(tmp_path_factory):
    """A Parquet export of one day as pandas / pyarrow write it (float and bool labels, nulls in
    a count, blank publishers, a timestamp column, two row groups): `make schema`'s code, then
    a validate-only run (ExampleGen to the AnomaliesGate)."""
    root = tmp_path_factory.mktemp('parquet')
    (root / 'logs').mkdir()
    logs = _logs(5).astype({'clicked': float, 'purchased': bool})
    logs['request_time'] = pd.to_datetime(logs['request_time'])
    logs.to_parquet(root / 'logs' / 'impressions.parquet', index=False, row_group_size=1000)
    (root / 'spec.yaml').write_text(SPEC)
    config = load_config(
        env={}, pipeline_name='own-parquet', data_root=str(root / 'logs'), data_format='parquet',
        output_root=str(root / 'outputs'), feature_spec_path=str(root / 'spec.yaml'),
        schema_path=str(root / 'schema' / 'schema.pbtxt'),
        evaluation=EvaluationConfig(min_class_rows=0, min_eval_positives=0))
    schema = infer_schema.infer_schema(config)
    run_pipeline(config, validate_only=True)
    return config, schema, logs


def test_parquet_logs_are_read_with_integer_labels_and_their_zeros(parquet_run):
    config, schema, logs = parquet_run
    by_name = {f.name: f for f in schema.feature}
    assert by_name['clicked'].type == by_name['purchased'].type == schema_pb2.INT
    assert by_name['activity'].value_count.max == 1  # nulls: may miss
    files = glob.glob(os.path.join(config.pipeline_root, 'ParquetExampleGen', 'examples', '*',
                                   'Split-*', '*.gz'))
    examples = [tf.train.Example.FromString(record.numpy())
                for record in tf.data.TFRecordDataset(files, 'GZIP')]
    assert len(examples) == len(logs)
    clicks = [e.features.feature['clicked'].int64_list.value for e in examples]
    assert sorted(value for [value] in clicks) == sorted(logs['clicked'].astype(int))
    times = {e.features.feature['request_time'].bytes_list.value[0] for e in examples}
    assert b'2026-11-05 00:00:00.000000' in times  # a timestamp is written as its text
    store = _store(config)
    gate = store.get_context_by_type_and_name('node', f'{config.pipeline_name}.AnomaliesGate')
    [execution] = store.get_executions_by_context(gate.id)
    assert execution.last_known_state == execution.COMPLETE
