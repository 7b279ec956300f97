"""Calibration of the funnel probabilities, fitted after training, shipped inside the SavedModel.

A bidder multiplies p_click x p_cvr x value, so the probabilities must be right on average, not
only well ordered. Early stopping and the imbalance of the tasks leave the trained model's means
off (main's `make run`: click 0.80, conversion 0.86 of the observed rates). Each task gets a
Platt map p -> sigmoid(slope * logit(p) + bias), monotone (slope > 0), so it keeps the order
of the rows (the slice biases below reorder them only across slice values).

The maps are fitted on the validation split, which training never fits on, by maximum likelihood
(scipy's L-BFGS-B on the exact log loss and its gradient):
- p_click on every impression (BCE against the click);
- p_cvr through the ESMM product: BCE of the conversion against calibrated p_click x calibrated
  p_cvr on every impression. That is the quantity the bidder multiplies and the blessing judges
  (conversion calibration), it uses every conversion without a selection on clicks, and the
  funnel order p_conversion <= p_click holds by construction. The click map is held fixed in
  that product, so the conversion loss cannot bend the click calibration.

The slopes come from the validation split alone: the model has seen the training rows, on which
it looks sharper than it is. The biases, which set the calibrated means, are then solved so that
those means equal the label rates of the training and validation splits together: the model's
mean prediction is the same on rows it trained on and on rows it did not (the training rows do
not inflate it), while the validation split alone holds too few conversions to pin their rate
down (its sampling error, 1 / sqrt(conversions), is about 6% at 1M rows; docs/calibration.md).

A slope below 1 pulls every prediction towards the overall rate, so slices whose rate differs
(an ad position seen rarely clicked) come out too high or too low even when the model ranked
them right. So each slice column of the feature spec (the Evaluator's slices) also gets one bias
per value (field-aware calibration, Pan et al. 2020), solved on the same pooled rows so that the
calibrated mean of every value of every slice column equals its label rate.
"""

import dataclasses
import json
import logging
import os
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from scipy.optimize import brentq, minimize
from scipy.special import expit

from trainer import features

EPSILON = 1e-7           # probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit
BIAS_BOUND = 30.0        # the solved biases are searched in [-BIAS_BOUND, BIAS_BOUND]
# Slice biases: a ridge of this many pseudo-positives pulls each towards 0 (a value with few or
# no positives keeps a finite bias); solved to this relative gap per value, in at most MAX_SWEEPS.
SLICE_PRIOR = 1.0
SLICE_TOLERANCE = 1e-4
MAX_SWEEPS = 100
# The validation split's reliability data before and after the maps, shipped with the model for
# the report's before/after diagrams (report/build.py).
HISTOGRAMS_FILE = os.path.join('assets.extra', 'calibration_histograms.json')
HISTOGRAM_BUCKETS = 200  # equal-count buckets of sorted predictions; the report regroups them


@tf.keras.utils.register_keras_serializable(package='funnel')
class PlattScaling(tf.keras.layers.Layer):
    """p -> sigmoid(slope * logit(p) + bias + the bias of each slice column's value); the
    identity until fitted (slope 1, biases 0). `slice_buckets`: ids per slice column."""

    def __init__(self, slice_buckets: Mapping[str, int] = (), **kwargs):
        super().__init__(**kwargs)
        self.slice_buckets = dict(slice_buckets)

    def build(self, input_shape):
        self.slope = self.add_weight(name='slope', shape=(), initializer='ones',
                                     constraint=tf.keras.constraints.NonNeg())
        self.bias = self.add_weight(name='bias', shape=(), initializer='zeros')
        self.slice_biases = {name: self.add_weight(name=f'{name}_bias', shape=(buckets,),
                                                   initializer='zeros')
                             for name, buckets in self.slice_buckets.items()}

    def call(self, p, slices: Optional[Mapping[str, tf.Tensor]] = None):
        p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
        z = self.slope * (tf.math.log(p) - tf.math.log1p(-p)) + self.bias
        for name, table in self.slice_biases.items():
            z += tf.reshape(tf.gather(table, slices[name]), tf.shape(z))
        return tf.sigmoid(z)

    def get_config(self):
        return {**super().get_config(), 'slice_buckets': dict(self.slice_buckets)}


