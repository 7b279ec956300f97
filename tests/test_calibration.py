"""trainer/calibration.py: Platt maps fitted by Keras agree with scikit-learn's logistic
regression, fix a miscalibrated funnel on held-out rows, and keep the funnel order."""

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from trainer import calibration, features


def _funnel(rows: int, seed: int):
    """True click and cvr probabilities, labels drawn from them, and a model's distorted view."""
    rng = np.random.default_rng(seed)
    click_logit = rng.normal(-2.5, 0.9, rows)
    cvr_logit = rng.normal(-1.0, 1.1, rows) + 0.4 * click_logit
    p_click, p_cvr = expit(click_logit), expit(cvr_logit)
    click = rng.random(rows) < p_click
    conversion = click & (rng.random(rows) < p_cvr)
    predictions = {features.P_CLICK: expit(1.3 * click_logit + 0.5),   # over-confident, high
                   features.P_CVR: expit(0.8 * cvr_logit - 0.6)}      # flat, low
    predictions[features.P_CONVERSION] = predictions[features.P_CLICK] * predictions[
        features.P_CVR]
    labels = {features.CLICK_LABEL: click.astype(np.int64),
              features.CONVERSION_LABEL: conversion.astype(np.int64)}
    return predictions, labels, {features.P_CLICK: p_click, features.P_CONVERSION: p_click * p_cvr}


@pytest.fixture(scope='module')
def fitted():
    predictions, labels, _ = _funnel(100_000, seed=1)
    return calibration.fit_calibration(predictions, labels), predictions, labels


def test_click_map_matches_sklearn_logistic_regression(fitted):
    calibrator, predictions, labels = fitted
    p = np.clip(predictions[features.P_CLICK], calibration.EPSILON, 1 - calibration.EPSILON)
    reference = LogisticRegression(C=1e6).fit(logit(p).reshape(-1, 1),
                                               labels[features.CLICK_LABEL])
    slope, bias = calibrator.parameters()['click']
    assert slope == pytest.approx(reference.coef_[0, 0], abs=0.02)
    assert bias == pytest.approx(reference.intercept_[0], abs=0.05)


def test_calibrated_on_new_rows_and_funnel_order(fitted):
    calibrator, _, _ = fitted
    new_predictions, _, truth = _funnel(100_000, seed=2)  # rows the maps never saw
    outputs = {name: np.asarray(value).reshape(-1)
               for name, value in calibrator(new_predictions).items()}
    for output in (features.P_CLICK, features.P_CONVERSION):  # against the true probabilities
        assert np.mean(outputs[output]) / np.mean(truth[output]) == pytest.approx(1, abs=0.04)
    assert np.all(outputs[features.P_CONVERSION] <= outputs[features.P_CLICK])
    assert np.allclose(outputs[features.P_CONVERSION],
                       outputs[features.P_CLICK] * outputs[features.P_CVR])
    # Monotone: the order of the rows, hence every AUC, is unchanged (up to float32 rounding).
    order = np.argsort(new_predictions[features.P_CLICK])
    assert np.all(np.diff(outputs[features.P_CLICK][order]) >= -1e-6)


def test_means_solved_on_the_pooled_rows(fitted):
    """With the training rows pooled in, the slopes stay the validation split's and the
    calibrated means equal the pooled label rates, which pin the true rates down better than a
    small validation split does."""
    validation_only, _, _ = fitted
    small, small_labels, _ = _funnel(3_000, seed=1)  # ~25 conversions: a noisy rate
    train, train_labels, _ = _funnel(200_000, seed=4)
    calibrator = calibration.fit_calibration(small, small_labels, train, train_labels)
    pooled = {name: np.concatenate([train[name], small[name]]) for name in small}
    outputs = {name: np.asarray(value).reshape(-1) for name, value in calibrator(pooled).items()}
    for output in (features.P_CLICK, features.P_CONVERSION):
        label = features.OUTPUT_LABELS[output]
        rate = np.mean(np.concatenate([train_labels[label], small_labels[label]]))
        assert np.mean(outputs[output]) == pytest.approx(rate, rel=1e-4)
    alone = calibration.fit_calibration(small, small_labels)
    slopes = {task: (calibrator.parameters()[task][0], alone.parameters()[task][0])
              for task in ('click', 'cvr')}
    assert slopes['click'][0] == pytest.approx(slopes['click'][1])
    # The cvr slope is fitted on the validation rows too, through the product with the click map,
    # whose bias now comes from the pooled rows.
    assert slopes['cvr'][0] == pytest.approx(slopes['cvr'][1], abs=0.05)
    new_predictions, _, truth = _funnel(100_000, seed=2)
    for fit in (calibrator, validation_only):
        outputs = {name: np.asarray(value).reshape(-1) for name, value in fit(
            new_predictions).items()}
        assert np.mean(outputs[features.P_CONVERSION]) / np.mean(
            truth[features.P_CONVERSION]) == pytest.approx(1, abs=0.04)


def test_refuses_a_split_without_conversions():
    predictions, labels, _ = _funnel(1000, seed=3)
    labels[features.CONVERSION_LABEL][:] = 0
    with pytest.raises(ValueError, match='0 conversions in 1000 rows'):
        calibration.fit_calibration(predictions, labels)


@pytest.mark.parametrize('gate', [True, False])
def test_blessing_gates_calibration_on_the_overall_slice_only(gate):
    """The band is applied to the ends of the calibration's interval, on the overall slice."""
    import json

    from conftest import SPEC

    from pipeline.config import EvaluationConfig
    from pipeline.eval_config import OVERALL_SLICE, make_eval_config

    config = EvaluationConfig(min_calibration=0.8, max_calibration=1.25, gate_calibration=gate,
                              calibration_interval_z=1.5)
    gated = {}
    for spec in make_eval_config(config, SPEC).metrics_specs:
        metrics = [m for m in spec.metrics if 'Calibration' in m.class_name
                   and m.class_name != 'CalibrationPlot']
        assert not any(m.HasField('threshold') for m in metrics)  # never on every slice
        gated[spec.output_names[0]] = [
            (json.loads(m.config or '{}'), list(item.slicing_specs),
             item.threshold.value_threshold.lower_bound.value,
             item.threshold.value_threshold.upper_bound.value)
            for m in metrics for item in m.per_slice_thresholds]
    band = [({'name': 'calibration_lower_bound', 'end': 'lower', 'z': 1.5}, [OVERALL_SLICE],
             0.0, 1.25),
            ({'name': 'calibration_upper_bound', 'end': 'upper', 'z': 1.5}, [OVERALL_SLICE],
             0.8, 0.0)] if gate else []
    assert gated == {features.P_CLICK: band, features.P_CONVERSION: band, features.P_CVR: []}
