"""The task towers and the funnel outputs p_click, p_cvr and p_conversion.

With the losses 'esmm' and 'naive' the towers give p_click and p_cvr, and p_conversion =
p_click * p_cvr, so p_conversion <= p_click by construction. With 'monotonic' (and AITM) they
give p_click and p_conversion, held below p_click by a penalty (trainer/losses.py), and p_cvr is
their ratio.
"""

from typing import Dict

import tensorflow as tf

from trainer import features
from trainer.blocks import Tower
from trainer.config import ModelConfig
from trainer.losses import MonotonicityPenalty


@tf.keras.utils.register_keras_serializable(package='funnel')
class ConditionalRate(tf.keras.layers.Layer):
    """p_cvr = p_conversion / p_click, clipped to [0, 1], for models that predict p_conversion
    directly (nothing then guarantees p_conversion <= p_click)."""

    def call(self, inputs):
        p_click, p_conversion = inputs
        return tf.clip_by_value(tf.math.divide_no_nan(p_conversion, p_click), 0.0, 1.0)


def funnel_outputs(config: ModelConfig, click_input: tf.Tensor,
                   cvr_input: tf.Tensor) -> Dict[str, tf.Tensor]:
    """{p_click, p_cvr, p_conversion} from the click tower's and the conversion tower's inputs."""
    p_click = Tower(config.tower_units, config.dropout, name=features.P_CLICK)(click_input)
    if config.loss == 'monotonic' or config.architecture == 'aitm':
        p_conversion = Tower(config.tower_units, config.dropout,
                             name='conversion_tower')(cvr_input)
        p_conversion = MonotonicityPenalty(config.monotonic_penalty_weight,
                                           name=features.P_CONVERSION)([p_click, p_conversion])
        p_cvr = ConditionalRate(name=features.P_CVR)([p_click, p_conversion])
    else:
        p_cvr = Tower(config.tower_units, config.dropout, name=features.P_CVR)(cvr_input)
        p_conversion = tf.keras.layers.Multiply(name=features.P_CONVERSION)([p_click, p_cvr])
    return {features.P_CLICK: p_click, features.P_CVR: p_cvr,
            features.P_CONVERSION: p_conversion}
