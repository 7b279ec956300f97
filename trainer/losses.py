"""The funnel losses, as Keras per-output losses (config.loss).

- 'esmm' (Ma et al., SIGIR 2018): BCE(click, p_click) + BCE(conversion, p_click * p_cvr), both
  on every impression. p_cvr gets no loss of its own: it is learnt through p_conversion, which
  avoids the sample-selection bias of training CVR on clicked impressions only.
- 'naive': BCE(click, p_click) on every impression + BCE(conversion, p_cvr) on clicked
  impressions only (trainer/labels.py weights them): the sample-selection-biased baseline that
  ESMM fixes.
- 'monotonic': BCE(click, p_click) + BCE(conversion, p_conversion) with p_conversion from its own
  tower, plus MonotonicityPenalty, since nothing else keeps p_conversion <= p_click.

AITM (trainer/aitm.py) predicts p_conversion with its own tower too, so with 'esmm' or
'monotonic' its loss is the monotonic one, whose penalty is AITM's calibrator. How the two
losses are weighted is trainer/task_weighting.py's and trainer/schedules.py's. Keeping the losses
as Keras per-output losses lets Keras handle reduction under tf.distribute.
"""

from typing import Dict, Tuple

import tensorflow as tf

from trainer import features
from trainer.config import ModelConfig

# The outputs each loss puts a BCE on, click task first.
LOSS_OUTPUTS = {'esmm': (features.P_CLICK, features.P_CONVERSION),
                'naive': (features.P_CLICK, features.P_CVR),
                'monotonic': (features.P_CLICK, features.P_CONVERSION)}


def funnel_loss(config: ModelConfig) -> Tuple[Dict[str, tf.keras.losses.Loss], Dict[str, float]]:
    """The `loss` and `loss_weights` arguments of Model.compile for `config.loss`."""
    click_output, conversion_output = LOSS_OUTPUTS[config.loss]
    losses = {output: tf.keras.losses.BinaryCrossentropy(name=f'{output}_bce')
              for output in (click_output, conversion_output)}
    if config.task_weighting != 'static':  # the model learns the weights
        return losses, dict.fromkeys(losses, 1.0)
    return losses, {click_output: config.click_loss_weight,
                    conversion_output: config.conversion_loss_weight}


@tf.keras.utils.register_keras_serializable(package='funnel')
class MonotonicityPenalty(tf.keras.layers.Layer):
    """Passes p_conversion through and adds weight * mean(relu(p_conversion - p_click)) to the
    model's losses: the funnel order for models that predict p_conversion directly."""

    def __init__(self, weight: float, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def call(self, inputs):
        p_click, p_conversion = inputs
        self.add_loss(self.weight * tf.reduce_mean(tf.nn.relu(p_conversion - p_click)))
        return p_conversion

    def get_config(self):
        return {**super().get_config(), 'weight': self.weight}
