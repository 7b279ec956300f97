"""The Evaluator's metrics from one combiner per model output: TFMA's AUC and calibration plot,
the Keras log loss, calibration, mean label, mean prediction, example count and the
calibration's interval.

TFMA runs every metric combiner on every example of every slice in Python, each looking the
label and prediction up with `to_label_prediction_example_weight`: most of the Evaluator's time
(bench/README.md, "The Evaluator's cost"). Here one combiner per model and output buffers the
examples and, a batch at a time, updates with numpy TFMA's calibration histogram (the same
buckets), the sums of labels, predictions and examples, and the sum of Keras's binary
cross-entropy. TFMA's AUC and calibration plot (subclasses that swap TFMA's histogram combiner
for this one) and the metrics below derive from those sums, so metric names, keys, thresholds
and report stay. The classes need names of their own (TFMA ignores a MetricConfig's module for a
class name it has registered). tests/test_eval_metrics.py and `python -m bench.evaluator_cost`
show every number within 0.001 of TFMA's and Keras's own metrics.

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
from typing import Callable, List, NamedTuple, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import (
    calibration_histogram,
    calibration_plot,
    confusion_matrix_metrics,
    metric_types,
    metric_util,
)
from tensorflow_model_analysis.proto import config_pb2

PREFIX = 'Shared'  # SharedCalibration stands for TFMA's Calibration
TOTALS_NAME = '_shared_totals'
BATCH_SIZE = 1000  # examples a combiner buffers before updating its sums


class Totals(NamedTuple):  # sums over a slice's examples of one model output
    labels: float
    predictions: float
    examples: float
    log_loss: float  # Keras's binary cross-entropy


def tfma_class_name(metric: config_pb2.MetricConfig) -> str:
    """The TFMA (or Keras) class a metric config stands for (its own class name for any
    other)."""
    if metric.module == __name__ and metric.class_name.startswith(PREFIX):
        return metric.class_name[len(PREFIX):]
    return metric.class_name


class _Accumulator:
    """Pending examples, per bucket sums of (labels, predictions, examples) and the sum of log
    loss. Pickled (between Beam stages or workers) with the hit buckets only, as TFMA's own
    histogram is."""

    def __init__(self, buckets: int):
        self.pending, self.sums, self.log_loss = [], np.zeros((3, buckets + 2)), 0.0

    def __getstate__(self):
        hit = np.flatnonzero(self.sums[2])
        return self.pending, self.sums.shape, hit, self.sums[:, hit], self.log_loss

    def __setstate__(self, state):
        self.pending, shape, hit, sums, self.log_loss = state
        self.sums = np.zeros(shape)
        self.sums[:, hit] = sums


def _histogram(eval_config, model_name: str, output_name: str) -> metric_types.MetricComputation:
    """TFMA's default calibration histogram of one model output (its AUC's and plot's)."""
    return calibration_histogram.calibration_histogram(
        eval_config=eval_config, model_name=model_name, output_name=output_name)[0]


