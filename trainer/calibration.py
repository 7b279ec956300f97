"""Calibration of the funnel probabilities, fitted after training, shipped inside the SavedModel.

A bidder multiplies p_click x p_cvr x value, so the probabilities must be right on average, not
only well ordered. Early stopping and the imbalance of the tasks leave the trained model's means
off (main's `make run`: click 0.80, conversion 0.86 of the observed rates). Each task gets a
Platt map p -> sigmoid(slope * logit(p) + bias), monotone (slope > 0), so AUC is unchanged.

The maps are fitted on the validation split, which training never fits on, with Keras:
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
"""

import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from scipy.optimize import brentq

from trainer import features

EPSILON = 1e-7           # probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit
FIT_EPOCHS = 300         # full-batch Adam steps: 4 parameters converge well within this
FIT_LEARNING_RATE = 0.05
BIAS_BOUND = 30.0        # the solved biases are searched in [-BIAS_BOUND, BIAS_BOUND]
# The validation split's reliability data before and after the maps, shipped with the model for
# the report's before/after diagrams (report/build.py).
HISTOGRAMS_FILE = os.path.join('assets.extra', 'calibration_histograms.json')
HISTOGRAM_BUCKETS = 200  # equal-count buckets of sorted predictions; the report regroups them


@tf.keras.utils.register_keras_serializable(package='funnel')
class PlattScaling(tf.keras.layers.Layer):
    """p -> sigmoid(slope * logit(p) + bias); the identity until fitted (slope 1, bias 0)."""

    def build(self, input_shape):
        self.slope = self.add_weight(name='slope', shape=(), initializer='ones',
                                     constraint=tf.keras.constraints.NonNeg())
        self.bias = self.add_weight(name='bias', shape=(), initializer='zeros')

    def call(self, p):
        p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
        return tf.sigmoid(self.slope * (tf.math.log(p) - tf.math.log1p(-p)) + self.bias)


@tf.keras.utils.register_keras_serializable(package='funnel')
class FunnelCalibration(tf.keras.layers.Layer):
    """The model's outputs -> calibrated p_click, p_cvr and p_conversion = their product."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.click = PlattScaling(name='click_calibration')
        self.cvr = PlattScaling(name='cvr_calibration')

    def call(self, outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        p_click = self.click(outputs[features.P_CLICK])
        p_cvr = self.cvr(outputs[features.P_CVR])
        return {features.P_CLICK: p_click, features.P_CVR: p_cvr,
                features.P_CONVERSION: p_click * p_cvr}

    def parameters(self) -> Dict[str, Tuple[float, float]]:
        """Per task, the fitted (slope, bias), for the log."""
        return {task: (float(layer.slope.numpy()), float(layer.bias.numpy()))
                for task, layer in (('click', self.click), ('cvr', self.cvr))}


def _fit(layer: PlattScaling, inputs: Tuple[np.ndarray, ...], label: np.ndarray, combine):
    """Fits `layer` alone by full-batch Adam on the BCE of combine(layer, *inputs) vs label."""
    tensors = [tf.keras.Input(shape=(1,)) for _ in inputs]
    model = tf.keras.Model(tensors, combine(layer, *tensors))
    model.compile(optimizer=tf.keras.optimizers.Adam(FIT_LEARNING_RATE),
                  loss=tf.keras.losses.BinaryCrossentropy())
    columns = [np.asarray(x, np.float32).reshape(-1, 1) for x in inputs]
    model.fit(columns, np.asarray(label, np.float32).reshape(-1, 1), batch_size=len(label),
              epochs=FIT_EPOCHS, verbose=0, shuffle=False)


def _solve_bias(layer: PlattScaling, p: np.ndarray, weight: np.ndarray, rate: float):
    """Sets the layer's bias so that mean(weight * layer(p)) = rate, its slope unchanged."""
    slope = float(layer.slope.numpy())
    p = np.clip(np.asarray(p, np.float64), EPSILON, 1.0 - EPSILON)
    z = slope * (np.log(p) - np.log1p(-p))
    def gap(bias):
        return float(np.mean(weight / (1.0 + np.exp(-(z + bias))))) - rate
    layer.bias.assign(brentq(gap, -BIAS_BOUND, BIAS_BOUND, xtol=1e-6))


def fit_calibration(predictions: Dict[str, np.ndarray], labels: Dict[str, np.ndarray],
                    train_predictions: Optional[Dict[str, np.ndarray]] = None,
                    train_labels: Optional[Dict[str, np.ndarray]] = None) -> FunnelCalibration:
    """The calibration maps fitted on validation `predictions` (p_click, p_cvr) and `labels`
    (click, conversion), all [rows] arrays; with the training rows' `train_predictions` and
    `train_labels`, the biases are then solved on the training and validation rows together so
    that the calibrated means equal their label rates. Raises ValueError when a task has no
    positive or no negative validation row, on which nothing can be fitted."""
    for label in features.LABELS:
        positives = int(np.sum(labels[label]))
        if positives == 0 or positives == len(labels[label]):
            raise ValueError(
                f'Cannot fit the calibration: the validation split has {positives} {label}s in '
                f'{len(labels[label])} rows; it needs both classes. Give the validation split '
                'more rows (FUNNEL_VALIDATION_HASH_BUCKETS) or set FUNNEL_MODEL_CALIBRATION=false.')
    calibration = FunnelCalibration(name='calibration')
    p_click, p_cvr = predictions[features.P_CLICK], predictions[features.P_CVR]
    calibration({features.P_CLICK: tf.constant(p_click[:1].reshape(-1, 1), tf.float32),
                 features.P_CVR: tf.constant(p_cvr[:1].reshape(-1, 1), tf.float32)})  # build
    pooled = None
    if train_predictions is not None:
        pooled = [{name: np.concatenate([train[name], validation[name]]) for name in names}
                  for train, validation, names in (
                      (train_predictions, predictions, (features.P_CLICK, features.P_CVR)),
                      (train_labels, labels, features.LABELS))]
    _fit(calibration.click, (p_click,), labels[features.CLICK_LABEL],
         lambda layer, p: layer(p))
    if pooled:
        _solve_bias(calibration.click, pooled[0][features.P_CLICK], 1.0,
                    float(np.mean(pooled[1][features.CLICK_LABEL])))
    _fit(calibration.cvr, (_apply(calibration.click, p_click), p_cvr),
         labels[features.CONVERSION_LABEL],
         lambda layer, click, cvr: tf.keras.layers.Multiply()([click, layer(cvr)]))
    if pooled:  # through the product, the click map fixed
        _solve_bias(calibration.cvr, pooled[0][features.P_CVR],
                    _apply(calibration.click, pooled[0][features.P_CLICK]),
                    float(np.mean(pooled[1][features.CONVERSION_LABEL])))
    return calibration


def _apply(layer: PlattScaling, p: np.ndarray) -> np.ndarray:
    """The map of `layer` on the [rows] array p, as a [rows] array."""
    return layer(tf.constant(np.reshape(p, (-1, 1)), tf.float32)).numpy().reshape(-1)


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
