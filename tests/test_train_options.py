"""trainer.train.run_fn with each architecture, weighting and schedule beyond MMoE, on the tiny real
Transform's output: it trains, exports, and the SavedModel serves the funnel outputs."""

import dataclasses
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import RAW_LABELS, SPEC, write_transformed_examples
from tfx import v1 as tfx

from trainer import features, train
from trainer.config import ModelConfig

SMALL = ModelConfig(num_experts=2, expert_units=(8,), tower_units=(4,), max_embedding_dim=4,
                    dense_projection_dim=4, batch_size=16, train_steps=4, eval_steps=2,
                    steps_per_validation=2, curriculum_click_steps=1, curriculum_ramp_steps=2,
                    seed=0, calibration=False,  # 50 rows: no conversion to calibrate on
                    materialize_transform=True)  # it reads the transformed rows written below


@pytest.fixture(scope='module')
def examples(transform_run, tmp_path_factory):
    path = tmp_path_factory.mktemp('examples') / 'transformed.tfrecord.gz'
    write_transformed_examples(transform_run.train_rows, transform_run.tft_output, path)
    return str(path)


def _fn_args(config, examples, transform_run, tmp_path):
    return tfx.components.FnArgs(
        custom_config={'model': dataclasses.asdict(config), 'features': SPEC.to_dict()},
        transform_output=transform_run.transform_fn_dir,
        train_files=[examples], eval_files=[examples],
        train_steps=config.train_steps, eval_steps=config.eval_steps,
        model_run_dir=str(tmp_path / 'model_run'), serving_model_dir=str(tmp_path / 'model'),
        base_model=None)


@pytest.mark.parametrize('epochs, train_steps, steps', [(2.0, 1000, 7), (7.0, 5, 5)])
def test_training_length_follows_the_data(transform_run, examples, tmp_path, caplog, epochs,
                                          train_steps, steps):
    """run_fn counts the 50 train rows and trains model.train_epochs passes of 16-row batches
    (2 epochs: 7 steps), at most model.train_steps (5 of the 7 epochs' 22), and says how long
    the first step, the calibration and the export took."""
    config = dataclasses.replace(SMALL, train_epochs=epochs, train_steps=train_steps,
                                 steps_per_validation=1000, early_stopping_patience=1000)
    config.validate()
    with caplog.at_level(logging.INFO, logger='funnel.trainer'):
        train.run_fn(_fn_args(config, examples, transform_run, tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == 'funnel.trainer']
    assert lines[0].startswith('Trainer: 50 train rows (counted in ')
    assert f'; {steps} steps of 16 rows ({steps * 16 / 50:.1f} epochs; ' in lines[0]
    assert lines[-2].startswith(f'Trainer: trained {steps} steps of 16 rows in ')
    assert 'the first step, which traces the model, ' in lines[-2]
    assert re.fullmatch(r'Trainer: calibration [0-9.]+ s, export [0-9.]+ s\.', lines[-1])
    assert train.count_rows([examples]) == len(transform_run.train_rows) == 50


@pytest.mark.parametrize('rows, steps', [(160, 2), (240_000, 1500), (1, 1), (200_000, 1368)])
def test_planned_steps(rows, steps):
    """The defaults: 7 epochs of 1,024-row batches, at most 1,500 steps; 160 rows (the issue's
    Ali-CCP sample's train split) train 2 steps."""
    assert train.planned_steps(ModelConfig(), rows) == steps


@pytest.mark.slow
@pytest.mark.parametrize('changes', [
    {'architecture': 'aitm'}, {'architecture': 'cross_stitch'},
    {'task_weighting': 'gradnorm'}, {'schedule': 'alternating'}, {'schedule': 'curriculum'},
    {'architecture': 'ple', 'user_item_interaction': 'product', 'cross_layers': 1},
], ids=lambda changes: '-'.join(map(str, changes.values())))
def test_run_fn_trains_and_exports(transform_run, examples, tmp_path, changes):
    """A few steps of run_fn (validations, early stopping, export with the Transform graph);
    the served p_click, p_cvr, p_conversion are [batch] probabilities, p_cvr their ratio."""
    config = dataclasses.replace(SMALL, **changes)
    config.validate()
    fn_args = _fn_args(config, examples, transform_run, tmp_path)
    train.run_fn(fn_args)

    rows = transform_run.probe_df.drop(columns=list(RAW_LABELS))
    raw_spec = transform_run.tft_output.raw_feature_spec()
    served = tf.saved_model.load(fn_args.serving_model_dir).signatures[features.RAW_SIGNATURE](
        **{name: tf.constant(rows[name].tolist(), raw_spec[name].dtype) for name in rows})
    assert set(served) == set(features.OUTPUTS)
    for name, value in served.items():
        assert value.shape == (len(rows),), name
        assert np.all((value.numpy() >= 0) & (value.numpy() <= 1)), name
    np.testing.assert_allclose(
        served[features.P_CVR], np.clip(np.divide(
            served[features.P_CONVERSION], served[features.P_CLICK]), 0, 1), rtol=1e-5)
