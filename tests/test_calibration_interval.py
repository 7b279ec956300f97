"""pipeline/eval_metrics.py: the calibration interval the blessing gates on refuses a
calibrated model rarely on a small eval split, and a miscalibrated one on a large split."""

import math

import numpy as np
import pytest

from pipeline.eval_metrics import CalibrationBound, bounds

BAND = (0.9, 1.1)


def test_bounds():
    assert bounds(100.0, 100.0, z=2.0) == pytest.approx((100 / 120, 100 / 80))
    assert bounds(100.0, 80.0, z=0.0) == pytest.approx((1.25, 1.25))  # z = 0: the calibration
    lower, upper = bounds(100.0, 15.0, z=2.0)  # 15 positives where 100 were predicted
    assert lower == pytest.approx(100 / 35) and upper == math.inf
    assert all(math.isnan(b) for b in bounds(0.0, 3.0, z=2.0))


def _refused(predicted: float, labels: np.ndarray, z: float) -> float:
    """Share of eval splits (label counts) on which the gate refuses the model."""
    ends = np.array([bounds(predicted, float(y), z) for y in labels])
    return float(np.mean((ends[:, 0] > BAND[1]) | (ends[:, 1] < BAND[0])))


def test_calibrated_model_on_a_small_split_is_rarely_refused():
    """`make run`'s eval split holds about 90 conversions: the fixed band refuses a perfectly
    calibrated model about a third of the time, the interval (z = 2) a few percent."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(90.0, size=20_000)  # the eval split's conversions, model calibrated
    assert _refused(90.0, counts, z=0.0) == pytest.approx(0.3, abs=0.06)
    assert _refused(90.0, counts, z=2.0) < 0.01


def test_miscalibrated_model_on_a_large_split_is_refused():
    rng = np.random.default_rng(1)
    counts = rng.poisson(10_000.0, size=2_000)  # 10,000 positives; the model predicts 20% more
    assert _refused(12_000.0, counts, z=2.0) == 1.0
    assert _refused(10_500.0, counts, z=2.0) == 0.0  # 5% off: inside the band


def test_bound_end_is_checked():
    with pytest.raises(ValueError, match="end='middle'"):
        CalibrationBound(name='x', end='middle', z=2.0)
