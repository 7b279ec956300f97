"""Calibration's sampling interval, as TFMA metrics for the blessing gate.

TFMA's Calibration, sum(predictions) / sum(labels), has a noisy denominator: with C positives in
the eval split it varies by about 1 / sqrt(C) (about 11% for `make run`'s 90 conversions), so a
fixed band of 0.9-1.1 would refuse a perfectly calibrated model about a third of the time. The
gate asks instead whether the labels are compatible with a calibration inside the band. With
P = sum(predictions) and Y = sum(labels), a model calibrated near 1 has a Y of mean about P and
standard deviation about sqrt(P) (a Poisson count; sum p (1 - p) is a little less), so the
calibration's interval is

    P / (Y + z sqrt(P))  ..  P / (Y - z sqrt(P))     (the upper end is infinite if Y <= z sqrt(P))

and a model is refused when the interval lies outside the band: its lower end above the band's
top (calibration_lower_bound > max) or its upper end below the band's bottom
(calibration_upper_bound < min). On a large eval split the interval shrinks to the calibration
itself. Both metrics derive from TFMA's own combiner of the three sums (the one Calibration,
MeanLabel and MeanPrediction share), so they add no pass over the examples.
"""

import math
from typing import Any, Dict, Optional, Tuple

from tensorflow_model_analysis.metrics import calibration, metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

DEFAULT_Z = 2.0  # standard deviations of the label count the interval spans on each side


def bounds(predictions: float, labels: float, z: float) -> Tuple[float, float]:
    """(lower, upper) end of the calibration's interval from the sums of predictions and labels."""
    if predictions <= 0:
        return float('nan'), float('nan')
    spread = z * math.sqrt(predictions)
    upper = predictions / (labels - spread) if labels > spread else math.inf
    return predictions / (labels + spread), upper


def _calibration_bound(name: str, end: str, z: float = DEFAULT_Z,
                       eval_config: Optional[config_pb2.EvalConfig] = None,
                       model_name: str = '', output_name: str = '',
                       sub_key: Optional[metric_types.SubKey] = None,
                       aggregation_type: Optional[metric_types.AggregationType] = None,
                       class_weights: Optional[Dict[int, float]] = None,
                       example_weighted: bool = False) -> metric_types.MetricComputations:
    """TFMA's sums of labels and predictions, then one end of the interval derived from them."""
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    computations = calibration._weighted_labels_predictions_examples(  # noqa: SLF001 (shared)
        eval_config=eval_config, model_name=model_name, output_name=output_name,
        sub_key=sub_key, aggregation_type=aggregation_type, class_weights=class_weights,
        example_weighted=example_weighted)
    sums_key = computations[-1].keys[-1]

    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, Any]:
        sums = metrics[sums_key]
        lower, upper = bounds(sums.total_weighted_predictions, sums.total_weighted_labels, z)
        return {key: upper if end == 'upper' else lower}

    computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


class CalibrationBound(metric_types.Metric):
    """One end ('lower' or 'upper') of the calibration's interval, z standard deviations of the
    label count wide on each side."""

    def __init__(self, name: str, end: str, z: float = DEFAULT_Z):
        if end not in ('lower', 'upper'):
            raise ValueError(f"CalibrationBound end={end!r}: 'lower' or 'upper'.")
        super().__init__(metric_util.merge_per_key_computations(_calibration_bound), name=name,
                         end=end, z=z)


metric_types.register_metric(CalibrationBound)
