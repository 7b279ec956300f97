"""The building blocks every architecture shares: MLPs, softmax gates over experts, task towers.

Sub-layers are created in __init__ and weights in build (never in call), and every layer has
get_config, so a trained model saves, reloads and runs under tf_keras. A shared body names its
last shared weights (`last_shared_variables`): GradNorm (trainer/task_weighting.py) balances the
tasks' gradient norms on them.
"""

from typing import List, Optional, Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package='funnel')
class MLP(tf.keras.layers.Layer):
    """A stack of ReLU Dense layers with optional dropout: the body of experts and towers."""

    def __init__(self, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(units)
        self.dropout = dropout
        self.blocks = []
        for i, width in enumerate(self.units):
            self.blocks.append(tf.keras.layers.Dense(width, activation='relu', name=f'dense_{i}'))
            if dropout:
                self.blocks.append(tf.keras.layers.Dropout(dropout, name=f'dropout_{i}'))

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def last_shared_variables(self) -> List[tf.Variable]:
        """The weights of the last Dense layer."""
        return [block for block in self.blocks
                if isinstance(block, tf.keras.layers.Dense)][-1].trainable_variables

    def get_config(self):
        return {**super().get_config(), 'units': list(self.units), 'dropout': self.dropout}


@tf.keras.utils.register_keras_serializable(package='funnel')
class Gate(tf.keras.layers.Layer):
    """Per row, softmax weights over `num_experts` experts (>= 0, summing to 1).

    A temperature below 1 sharpens the weights, above 1 flattens them.
    """

    def __init__(self, num_experts: int, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.temperature = temperature
        self.logits = tf.keras.layers.Dense(num_experts, name='logits')

    def call(self, x):
        return tf.nn.softmax(self.logits(x) / self.temperature, axis=-1)

    def get_config(self):
        return {**super().get_config(), 'num_experts': self.num_experts,
                'temperature': self.temperature}


def run_experts(experts: Sequence[MLP], x, training) -> tf.Tensor:
    """The experts' outputs for input x, stacked: [batch, experts, units]."""
    return tf.stack([expert(x, training=training) for expert in experts], axis=1)


def mix(weights, expert_outputs) -> tf.Tensor:
    """The gate-weighted sum of stacked expert outputs: [batch, units]."""
    return tf.einsum('be,beu->bu', weights, expert_outputs)


@tf.keras.utils.register_keras_serializable(package='funnel')
class Tower(tf.keras.layers.Layer):
    """A task head: an MLP and one output unit of shape [batch, 1].

    The unit is a sigmoid (a probability) by default; activation=None gives a regression head
    (bench/mmoe_paper.py).
    """

    def __init__(self, units: Sequence[int], dropout: float = 0.0,
                 activation: Optional[str] = 'sigmoid', **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(units)
        self.dropout = dropout
        self.activation = activation
        self.body = MLP(units, dropout, name='body')
        self.head = tf.keras.layers.Dense(1, activation=activation, name='head')

    def call(self, x, training=None):
        return self.head(self.body(x, training=training))

    def get_config(self):
        return {**super().get_config(), 'units': list(self.units), 'dropout': self.dropout,
                'activation': self.activation}
