"""A user's own logs, end to end: other column names and feature counts, a feature spec for
them, an inferred schema, daily spans with a rolling training window, and warm start.

The logs are written as real exports write them: an activity count blank in about 10% of rows,
labels written 1.0 / 0.0 by pandas (span 2), and an Excel CSV with a UTF-8 byte-order mark and
CRLF line ends (span 3, the span the schema is inferred from). No hand edit of the schema.

Day 1: spans 1-3 exist, the window is 2 spans: span 2 is ingested first, span 3 by the run;
Transform and Trainer see spans 2 and 3, the Evaluator span 3. Day 2: span 4 arrives; the next
run trains on spans 3 and 4, warm-started from day 1's blessed model.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_pipeline
from ml_metadata import metadata_store
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
FLOAT_LABELS_SPAN, EXCEL_SPAN = 2, 3
SPEC = """
labels: {click: clicked, conversion: purchased}
categorical:
  - publisher
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
    return logs


def _write_span(data_root, span: int):
    folder = data_root / f'day-{span}'
    folder.mkdir(parents=True)
    logs = _logs(span)
    if span == FLOAT_LABELS_SPAN:
        logs = logs.astype({'clicked': float, 'purchased': float})
    excel = dict(encoding='utf-8-sig', lineterminator='\r\n') if span == EXCEL_SPAN else {}
    logs.to_csv(folder / 'impressions.csv', index=False, **excel)


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
