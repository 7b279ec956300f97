"""Tests of trainer/losses.py: the compiled ESMM funnel loss and the label mapping."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_DENSE_FEATURES, TINY_VOCAB_SIZES

from trainer import features, losses
from trainer.labels import labels_for_loss
from trainer.model import build_model

BATCH = 24


def _bce(labels, probabilities):
    """Per-row binary cross-entropy, in float64."""
    p = probabilities.astype(np.float64).reshape(-1)
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


@pytest.fixture
def funnel_batch():
    """A fixed batch of funnel labels (conversions only on clicks), as [batch] float32."""
    rng = np.random.default_rng(0)
    click = (rng.random(BATCH) < 0.4).astype(np.float32)
    conversion = click * (rng.random(BATCH) < 0.5).astype(np.float32)
    assert 0 < conversion.sum() < click.sum() < BATCH
    return {'click': click, 'conversion': conversion}


def test_labels_for_loss_maps_labels_to_outputs(funnel_batch):
    """click -> p_click, conversion -> p_conversion (and p_cvr); only p_cvr is weighted, by
    click / click rate, so that its loss would be the mean over clicked impressions."""
    labels, weights = labels_for_loss(funnel_batch)
    assert set(labels) == set(features.OUTPUTS)
    assert labels[features.P_CLICK] is funnel_batch['click']
    assert labels[features.P_CONVERSION] is funnel_batch['conversion']
    assert labels[features.P_CVR] is funnel_batch['conversion']
    assert set(weights) == {features.P_CVR}
    click = funnel_batch['click']
    np.testing.assert_allclose(weights[features.P_CVR], click / click.mean(), rtol=1e-6)


def test_labels_for_loss_without_clicks_gives_zero_weights():
    """A batch without clicks gives p_cvr zero weights, not NaN (divide_no_nan)."""
    _, weights = labels_for_loss({'click': np.zeros(4, np.float32),
                                         'conversion': np.zeros(4, np.float32)})
    np.testing.assert_array_equal(weights[features.P_CVR], 0.0)


def test_esmm_loss_has_no_cvr_term(tiny_config):
    """ESMM's compile arguments cover p_click and p_conversion only, with the configured
    weights: p_cvr is learnt only through p_conversion = p_click * p_cvr."""
    loss, weights = losses.funnel_loss(tiny_config)
    assert set(loss) == set(weights) == {features.P_CLICK, features.P_CONVERSION}
    assert all(isinstance(fn, tf.keras.losses.BinaryCrossentropy) for fn in loss.values())
    assert weights == {features.P_CLICK: 1.0, features.P_CONVERSION: 2.0}


def _evaluate(model, config, inputs, batch):
    """model.evaluate of the compiled funnel loss on one batch, plus the model's predictions."""
    loss, loss_weights = losses.funnel_loss(config)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=loss, loss_weights=loss_weights)
    labels, sample_weights = labels_for_loss(batch)
    result = model.evaluate(inputs, labels, sample_weight=sample_weights, batch_size=BATCH,
                            verbose=0, return_dict=True)
    return result, model.predict(inputs, batch_size=BATCH, verbose=0)


@pytest.mark.parametrize('embedding_l2', [0.0, 1e-2])
def test_compiled_loss_is_esmm(tiny_config, random_inputs, funnel_batch, embedding_l2):
    """model.evaluate's loss = w_click * BCE(click, p_click)
    + w_conversion * BCE(conversion, p_click * p_cvr), both over every impression (p_cvr's
    label and sample weight are ignored), plus the embeddings' L2 penalty when configured."""
    config = dataclasses.replace(tiny_config, embedding_l2=embedding_l2)
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES)
    inputs = random_inputs(batch=BATCH, seed=1)
    result, predicted = _evaluate(model, config, inputs, funnel_batch)

    click_bce = _bce(funnel_batch['click'], predicted[features.P_CLICK]).mean()
    conversion_bce = _bce(funnel_batch['conversion'],
                          predicted[features.P_CLICK] * predicted[features.P_CVR]).mean()
    assert result['p_click_loss'] == pytest.approx(click_bce, abs=1e-5)
    assert result['p_conversion_loss'] == pytest.approx(conversion_bce, abs=1e-5)
    assert 'p_cvr_loss' not in result
    penalty = float(tf.add_n(model.losses)) if model.losses else 0.0
    assert (penalty > 1e-4) == (embedding_l2 > 0)
    expected = (config.click_loss_weight * click_bce
                + config.conversion_loss_weight * conversion_bce + penalty)
    assert result['loss'] == pytest.approx(expected, abs=1e-5)


def test_naive_loss_trains_cvr_on_clicked_impressions_only(tiny_config, random_inputs,
                                                           funnel_batch):
    """The naive baseline: p_cvr's loss is the BCE averaged over clicked impressions only."""
    config = dataclasses.replace(tiny_config, loss='naive')
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES)
    result, predicted = _evaluate(model, config, random_inputs(batch=BATCH, seed=1),
                                  funnel_batch)
    clicked = funnel_batch['click'] == 1
    cvr_bce = _bce(funnel_batch['conversion'][clicked],
                   predicted[features.P_CVR][clicked]).mean()
    click_bce = _bce(funnel_batch['click'], predicted[features.P_CLICK]).mean()
    assert result['p_cvr_loss'] == pytest.approx(cvr_bce, abs=1e-5)
    assert result['loss'] == pytest.approx(click_bce + 2.0 * cvr_bce, abs=1e-5)