class _SharedCombiner(beam.CombineFn):
    """One model output's calibration histogram (TFMA's buckets) and Totals, a batch at a time."""

    def __init__(self, eval_config, histogram_key: metric_types.PlotKey,
                 totals_key: metric_types.MetricKey):
        self._eval_config = eval_config
        self._histogram_key = histogram_key
        self._totals_key = totals_key
        self._names = [name for name in (histogram_key.model_name, histogram_key.output_name)
                       if name]
        self._buckets = calibration_histogram.DEFAULT_NUM_BUCKETS  # on [0, 1]

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self._buckets)

    def add_input(self, accumulator, element: metric_types.StandardMetricInputs):
        accumulator.pending.append(element)
        if len(accumulator.pending) >= BATCH_SIZE:
            self._flush(accumulator)
        return accumulator

    def _lookup(self, element: metric_types.StandardMetricInputs) -> Tuple[float, float]:
        """(label, prediction) of one example, looked up as TFMA does (prediction by model and
        output name; label by them where it is keyed by them), from the extracts' dict."""
        label, prediction = element[constants.LABELS_KEY], element[constants.PREDICTIONS_KEY]
        for name in self._names:
            prediction = prediction[name]
            if isinstance(label, dict) and name in label:
                label = label[name]
        return label, prediction

    def _arrays(self, pending: list) -> Tuple[np.ndarray, np.ndarray]:
        """Labels and predictions of the pending examples, one of each per example, checked
        against TFMA's own reading of the first."""
        pairs = [self._lookup(element) for element in pending]
        try:
            labels, predictions = (np.asarray(values, dtype=np.float64).reshape(len(pending))
                                   for values in zip(*pairs))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f'{self._histogram_key.model_name or "model"} output '
                f'{self._histogram_key.output_name}: expected one label and one prediction (a '
                f'binary score) per example, got e.g. {pairs[0]}. A model with other outputs '
                "needs TFMA's own metrics (pipeline/eval_config.py).") from error
        tfma_reading = [(float(label), float(prediction)) for label, prediction, _ in
                        metric_util.to_label_prediction_example_weight(
                            pending[0], eval_config=self._eval_config,
                            model_name=self._histogram_key.model_name,
                            output_name=self._histogram_key.output_name)]
        if tfma_reading != [(labels[0], predictions[0])]:
            raise ValueError(f'{self._histogram_key}: TFMA reads the example as {tfma_reading}, '
                             f'not as ({labels[0]}, {predictions[0]}).')
        outside = (labels < 0) | (labels > 1) | np.isnan(predictions)
        if outside.any():
            raise ValueError(f'{self._histogram_key}: label {labels[outside][0]} with '
                             f'prediction {predictions[outside][0]}: labels must be within '
                             '[0, 1] and predictions numbers.')
        return labels, predictions

    def _flush(self, accumulator):
        if not accumulator.pending:
            return
        labels, predictions = self._arrays(accumulator.pending)
        accumulator.pending = []
        # TFMA's bucket of a prediction p on [0, 1]: int(p * buckets + 1), clipped to the two
        # edge buckets.
        index = np.clip(predictions * self._buckets + 1, 0, self._buckets + 1).astype(np.int64)
        for row, weights in enumerate((labels, predictions, None)):
            accumulator.sums[row] += np.bincount(index, weights, minlength=self._buckets + 2)
        accumulator.log_loss += float(np.sum(tf.keras.losses.binary_crossentropy(
            labels.astype(np.float32)[:, None], predictions.astype(np.float32)[:, None])))

    def compact(self, accumulator):
        self._flush(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = self.compact(next(accumulators))
        for accumulator in accumulators:
            self._flush(accumulator)
            result.sums += accumulator.sums
            result.log_loss += accumulator.log_loss
        return result

    def extract_output(self, accumulator):
        self._flush(accumulator)
        labels, predictions, examples = accumulator.sums
        histogram = [calibration_histogram.Bucket(int(i), labels[i], predictions[i], examples[i])
                     for i in np.flatnonzero(examples)]
        totals = Totals(*(float(total) for total in accumulator.sums.sum(axis=1)),
                        accumulator.log_loss)
        return {self._histogram_key: histogram, self._totals_key: totals}


def _shared(eval_config, model_name: str, output_name: str) -> metric_types.MetricComputation:
    """The shared combiner's computation of one model output (the same for every metric, so TFMA
    runs it once)."""
    histogram_key = _histogram(eval_config, model_name, output_name).keys[0]
    totals_key = metric_types.MetricKey(name=TOTALS_NAME, model_name=model_name,
                                        output_name=output_name)
    return metric_types.MetricComputation(
        keys=[histogram_key, totals_key],
        preprocessors=None,
        combiner=_SharedCombiner(eval_config, histogram_key, totals_key))


def _with_shared_histograms(computations: list, eval_config) -> list:
    """`computations` with TFMA's default calibration histogram of an output, unweighted and
    without sub key, computed by the shared combiner."""
    shared = []
    for computation in computations:
        key = computation.keys[0] if computation.keys else None
        if (type(computation) is metric_types.MetricComputation  # pylint: disable=unidiomatic-typecheck
                and isinstance(key, metric_types.PlotKey) and key.sub_key is None
                and not key.example_weighted
                and computation == _histogram(eval_config, key.model_name, key.output_name)):
            computation = _shared(eval_config, key.model_name, key.output_name)
        shared.append(computation)
    return shared


class SharedAUC(confusion_matrix_metrics.AUC):
    """TFMA's AUC, from the shared histogram."""

    def computations(self, eval_config=None, **kwargs):
        return _with_shared_histograms(super().computations(eval_config=eval_config, **kwargs),
                                       eval_config)


class SharedCalibrationPlot(calibration_plot.CalibrationPlot):
    """TFMA's calibration plot, from the shared histogram."""

    def computations(self, eval_config=None, **kwargs):
        return _with_shared_histograms(super().computations(eval_config=eval_config, **kwargs),
                                       eval_config)


def _ratio(numerator: float, denominator: float) -> float:
    return float('nan') if np.isclose(denominator, 0.0) else numerator / denominator


def _derived(value: Callable[[Totals], float]):
    """The computations of a metric derived from an output's Totals."""
    def computations(name: str, eval_config=None, model_name: str = '', output_name: str = '',
                     sub_key: Optional[metric_types.SubKey] = None,
                     example_weighted: bool = False) -> List:
        if sub_key is not None or example_weighted:
            raise ValueError(f'{name}: the shared combiner (pipeline/eval_metrics.py) reads '
                             'unweighted binary outputs only, without sub keys.')
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name)
        shared = _shared(eval_config, model_name, output_name)
        totals_key = shared.keys[1]
        return [shared, metric_types.DerivedMetricComputation(
            keys=[key], result=lambda metrics: {key: value(metrics[totals_key])})]
    return metric_util.merge_per_key_computations(computations)


class SharedBinaryCrossentropy(metric_types.Metric):
    """The mean of Keras's binary cross-entropy (the Keras metric BinaryCrossentropy)."""

    def __init__(self, name: str = 'binary_crossentropy'):
        super().__init__(_derived(lambda t: _ratio(t.log_loss, t.examples)), name=name)


class SharedCalibration(metric_types.Metric):
    """Total weighted predictions / total weighted labels."""

    def __init__(self, name: str = 'calibration'):
        super().__init__(_derived(lambda t: _ratio(t.predictions, t.labels)), name=name)


class SharedMeanLabel(metric_types.Metric):
    def __init__(self, name: str = 'mean_label'):
        super().__init__(_derived(lambda t: _ratio(t.labels, t.examples)), name=name)


class SharedMeanPrediction(metric_types.Metric):
    def __init__(self, name: str = 'mean_prediction'):
        super().__init__(_derived(lambda t: _ratio(t.predictions, t.examples)), name=name)


class SharedExampleCount(metric_types.Metric):
    def __init__(self, name: str = 'example_count'):
        super().__init__(_derived(lambda t: t.examples), name=name)


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
        super().__init__(_derived(lambda t: bounds(t.predictions, t.labels, z)[index]),
                         name=name)
