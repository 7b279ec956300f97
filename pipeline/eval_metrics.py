"""TFMA's Calibration, MeanLabel, MeanPrediction and ExampleCount, read off the calibration
histogram that the Evaluator's AUC and calibration plot already compute.

TFMA's own versions add two more combiners per model, output and slice (one shared by the three
means, one for the count), each run on every example in Python; those two were about a sixth of
the Evaluator's time (bench/README.md, "The Evaluator's cost"). The histogram's buckets hold the
same weighted sums (examples, labels, predictions), so summing the buckets gives the same values
for two combiners less. The classes need names of their own (TFMA ignores a MetricConfig's module
for a class name it has registered); their metrics keep TFMA's names, so the metric keys,
thresholds and report stay. `python -m bench.evaluator_cost` shows every number within 0.001 of
TFMA's own metrics.

CalibrationBound, from the same sums, is what the blessing gates calibration on. Calibration,
sum(predictions) / sum(labels), has a noisy denominator: with C positives in the eval split it
varies by about 1 / sqrt(C) (about 11% for `make run`'s 90 conversions), so a fixed band of
0.9-1.1 would refuse a perfectly calibrated model about a third of the time. The gate asks
instead whether the labels are compatible with a calibration inside the band. With
P = sum(predictions) and Y = sum(labels), a model calibrated near 1 has a Y of mean about P and
standard deviation about sqrt(P) (a Poisson count; sum p (1 - p) is a little less), so the
calibration's interval is

    P / (Y + z sqrt(P))  ..  P / (Y - z sqrt(P))     (the upper end is infinite if Y <= z sqrt(P))

and a model is refused when the interval lies outside the band: its lower end above the band's
top (calibration_lower_bound > max) or its upper end below the band's bottom
(calibration_upper_bound < min). On a large eval split the interval shrinks to the calibration
itself.
"""

import math
from typing import Callable, Optional, Tuple

import numpy as np
from tensorflow_model_analysis.metrics import calibration_histogram, metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

# (total weighted labels, total weighted predictions, total weighted examples) -> value
Totals = Callable[[float, float, float], float]
PREFIX = 'Histogram'  # HistogramCalibration stands for TFMA's Calibration


def tfma_class_name(metric: config_pb2.MetricConfig) -> str:
    """The TFMA class a metric config stands for (its own class name for any other)."""
    if metric.module == __name__ and metric.class_name.startswith(PREFIX):
        return metric.class_name[len(PREFIX):]
    return metric.class_name


def _ratio(numerator: float, denominator: float) -> float:
    return float('nan') if np.isclose(denominator, 0.0) else numerator / denominator


def _derived(value: Totals):
    """The computations of a metric derived from the default calibration histogram."""
    def computations(name: str, eval_config=None, model_name: str = '', output_name: str = '',
                     sub_key: Optional[metric_types.SubKey] = None, aggregation_type=None,
                     class_weights=None, example_weighted: bool = False):
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                     sub_key=sub_key, example_weighted=example_weighted)
        histogram = calibration_histogram.calibration_histogram(
            eval_config=eval_config, model_name=model_name, output_name=output_name,
            sub_key=sub_key, aggregation_type=aggregation_type, class_weights=class_weights,
            example_weighted=example_weighted)
        histogram_key = histogram[-1].keys[-1]

        def result(metrics):
            buckets = metrics[histogram_key]
            return {key: value(sum(b.weighted_labels for b in buckets),
                               sum(b.weighted_predictions for b in buckets),
                               sum(b.weighted_examples for b in buckets))}
        return histogram + [metric_types.DerivedMetricComputation(keys=[key], result=result)]
    return metric_util.merge_per_key_computations(computations)


class HistogramCalibration(metric_types.Metric):
    """Total weighted predictions / total weighted labels."""

    def __init__(self, name: str = 'calibration'):
        super().__init__(_derived(lambda labels, predictions, _: _ratio(predictions, labels)),
                         name=name)


class HistogramMeanLabel(metric_types.Metric):
    def __init__(self, name: str = 'mean_label'):
        super().__init__(_derived(lambda labels, _, examples: _ratio(labels, examples)),
                         name=name)


class HistogramMeanPrediction(metric_types.Metric):
    def __init__(self, name: str = 'mean_prediction'):
        super().__init__(_derived(lambda _, predictions, examples: _ratio(predictions, examples)),
                         name=name)


class HistogramExampleCount(metric_types.Metric):
    def __init__(self, name: str = 'example_count'):
        super().__init__(_derived(lambda _, __, examples: examples), name=name)


def bounds(predictions: float, labels: float, z: float) -> Tuple[float, float]:
    """(lower, upper) end of the calibration's interval from the sums of predictions and labels."""
    if predictions <= 0:
        return float('nan'), float('nan')
    spread = z * math.sqrt(predictions)
    upper = predictions / (labels - spread) if labels > spread else math.inf
    return predictions / (labels + spread), upper


class CalibrationBound(metric_types.Metric):
    """One end ('lower' or 'upper') of the calibration's interval, z standard deviations of the
    label count wide on each side."""

    def __init__(self, name: str, end: str, z: float):
        if end not in ('lower', 'upper'):
            raise ValueError(f"CalibrationBound end={end!r}: 'lower' or 'upper'.")
        index = ('lower', 'upper').index(end)
        super().__init__(_derived(lambda labels, predictions, _: bounds(predictions, labels,
                                                                          z)[index]), name=name)