@tf.keras.utils.register_keras_serializable(package='funnel')
class FunnelCalibration(tf.keras.layers.Layer):
    """The model's outputs (and the slice columns' ids) -> calibrated p_click, p_cvr and
    p_conversion = their product."""

    def __init__(self, slice_buckets: Mapping[str, int] = (), **kwargs):
        super().__init__(**kwargs)
        self.slice_buckets = dict(slice_buckets)
        self.click = PlattScaling(self.slice_buckets, name='click_calibration')
        self.cvr = PlattScaling(self.slice_buckets, name='cvr_calibration')

    def call(self, outputs: Dict[str, tf.Tensor],
             slices: Optional[Mapping[str, tf.Tensor]] = None) -> Dict[str, tf.Tensor]:
        p_click = self.click(outputs[features.P_CLICK], slices)
        p_cvr = self.cvr(outputs[features.P_CVR], slices)
        return {features.P_CLICK: p_click, features.P_CVR: p_cvr,
                features.P_CONVERSION: p_click * p_cvr}

    def get_config(self):
        return {**super().get_config(), 'slice_buckets': dict(self.slice_buckets)}

    def parameters(self) -> Dict[str, Tuple[float, ...]]:
        """Per task, the fitted (slope, bias) and per slice column the range of its biases, for
        the log."""
        return {task: (float(layer.slope.numpy()), float(layer.bias.numpy()), *(
                    f'{name} {table.numpy().min():+.3f}..{table.numpy().max():+.3f}'
                    for name, table in layer.slice_biases.items()))
                for task, layer in (('click', self.click), ('cvr', self.cvr))}


@dataclasses.dataclass(frozen=True)
class Rows:
    """One split's rows as [rows] arrays: the model's outputs (p_click, p_cvr), the labels
    (click, conversion) and the slice columns' transformed ids."""
    predictions: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    slices: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __add__(self, other: 'Rows') -> 'Rows':
        def join(a, b):
            return {name: np.concatenate([a[name], b[name]]) for name in a}
        return Rows(join(self.predictions, other.predictions), join(self.labels, other.labels),
                    join(self.slices, other.slices))


def _logit(p) -> np.ndarray:
    """logit(p) of a [rows] array, p clipped to [EPSILON, 1 - EPSILON] as PlattScaling does."""
    p = np.clip(np.asarray(p, np.float64).reshape(-1), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _fit(layer: PlattScaling, p: np.ndarray, label: np.ndarray, weight=1.0):
    """Sets `layer`'s slope and bias (its slice biases left at 0) to those minimising the log
    loss of weight * layer(p) against label: L-BFGS-B with the slope bounded below by 0. An exact
    optimum in milliseconds, where 300 full-batch Keras epochs took seconds per map."""
    z, y = _logit(p), np.asarray(label, np.float64).reshape(-1)
    weight = np.asarray(weight, np.float64).reshape(-1)

    def loss_and_gradient(params):
        s = expit(params[0] * z + params[1])
        q = np.clip(weight * s, EPSILON, 1.0 - EPSILON)
        loss = -np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q))
        d_logit = weight * s * (1.0 - s) * ((1.0 - y) / (1.0 - q) - y / q)  # d loss / d logit
        return loss, np.array([np.mean(d_logit * z), np.mean(d_logit)])

    result = minimize(loss_and_gradient, np.array([1.0, 0.0]), jac=True, method='L-BFGS-B',
                      bounds=[(0.0, None), (None, None)])
    layer.slope.assign(result.x[0])
    layer.bias.assign(result.x[1])


def _solve_means(layer: PlattScaling, rows: Rows, output: str, weight: np.ndarray, label: str):
    """Sets the layer's biases, its slope unchanged, so that the mean of weight * layer(p)
    equals the label rate of `rows`: overall (the bias), then on every value of every slice
    column (the slice biases, by Newton steps one column at a time)."""
    z = float(layer.slope.numpy()) * _logit(rows.predictions[output])
    target = np.asarray(rows.labels[label], np.float64)

    def gap(bias):
        return float(np.mean(weight * expit(z + bias))) - np.mean(target)

    layer.bias.assign(brentq(gap, -BIAS_BOUND, BIAS_BOUND, xtol=1e-6))
    z = z + float(layer.bias.numpy())
    if not layer.slice_biases:
        return
    biases = {name: np.zeros(table.shape[0]) for name, table in layer.slice_biases.items()}
    positives = {name: np.bincount(rows.slices[name], target, minlength=len(values))
                 for name, values in biases.items()}
    sweeps, worst = 0, np.inf
    while sweeps < MAX_SWEEPS and worst >= SLICE_TOLERANCE:
        sweeps, worst = sweeps + 1, 0.0
        for name, values in biases.items():
            ids = rows.slices[name]
            sigmoid = expit(z + sum(biases[n][rows.slices[n]] for n in biases))
            excess = np.bincount(ids, weight * sigmoid, minlength=len(values)) - positives[name]
            curvature = np.bincount(ids, weight * sigmoid * (1.0 - sigmoid),
                                    minlength=len(values))
            gradient = excess + SLICE_PRIOR * values  # of the log loss with the ridge
            values -= gradient / (curvature + SLICE_PRIOR)
            worst = max(worst, float(np.max(np.abs(gradient) / np.maximum(positives[name], 1))))
    logging.info('Slice biases of %s solved in %d sweeps (largest relative gap %.1e).',
                 layer.name, sweeps, worst)
    for name, values in biases.items():
        layer.slice_biases[name].assign(values.astype(np.float32))


