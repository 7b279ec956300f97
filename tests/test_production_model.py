"""Tests of components/production_model.py (the model in production as a Model artifact) and
components/span_resolution.py's span resolution, on real folders and a real SavedModel."""

import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import standard_component_specs

from components import credentials, production_model, span_resolution
from components.atomic_pusher import STAGING


def _save_model(path):
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(path))


@pytest.fixture
def serving_dir(tmp_path):
    """Versions 1 and 3 complete, 7 half-copied (no saved_model.pb), a staging folder."""
    serving = tmp_path / 'serving_model' / 'funnel-mmoe'
    for version in ('1', '3'):
        _save_model(serving / version)
    (serving / '7' / 'variables').mkdir(parents=True)
    _save_model(serving / STAGING / '9')
    return serving


def test_newest_complete_version(serving_dir, tmp_path):
    assert production_model.newest_complete_version(str(serving_dir)) == '3'
    assert production_model.newest_complete_version(str(tmp_path / 'missing')) is None
    (tmp_path / 'empty').mkdir()
    assert production_model.newest_complete_version(str(tmp_path / 'empty')) is None


def _model_artifact(uri):
    model = tfx.types.standard_artifacts.Model()
    model.uri = str(uri)
    os.makedirs(model.uri, exist_ok=True)
    return model


def test_copies_the_model_in_production(serving_dir, tmp_path):
    model = _model_artifact(tmp_path / 'artifact')
    production_model.ProductionModel.EXECUTOR_SPEC.executor_class().Do(
        {}, {'model': [model]},
        {'serving_model_dir': str(serving_dir), 'production_version': ''})
    assert model.get_string_custom_property('production_version') == '3'
    copied = tf.saved_model.load(os.path.join(model.uri, 'Format-Serving'))
    assert float(copied.v.numpy()) == 1.0
    assert production_model.holds_model(model)


def test_nothing_in_production_gives_an_empty_model_that_is_left_out(tmp_path):
    """Before the first push: an artifact without a SavedModel, which the Evaluator's and the
    Trainer's executors drop from their inputs (no baseline, no warm start)."""
    model = _model_artifact(tmp_path / 'artifact')
    production_model.ProductionModel.EXECUTOR_SPEC.executor_class().Do(
        {}, {'model': [model]},
        {'serving_model_dir': str(tmp_path / 'none'), 'production_version': ''})
    assert model.get_string_custom_property('production_version') == ''
    assert not production_model.holds_model(model)
    key = standard_component_specs.BASELINE_MODEL_KEY
    inputs = {key: [model], 'model': [_model_artifact(tmp_path / 'candidate')]}
    assert production_model._without_empty_model(inputs, key) == {'model': inputs['model']}


def test_span_resolved_by_the_executor_as_the_driver_would(tmp_path):
    """Without a driver (open-source KFP), the latest day-{SPAN} folder is read, and the span
    and fingerprint are recorded on the Examples artifact."""
    for day in (1, 2, 10):
        (tmp_path / f'day-{day}').mkdir()
        (tmp_path / f'day-{day}' / 'data.csv').write_text('a\n1\n')
    examples = tfx.types.standard_artifacts.Examples()
    properties = {'input_base': str(tmp_path),
                  'input_config': '{"splits": [{"name": "single_split", '
                                  '"pattern": "day-{SPAN}/*"}]}'}
    resolved = span_resolution.resolve_span(properties, examples)
    assert resolved['span'] == 10 and 'day-10/*' in resolved['input_config']
    assert examples.get_int_custom_property('span') == 10
    assert resolved['input_fingerprint'].startswith('split:single_split,num_files:1,')


def test_missing_cloud_credentials_fail_fast_with_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv('GOOGLE_APPLICATION_CREDENTIALS', str(tmp_path / 'no-key.json'))
    monkeypatch.setenv('NO_GCE_CHECK', 'true')
    with pytest.raises(credentials.MissingCredentialsError, match='workload identity'):
        credentials.check_beam_credentials(['--runner=DataflowRunner', '--project=p'])
    credentials.check_beam_credentials(['--direct_running_mode=in_memory'])  # no cloud: no check
