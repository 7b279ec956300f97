"""The funnel loss, expressed as Keras per-output losses.

ESMM (Ma et al., SIGIR 2018): BCE(click, p_click) + BCE(conversion, p_click * p_cvr), both on
every impression. p_cvr gets no loss of its own: it is learnt through p_conversion, which
avoids the sample-selection bias of training CVR on clicked impressions only.
Keeping it as Keras per-output losses lets Keras handle reduction under tf.distribute.
"""

from typing import Dict, Tuple

import tensorflow as tf

from pipeline.config import ModelConfig
from trainer import features


def funnel_loss(config: ModelConfig) -> Tuple[Dict[str, tf.keras.losses.Loss], Dict[str, float]]:
    """The `loss` and `loss_weights` arguments of Model.compile for the ESMM funnel loss."""
    losses = {features.P_CLICK: tf.keras.losses.BinaryCrossentropy(name='click_bce'),
              features.P_CONVERSION: tf.keras.losses.BinaryCrossentropy(name='conversion_bce')}
    weights = {features.P_CLICK: config.click_loss_weight,
               features.P_CONVERSION: config.conversion_loss_weight}
    return losses, weights


def labels_for_loss(labels: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Maps raw label columns to the model outputs the loss compares them with."""
    return {output: labels[features.OUTPUT_LABELS[output]]
            for output in (features.P_CLICK, features.P_CONVERSION)}
