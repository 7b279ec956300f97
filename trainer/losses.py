"""The funnel losses, as Keras per-output losses, and how the two tasks are weighted.

- 'esmm' (Ma et al., SIGIR 2018): BCE(click, p_click) + BCE(conversion, p_click * p_cvr), both
  on every impression. p_cvr gets no loss of its own: it is learnt through p_conversion, which
  avoids the sample-selection bias of training CVR on clicked impressions only.
- 'naive': BCE(click, p_click) on every impression + BCE(conversion, p_cvr) on clicked
  impressions only: the sample-selection-biased baseline that ESMM fixes.
- 'monotonic': BCE(click, p_click) + BCE(conversion, p_conversion) with p_conversion from its own
  tower, plus MonotonicityPenalty, since nothing else keeps p_conversion <= p_click.

AITM (trainer/model.py) predicts p_conversion with its own tower too, so with 'esmm' or
'monotonic' its loss is the monotonic one, whose penalty is AITM's calibrator.

Task weighting: 'static' multiplies the two losses by click_loss_weight and
conversion_loss_weight; 'uncertainty' (UncertaintyWeightedModel) and 'gradnorm'
(GradNormModel) learn the weights. Keeping the losses as Keras per-output losses lets Keras
handle reduction under tf.distribute.
"""

import logging
from typing import Dict, List, Sequence, Tuple

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
    if config.task_weighting != 'static':  # the model learns the weights
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


def split_labels(batch: Dict[str, tf.Tensor]) -> Tuple[Dict, Dict, Dict]:
    """A batch of transformed columns -> (model inputs, labels, sample weights) for Model.fit."""
    labels = {name: batch.pop(name) for name in features.LABELS}
    return (batch, *labels_for_loss(labels))


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


