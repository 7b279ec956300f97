"""trainer/calibration.py: Platt maps fitted by maximum likelihood agree with scikit-learn's
logistic regression, fix a miscalibrated funnel on held-out rows, overall and per slice, and keep
the funnel order."""

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from trainer import calibration, features

POSITION_EFFECT = np.array([0.4, 0.0, -0.5, -1.2])  # on the click logit, per position id
DEVICE_EFFECT = np.array([0.0, 0.6])                 # on the cvr logit, per device id


def _funnel(rows: int, seed: int):
    """True click and cvr probabilities, labels drawn from them, a model's distorted view (the
    position and device effects shrunk, as a slope below 1 does) and the slice columns."""
    rng = np.random.default_rng(seed)
    slices = {'position': rng.integers(0, len(POSITION_EFFECT), rows),
              'device': rng.integers(0, len(DEVICE_EFFECT), rows)}
    click_logit = rng.normal(-2.5, 0.9, rows)
    cvr_logit = rng.normal(-1.0, 1.1, rows) + 0.4 * click_logit
    position, device = POSITION_EFFECT[slices['position']], DEVICE_EFFECT[slices['device']]
    p_click, p_cvr = expit(click_logit + position), expit(cvr_logit + device)
    click = rng.random(rows) < p_click
    conversion = click & (rng.random(rows) < p_cvr)
    predictions = {features.P_CLICK: expit(1.3 * click_logit + 0.5 * position + 0.5),
                   features.P_CVR: expit(0.8 * cvr_logit + 0.2 * device - 0.6)}
    predictions[features.P_CONVERSION] = predictions[features.P_CLICK] * predictions[
        features.P_CVR]
    labels = {features.CLICK_LABEL: click.astype(np.int64),
              features.CONVERSION_LABEL: conversion.astype(np.int64)}
    return (calibration.Rows(predictions, labels, slices),
            {features.P_CLICK: p_click, features.P_CONVERSION: p_click * p_cvr})


def _calibrated(calibrator, rows):
    return {name: np.asarray(value).reshape(-1)
            for name, value in calibrator(rows.predictions, rows.slices).items()}


SLICE_BUCKETS = {'position': len(POSITION_EFFECT), 'device': len(DEVICE_EFFECT)}


@pytest.fixture(scope='module')
def fitted():
    rows, _ = _funnel(100_000, seed=1)
    return calibration.fit_calibration(rows), rows


def test_click_map_matches_sklearn_logistic_regression(fitted):
    calibrator, rows = fitted
    p = np.clip(rows.predictions[features.P_CLICK], calibration.EPSILON,
                1 - calibration.EPSILON)
    reference = LogisticRegression(C=1e6).fit(logit(p).reshape(-1, 1),
                                               rows.labels[features.CLICK_LABEL])
    slope, bias = calibrator.parameters()['click']
    assert slope == pytest.approx(reference.coef_[0, 0], abs=0.02)
    assert bias == pytest.approx(reference.intercept_[0], abs=0.05)


def test_calibrated_on_new_rows_and_funnel_order(fitted):
    calibrator, _ = fitted
    new_rows, truth = _funnel(100_000, seed=2)  # rows the maps never saw
    outputs = _calibrated(calibrator, new_rows)
    for output in (features.P_CLICK, features.P_CONVERSION):  # against the true probabilities
        assert np.mean(outputs[output]) / np.mean(truth[output]) == pytest.approx(1, abs=0.04)
    assert np.all(outputs[features.P_CONVERSION] <= outputs[features.P_CLICK])
    assert np.allclose(outputs[features.P_CONVERSION],
                       outputs[features.P_CLICK] * outputs[features.P_CVR])
    # Monotone: the order of the rows, hence every AUC, is unchanged (up to float32 rounding).
    order = np.argsort(new_rows.predictions[features.P_CLICK])
    assert np.all(np.diff(outputs[features.P_CLICK][order]) >= -1e-6)


