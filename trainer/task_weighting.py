"""How the two task losses are weighted (config.task_weighting), as Keras Model subclasses.

'static' multiplies the losses by click_loss_weight and conversion_loss_weight (a plain Keras
model; trainer/losses.py). 'uncertainty' (UncertaintyWeightedModel) and 'gradnorm' (GradNormModel)
learn the weights. Both scale each task output's sample weights, so Keras' compiled loss,
metrics and tf.distribute loss scaling stay Keras' own; a training schedule (trainer/schedules.py)
does the same with weights that follow the step.
"""

import logging
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf


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
    `last_shared_variables`, trainer/blocks.py), r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) is
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
