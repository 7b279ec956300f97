"""Tests of the serving contract: the warmup requests an export ships (trainer/warmup.py), the
checks that replay them (components/warmup_replay.py) and the component that blesses or blocks
the push (components/serving_contract.py)."""

import functools
import json
import logging
import math
import os
import shutil

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from conftest import SPEC
from tensorflow_serving.apis import prediction_log_pb2
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components.serving_contract import REPORT_FILE, ServingContractCheck
from components.warmup_replay import replay
from trainer import features, warmup
from trainer.export import serving_feature_spec


def test_export_ships_prediction_logs_for_both_signatures(exported_model_dir, transform_run):
    """assets.extra/tf_serving_warmup_requests holds PredictionLogs: one serving_default and one
    serving_raw request per batch size, with the inputs each signature takes."""
    path = os.path.join(exported_model_dir, warmup.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]
    assert {log.WhichOneof('log_type') for log in logs} == {'predict_log'}
    requests = [log.predict_log.request for log in logs]
    spec = serving_feature_spec(transform_run.tft_output, SPEC)
    for request, (size, signature) in zip(requests, [
            (size, signature) for size in warmup.BATCH_SIZES
            for signature in (features.DEFAULT_SIGNATURE, features.RAW_SIGNATURE)], strict=True):
        assert request.model_spec.signature_name == signature
        expected_inputs = ({features.EXAMPLES_INPUT} if signature == features.DEFAULT_SIGNATURE
                           else set(spec))
        assert set(request.inputs) == expected_inputs
        for tensor in request.inputs.values():
            assert tf.make_ndarray(tensor).shape == (size,)


def test_warmup_rows_are_valid_and_cover_known_unseen_and_missing(transform_run, raw_schema):
    """One row of the most frequent ids, one of never-seen ids with item_hist_ctr missing; both
    valid against schema/schema.pbtxt in the SERVING environment (TFDV finds no anomaly)."""
    known, unseen = warmup.example_rows(transform_run.tft_output,
                                        serving_feature_spec(transform_run.tft_output, SPEC),
                                        SPEC.categorical_names)
    assert known['user_id'] == 'u_hot'  # the most frequent user of the tiny Transform run
    assert unseen['user_id'] == unseen['item_id'] == warmup.UNSEEN_ID
    assert unseen['device'] == known['device']  # a closed domain: no unseen value is valid
    assert math.isnan(unseen['item_hist_ctr']) and not math.isnan(known['item_hist_ctr'])
    stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame([known, unseen]))
    anomalies = tfdv.validate_statistics(stats, raw_schema, environment='SERVING')
    assert dict(anomalies.anomaly_info) == {}


def test_exported_model_keeps_the_contract(exported_model_dir):
    """The real export passes every check on all its warmup requests."""
    assert replay(exported_model_dir) == {'requests': 2 * len(warmup.BATCH_SIZES),
                                          'failures': []}


@functools.cache
def _raw_input_spec(exported_model_dir):
    return tf.saved_model.load(exported_model_dir).signatures[
        features.RAW_SIGNATURE].structured_input_signature[1]


def _fake_model(root, outputs, exported_model_dir, raw_signature=True) -> str:
    """A tiny SavedModel with the real export's signature inputs and warmup requests, whose
    signatures return `outputs(batch)`. Returns its directory."""
    spec = _raw_input_spec(exported_model_dir)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve_examples(examples):
        return outputs(tf.shape(examples)[0])

    @tf.function(input_signature=[spec])
    def serve_raw(raw):
        return outputs(tf.shape(raw['user_id'])[0])

    signatures = {features.DEFAULT_SIGNATURE: serve_examples}
    if raw_signature:
        signatures[features.RAW_SIGNATURE] = serve_raw
    tf.saved_model.save(tf.Module(), str(root), signatures=signatures)
    shutil.copytree(os.path.join(exported_model_dir, 'assets.extra'),
                    os.path.join(root, 'assets.extra'))
    return str(root)


def _outputs(p_click=0.1, p_cvr=0.5, p_conversion=0.05, dtype=tf.float32, rank=1, drop=()):
    """outputs(batch): constant [batch] (or [batch, 1]) probabilities."""
    def make(batch):
        shape = tf.stack([batch] + [1] * (rank - 1))
        values = {features.P_CLICK: p_click, features.P_CVR: p_cvr,
                  features.P_CONVERSION: p_conversion}
        return {name: tf.fill(shape, tf.constant(value, dtype))
                for name, value in values.items() if name not in drop}
    return make


