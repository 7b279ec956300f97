"""The funnel losses, as Keras per-output losses, and how the two tasks are weighted.

- 'esmm' (Ma et al., SIGIR 2018): BCE(click, p_click) + BCE(conversion, p_click * p_cvr), both
  on every impression. p_cvr gets no loss of its own: it is learnt through p_conversion, which
  avoids the sample-selection bias of training CVR on clicked impressions only.
- 'naive': BCE(click, p_click) on every impression + BCE(conversion, p_cvr) on clicked
  impressions only: the sample-selection-biased baseline that ESMM fixes.
- 'monotonic': BCE(click, p_click) + BCE(conversion, p_conversion) with p_conversion from its own
  tower, plus MonotonicityPenalty, since nothing else keeps p_conversion <= p_click.

Task weighting: 'static' multiplies the two losses by click_loss_weight and
conversion_loss_weight; 'uncertainty' learns the weights (UncertaintyWeightedModel).
Keeping the losses as Keras per-output losses lets Keras handle reduction under tf.distribute.
"""

import logging
from typing import Dict, Sequence, Tuple

import tensorflow as tf

from pipeline.config import ModelConfig
from trainer import features

# The outputs each loss puts a BCE on, click task first.
LOSS_OUTPUTS = {'esmm': (features.P_CLICK, features.P_CONVERSION),
                'naive': (features.P_CLICK, features.P_CVR),
                'monotonic': (features.P_CLICK, features.P_CONVERSION)}


def funnel_loss(config: ModelConfig) -> Tuple[Dict[str, tf.keras.losses.Loss], Dict[str, float]]:
    """The `loss` and `loss_weights` arguments of Model.compile for `config.loss`."""
    click_output, conversion_output = LOSS_OUTPUTS[config.loss]
    losses = {output: tf.keras.losses.BinaryCrossentropy(name=f'{output}_bce')
              for output in (click_output, conversion_output)}
    if config.task_weighting == 'uncertainty':  # the model learns the weights
        return losses, dict.fromkeys(losses, 1.0)
    return losses, {click_output: config.click_loss_weight,
                    conversion_output: config.conversion_loss_weight}


def labels_for_loss(labels: Dict[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor],
                                                           Dict[str, tf.Tensor]]:
    """Maps a batch's label columns to (labels, sample weights) per model output, for any loss.

    Every output gets its label; Keras ignores those of outputs the loss leaves out. p_cvr is
    p(conversion | click), observed on clicked impressions only, so its sample weight is the
    click divided by the batch's click rate: its loss (the naive loss) is then the mean over the
    clicked impressions, as if trained on them alone, not that mean shrunk by the click rate.
    """
    click = tf.cast(labels[features.CLICK_LABEL], tf.float32)
    return ({output: labels[features.OUTPUT_LABELS[output]] for output in features.OUTPUTS},
            {features.P_CVR: tf.math.divide_no_nan(click, tf.reduce_mean(click))})


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


@tf.keras.utils.register_keras_serializable(package='funnel')
class UncertaintyWeightedModel(tf.keras.Model):
    """A functional model that learns its task weights (Kendall et al., CVPR 2018):
    loss = sum_i exp(-s_i) * L_i + s_i, with a trainable log-variance s_i per task output.

    Why a Model subclass overriding compute_loss: the weights multiply per-task losses, which
    need the labels, so they cannot live in call (serving has no labels), and Keras' compiled loss
    only returns the sum. compute_loss is what Keras' train_step and test_step call, so compile,
    fit, evaluate, the metrics and tf.distribute's loss scaling stay Keras' own: exp(-s_i) scales
    output i's sample weights (its loss is a weighted mean over the batch, so this scales L_i
    exactly) and sum_i s_i is a model loss, added like a regulariser. The per-output loss metrics
    (p_click_loss ...) therefore show exp(-s_i) * L_i. call stays the functional graph, so the
    model saves and serves like any functional model.
    """

    def __init__(self, inputs, outputs, task_outputs: Sequence[str], name=None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self.task_outputs = tuple(task_outputs)
        self.log_variances = {output: self.add_weight(name=f'{output}_log_variance', shape=(),
                                                      initializer='zeros')
                              for output in self.task_outputs}
        self.add_loss(lambda: tf.add_n(list(self.log_variances.values())))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        sample_weight = {} if sample_weight is None else dict(sample_weight)
        for output, log_variance in self.log_variances.items():
            sample_weight[output] = tf.exp(-log_variance) * sample_weight.get(output, 1.0)
        return super().compute_loss(x, y, y_pred, sample_weight)

    def task_weights(self) -> Dict[str, float]:
        """The learnt weight exp(-s_i) of each task output."""
        return {output: float(tf.exp(-s)) for output, s in self.log_variances.items()}

    def fit(self, *args, **kwargs):
        """Keras' fit, then logs the learnt task weights."""
        history = super().fit(*args, **kwargs)
        logging.info('Learnt task weights exp(-log variance): %s', ', '.join(
            f'{output} {weight:.4f}' for output, weight in self.task_weights().items()))
        return history

    def get_config(self):
        return {**super().get_config(), 'task_outputs': list(self.task_outputs)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        task_outputs = config.pop('task_outputs')
        functional = tf.keras.Model.from_config(config, custom_objects)
        return cls(functional.input, functional.output, task_outputs, name=functional.name)