def test_means_solved_on_the_pooled_rows(fitted):
    """With the training rows pooled in, the slopes stay the validation split's and the
    calibrated means equal the pooled label rates, which pin the true rates down better than a
    small validation split does."""
    validation_only, _ = fitted
    small, _ = _funnel(3_000, seed=1)  # ~25 conversions: a noisy rate
    train, _ = _funnel(200_000, seed=4)
    calibrator = calibration.fit_calibration(small, train)
    pooled = small + train
    outputs = _calibrated(calibrator, pooled)
    for output in (features.P_CLICK, features.P_CONVERSION):
        rate = np.mean(pooled.labels[features.OUTPUT_LABELS[output]])
        assert np.mean(outputs[output]) == pytest.approx(rate, rel=1e-4)
    alone = calibration.fit_calibration(small)
    slopes = {task: (calibrator.parameters()[task][0], alone.parameters()[task][0])
              for task in ('click', 'cvr')}
    assert slopes['click'][0] == pytest.approx(slopes['click'][1])
    # The cvr slope is fitted on the validation rows too, through the product with the click map,
    # whose bias now comes from the pooled rows.
    assert slopes['cvr'][0] == pytest.approx(slopes['cvr'][1], abs=0.05)
    new_rows, truth = _funnel(100_000, seed=2)
    for fit in (calibrator, validation_only):
        outputs = _calibrated(fit, new_rows)
        assert np.mean(outputs[features.P_CONVERSION]) / np.mean(
            truth[features.P_CONVERSION]) == pytest.approx(1, abs=0.04)


def _slice_ratios(outputs, rows, truth):
    """Calibrated mean / true mean of p_click and p_conversion on every value of every slice."""
    return {(output, name, value): np.mean(outputs[output][ids == value]) / np.mean(
                truth[output][ids == value])
            for output in (features.P_CLICK, features.P_CONVERSION)
            for name, ids in rows.slices.items() for value in np.unique(ids)}


def test_slice_biases_calibrate_every_slice_value():
    """The model's shrunk position and device effects leave slices off by up to ~40% after the
    global maps; the slice biases, solved on the pooled rows, put every value's mean at its
    label rate there and within a few percent of the truth on new rows, with the funnel order
    and the order of rows within a slice value kept."""
    validation, _ = _funnel(20_000, seed=5)
    train, _ = _funnel(200_000, seed=6)
    new_rows, truth = _funnel(200_000, seed=7)
    global_only = calibration.fit_calibration(validation, train)
    per_slice = calibration.fit_calibration(validation, train, SLICE_BUCKETS)
    before = _slice_ratios(_calibrated(global_only, new_rows), new_rows, truth)
    assert max(abs(r - 1) for r in before.values()) > 0.25
    after = _slice_ratios(_calibrated(per_slice, new_rows), new_rows, truth)
    assert after == pytest.approx({key: 1.0 for key in after}, abs=0.05)
    pooled = validation + train
    outputs = _calibrated(per_slice, pooled)
    for output in (features.P_CLICK, features.P_CONVERSION):
        label = pooled.labels[features.OUTPUT_LABELS[output]]
        for name, ids in pooled.slices.items():
            for value in np.unique(ids):
                rows = ids == value
                assert np.mean(outputs[output][rows]) == pytest.approx(np.mean(label[rows]),
                                                                       rel=2e-3), (output, name)
    outputs = _calibrated(per_slice, new_rows)
    assert np.all(outputs[features.P_CONVERSION] <= outputs[features.P_CLICK])
    for value in range(len(POSITION_EFFECT)):
        rows = (new_rows.slices['position'] == value) & (new_rows.slices['device'] == 0)
        order = np.argsort(new_rows.predictions[features.P_CLICK][rows])
        assert np.all(np.diff(outputs[features.P_CLICK][rows][order]) >= -1e-6)


def test_refuses_a_split_without_conversions():
    rows, _ = _funnel(1000, seed=3)
    rows.labels[features.CONVERSION_LABEL][:] = 0
    with pytest.raises(ValueError, match='0 conversions in 1000 rows'):
        calibration.fit_calibration(rows)


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