def test_a_healthy_fake_model_passes(tmp_path, exported_model_dir):
    """The fake model itself is fine, so each broken variant below fails for its one defect."""
    assert replay(_fake_model(tmp_path / 'm', _outputs(), exported_model_dir))['failures'] == []


@pytest.mark.parametrize('check, outputs, detail', [
    ('funnel order', _outputs(p_conversion=0.2), 'p_conversion > p_click at rows [0]'),
    ('range', _outputs(p_click=float('nan')), 'p_click is NaN or outside [0, 1] at rows [0]'),
    ('range', _outputs(p_cvr=1.5), 'p_cvr is NaN or outside [0, 1]'),
    ('output names', _outputs(drop=(features.P_CVR,)), "missing ['p_cvr']"),
    ('dtype', _outputs(dtype=tf.float64), 'p_click is float64, expected float32'),
    ('shape', _outputs(rank=2), 'p_click has shape [1, 1], expected [1]'),
], ids=['funnel', 'nan', 'above-one', 'missing-output', 'float64', 'rank-2'])
def test_broken_models_fail_naming_check_and_request(tmp_path, exported_model_dir, check, outputs,
                                                     detail):
    """Every warmup request fails, and the first failure names the request and the check."""
    report = replay(_fake_model(tmp_path / 'm', outputs, exported_model_dir))
    failing_requests = {failure.split(':')[0] for failure in report['failures']}
    assert len(failing_requests) == report['requests'] == 2 * len(warmup.BATCH_SIZES)
    assert report['failures'][0].startswith(
        f'warmup request 0 (serving_default, batch 1): {check}: ')
    assert detail in report['failures'][0]


def test_missing_signature_and_missing_warmup_fail(tmp_path, exported_model_dir):
    """A model without serving_raw fails on the raw requests; one without warmup fails at once."""
    model_dir = _fake_model(tmp_path / 'm', _outputs(), exported_model_dir, raw_signature=False)
    assert replay(model_dir)['failures'][0] == (
        "warmup request 1 (serving_raw, batch 1): signature: the model has no signature "
        "'serving_raw'")
    shutil.rmtree(os.path.join(model_dir, 'assets.extra'))
    assert replay(model_dir) == {'requests': 0, 'failures': [
        f'warmup: no {warmup.WARMUP_FILE} in the model']}


def _model_artifact(root, saved_model_dir):
    """A Trainer-like Model artifact whose serving model is a copy of `saved_model_dir`."""
    model = standard_artifacts.Model()
    model.uri = str(root)
    shutil.copytree(saved_model_dir, path_utils.serving_model_dir(model.uri))
    return model


def _blessing(root):
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(root)
    os.makedirs(blessing.uri)
    return blessing


@pytest.mark.reliability
def test_component_blesses_a_good_model_and_blocks_a_broken_one(tmp_path, exported_model_dir,
                                                                  caplog, reliability):
    """In a fresh process: the real export is blessed (blessed=1, the Pusher pushes); a model
    with p_conversion > p_click is not (blessed=0, the Pusher skips it) and the log names the
    check and the request. The report is kept beside the blessing."""
    good = _blessing(tmp_path / 'good_blessing')
    ServingContractCheck.test_call(model=_model_artifact(tmp_path / 'good', exported_model_dir),
                                   infra_blessing=good)
    assert good.get_int_custom_property('blessed') == 1
    with open(os.path.join(good.uri, REPORT_FILE)) as f:
        assert json.load(f)['failures'] == []

    broken_dir = _fake_model(tmp_path / 'broken_model', _outputs(p_conversion=0.2),
                             exported_model_dir)
    bad = _blessing(tmp_path / 'bad_blessing')
    with caplog.at_level(logging.ERROR):
        ServingContractCheck.test_call(model=_model_artifact(tmp_path / 'bad', broken_dir),
                                       infra_blessing=bad)
    assert bad.get_int_custom_property('blessed') == 0
    assert 'the Pusher will not push it' in caplog.text
    assert ('warmup request 0 (serving_default, batch 1): funnel order: '
            'p_conversion > p_click at rows [0]') in caplog.text
    reliability('model breaking the funnel order', 'rejected',
                'serving contract check: blessed = 0, the Pusher skips it')