class FunnelModel(tf.keras.Model):
    """A functional model with settings of its own, kept in its config so that a saved model
    reloads as its class. Subclasses change how the model trains (compute_loss, train_step);
    call stays the functional graph, so the model saves and serves like any functional model.
    """

    SETTINGS: Tuple[str, ...] = ('task_outputs',)  # the __init__ arguments saved in the config

    def __init__(self, inputs, outputs, task_outputs: Sequence[str], name=None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self.task_outputs = tuple(task_outputs)

    def _settings(self) -> Dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in ((key, getattr(self, key)) for key in self.SETTINGS)}

    def get_config(self):
        return {**super().get_config(), **self._settings()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        settings = {key: config.pop(key) for key in cls.SETTINGS}
        functional = tf.keras.Model.from_config(config, custom_objects)
        return cls(functional.input, functional.output, name=functional.name, **settings)


class LearntTaskWeights(FunnelModel):
    """A FunnelModel that learns a weight per task output and logs them after fit."""

    def task_weights(self) -> Dict[str, float]:
        """The current weight of each task output."""
        raise NotImplementedError

    def fit(self, *args, **kwargs):
        """Keras' fit, then logs the learnt task weights."""
        history = super().fit(*args, **kwargs)
        logging.info('Learnt task weights (%s): %s', type(self).__name__, ', '.join(
            f'{output} {weight:.4f}' for output, weight in self.task_weights().items()))
        return history


def scaled_sample_weights(sample_weight, scales: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Per-output sample weights multiplied by `scales` (outputs without weights count 1)."""
    sample_weight = {} if sample_weight is None else dict(sample_weight)
    for output, scale in scales.items():
        sample_weight[output] = scale * sample_weight.get(output, 1.0)
    return sample_weight


@tf.keras.utils.register_keras_serializable(package='funnel')
class UncertaintyWeightedModel(LearntTaskWeights):
    """A functional model that learns its task weights (Kendall et al., CVPR 2018):
    loss = sum_i exp(-s_i) * L_i + s_i, with a trainable log-variance s_i per task output.

    Why a Model subclass overriding compute_loss: the weights multiply per-task losses, which
    need the labels, so they cannot live in call (serving has no labels), and Keras' compiled loss
    only returns the sum. compute_loss is what Keras' train_step and test_step call, so compile,
    fit, evaluate, the metrics and tf.distribute's loss scaling stay Keras' own: exp(-s_i) scales
    output i's sample weights (its loss is a weighted mean over the batch, so this scales L_i
    exactly) and sum_i s_i is a model loss, added like a regulariser. The per-output loss metrics
    (p_click_loss ...) therefore show exp(-s_i) * L_i.
    """

    def __init__(self, inputs, outputs, task_outputs: Sequence[str], name=None):
        super().__init__(inputs, outputs, task_outputs, name=name)
        self.log_variances = {output: self.add_weight(name=f'{output}_log_variance', shape=(),
                                                      initializer='zeros')
                              for output in self.task_outputs}
        self.add_loss(lambda: tf.add_n(list(self.log_variances.values())))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        scales = {output: tf.exp(-s) for output, s in self.log_variances.items()}
        return super().compute_loss(x, y, y_pred, scaled_sample_weights(sample_weight, scales))

    def task_weights(self) -> Dict[str, float]:
        """The learnt weight exp(-s_i) of each task output."""
        return {output: float(tf.exp(-s)) for output, s in self.log_variances.items()}


@tf.keras.utils.register_keras_serializable(package='funnel')
class GradNormModel(LearntTaskWeights):
    """A functional model that balances its tasks with GradNorm (Chen et al., ICML 2018).

    Loss L = sum_i w_i * L_i. At every step, besides the usual update of the network by L (the
    w_i held constant), the w_i take a step on L_grad = sum_i |G_i - mean(G) * r_i ** alpha|,
    where G_i = ||d(w_i * L_i) / dW|| on the last shared weights W (the shared layer's
    `last_shared_variables`, trainer/layers.py), r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) is
    task i's inverse training rate and the targets mean(G) * r_i ** alpha are constants. So a
    task that learns slowly gets a larger weight. Afterwards the w_i are clipped to stay positive
    and renormalised to sum to the number of tasks.

    Under tf.distribute, L_i and the gradients on W are summed over the replicas before their norms
    are taken, so every replica computes the same, global G_i, r_i and L_grad; L_grad's gradient is
    divided by the number of replicas, because the optimizer sums the replicas' gradients.
    """

    SETTINGS = ('task_outputs', 'shared_layer', 'alpha')
    MIN_WEIGHT = 1e-3  # the weights are clipped here before renormalising

    def __init__(self, inputs, outputs, task_outputs: Sequence[str], shared_layer: str,
                 alpha: float, name=None):
        super().__init__(inputs, outputs, task_outputs, name=name)
        self.shared_layer = shared_layer
        self.alpha = alpha
        # ONLY_FIRST_REPLICA: every replica computes the same value, so they can be assigned
        # in a replica context (renormalising, recording the initial losses).
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.gradnorm_weights = {output: self.add_weight(name=f'{output}_gradnorm_weight', shape=(),
                                                      initializer='ones', aggregation=first)
                              for output in self.task_outputs}
        self.initial_losses = self.add_weight(name='gradnorm_initial_losses',
                                              shape=(len(self.task_outputs),),
                                              initializer='zeros', trainable=False,
                                              aggregation=first)

    def shared_variables(self) -> List[tf.Variable]:
        """GradNorm's W: the last weights every task depends on."""
        layer = self.get_layer(self.shared_layer)
        return getattr(layer, 'last_shared_variables', lambda: layer.trainable_variables)()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        scales = {output: tf.stop_gradient(w) for output, w in self.gradnorm_weights.items()}
        return super().compute_loss(x, y, y_pred, scaled_sample_weights(sample_weight, scales))

    def _task_losses(self, y, y_pred, sample_weight) -> tf.Tensor:
        """[tasks]: this replica's share of each task's mean BCE over the global batch."""
        sample_weight = {} if sample_weight is None else sample_weight
        task_losses = []
        for output in self.task_outputs:
            p = y_pred[output]
            labels = tf.reshape(tf.cast(y[output], p.dtype), tf.shape(p))
            per_example = tf.keras.losses.binary_crossentropy(labels, p)
            weight = sample_weight.get(output)
            task_losses.append(tf.nn.compute_average_loss(
                per_example, sample_weight=None if weight is None else tf.cast(
                    tf.reshape(weight, tf.shape(per_example)), p.dtype)))
        return tf.stack(task_losses)

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        weights = list(self.gradnorm_weights.values())
        network = [v for v in self.trainable_variables if all(v is not w for w in weights)]
        shared = self.shared_variables()
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
            task_losses = self._task_losses(y, y_pred, sample_weight)
            per_task = [task_losses[i] for i in range(len(weights))]
        replica = tf.distribute.get_replica_context()
        norms = tf.stack([tf.linalg.global_norm(replica.all_reduce(
            tf.distribute.ReduceOp.SUM, tape.gradient(task_loss, shared)))
            for task_loss in per_task])
        global_losses = replica.all_reduce(tf.distribute.ReduceOp.SUM, task_losses)
        self.initial_losses.assign(tf.where(self.initial_losses > 0, self.initial_losses,
                                            global_losses))
        with tf.GradientTape() as weight_tape:
            gradient_norms = tf.stack(weights) * norms
            ratios = global_losses / self.initial_losses
            targets = tf.stop_gradient(tf.reduce_mean(gradient_norms)
                                       * (ratios / tf.reduce_mean(ratios)) ** self.alpha)
            gradnorm_loss = (tf.reduce_sum(tf.abs(gradient_norms - targets))
                             / replica.num_replicas_in_sync)
        gradients = (tape.gradient(loss, network)
                     + weight_tape.gradient(gradnorm_loss, weights))
        del tape
        self.optimizer.apply_gradients(zip(gradients, network + weights))
        clipped = tf.maximum(tf.stack(weights), self.MIN_WEIGHT)
        for weight, value in zip(weights, tf.unstack(
                clipped * len(weights) / tf.reduce_sum(clipped))):
            weight.assign(value)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def task_weights(self) -> Dict[str, float]:
        """The current weight w_i of each task output."""
        return {output: float(w.numpy()) for output, w in self.gradnorm_weights.items()}
