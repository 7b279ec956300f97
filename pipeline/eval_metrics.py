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
"""

from typing import Callable, Optional

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