def fit_calibration(validation: Rows, train: Optional[Rows] = None,
                    slice_buckets: Mapping[str, int] = ()) -> FunnelCalibration:
    """The calibration maps: slopes fitted on the validation rows, biases (overall and per
    value of each slice column in `slice_buckets`, {column: ids}) solved on the training and
    validation rows together, or on the validation rows alone without `train`. Raises
    ValueError when a task has no positive or no negative validation row, on which nothing can
    be fitted."""
    for label in features.LABELS:
        positives = int(np.sum(validation.labels[label]))
        if positives == 0 or positives == len(validation.labels[label]):
            raise ValueError(
                f'Cannot fit the calibration: the validation split has {positives} {label}s in '
                f'{len(validation.labels[label])} rows; it needs both classes. Give the '
                'validation split more rows (FUNNEL_VALIDATION_HASH_BUCKETS) or set '
                'FUNNEL_MODEL_CALIBRATION=false.')
    calibration = FunnelCalibration(slice_buckets, name='calibration')
    pooled = validation + train if train is not None else validation
    p_click, p_cvr = (validation.predictions[name] for name in (features.P_CLICK, features.P_CVR))
    calibration({name: tf.constant(p[:1].reshape(-1, 1), tf.float32) for name, p in (
        (features.P_CLICK, p_click), (features.P_CVR, p_cvr))},
        {name: tf.constant(validation.slices[name][:1]) for name in slice_buckets})  # builds it
    _fit(calibration.click, p_click, validation.labels[features.CLICK_LABEL])
    _solve_means(calibration.click, pooled, features.P_CLICK, 1.0, features.CLICK_LABEL)
    _fit(calibration.cvr, p_cvr, validation.labels[features.CONVERSION_LABEL],
         weight=_apply(calibration.click, p_click, validation.slices))
    # The cvr biases through the product, the click map fixed.
    _solve_means(calibration.cvr, pooled, features.P_CVR,
                 _apply(calibration.click, pooled.predictions[features.P_CLICK], pooled.slices),
                 features.CONVERSION_LABEL)
    return calibration


def _apply(layer: PlattScaling, p: np.ndarray, slices: Mapping[str, np.ndarray]) -> np.ndarray:
    """The map of `layer` on the [rows] array p and its rows' slice ids, as a [rows] array."""
    return layer(tf.constant(np.reshape(p, (-1, 1)), tf.float32),
                 {name: tf.constant(slices[name]) for name in layer.slice_biases}
                 ).numpy().reshape(-1)


def mean_ratios(predictions: Dict[str, np.ndarray], labels: Dict[str, np.ndarray]
                ) -> Dict[str, float]:
    """Calibration (mean prediction / mean label) of p_click and p_conversion, as the
    Evaluator reports it, rounded for the log."""
    return {output: round(float(np.mean(predictions[output])
                                / np.mean(labels[features.OUTPUT_LABELS[output]])), 3)
            for output in (features.P_CLICK, features.P_CONVERSION)}


def histogram(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Rows of (examples, sum of labels, sum of predictions) over equal-count buckets of the
    sorted predictions: the layout of TFMA's calibration plot (run_outputs)."""
    order = np.argsort(prediction, kind='stable')
    buckets = np.array_split(order, min(HISTOGRAM_BUCKETS, len(order)))
    return np.array([(len(rows), label[rows].sum(), prediction[rows].sum()) for rows in buckets],
                    dtype=np.float64)


def write_histograms(export_dir: str, before: Dict[str, np.ndarray],
                     after: Dict[str, np.ndarray], labels: Dict[str, np.ndarray]) -> None:
    """{output: {'before': histogram, 'after': histogram}} of p_click and p_conversion."""
    data = {output: {stage: histogram(np.asarray(outputs[output]).reshape(-1),
                                      labels[features.OUTPUT_LABELS[output]]).tolist()
                     for stage, outputs in (('before', before), ('after', after))}
            for output in (features.P_CLICK, features.P_CONVERSION)}
    with tf.io.gfile.GFile(os.path.join(export_dir, HISTOGRAMS_FILE), 'w') as f:
        json.dump(data, f)
