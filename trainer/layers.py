"""Reusable Keras layers of the multi-task models: MLP blocks, the gated mixture of experts.

Sub-layers are created in __init__ (never in call) and every layer has get_config, so a
trained model saves, reloads and runs under tf_keras.
"""

from typing import List, Sequence

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

    def get_config(self):
        return {**super().get_config(), 'units': list(self.units), 'dropout': self.dropout}


@tf.keras.utils.register_keras_serializable(package='funnel')
class MixtureOfExperts(tf.keras.layers.Layer):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

    `num_experts` MLPs see the same input; each task has its own softmax gate over the experts
    and receives the gate-weighted sum of their outputs. A temperature below 1 sharpens the gates.
    """

    def __init__(self, num_experts: int, expert_units: Sequence[int], num_tasks: int,
                 gate_temperature: float = 1.0, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.expert_units = tuple(expert_units)
        self.num_tasks = num_tasks
        self.gate_temperature = gate_temperature
        self.dropout = dropout
        self.experts = [MLP(expert_units, dropout, name=f'expert_{i}') for i in range(num_experts)]
        self.gates = [tf.keras.layers.Dense(num_experts, name=f'gate_{t}')
                      for t in range(num_tasks)]

    def gate_weights(self, x) -> List[tf.Tensor]:
        """Per task, the [batch, num_experts] softmax weights given to the experts."""
        return [tf.nn.softmax(gate(x) / self.gate_temperature, axis=-1) for gate in self.gates]

    def call(self, x, training=None) -> List[tf.Tensor]:
        expert_outputs = tf.stack([expert(x, training=training) for expert in self.experts],
                                  axis=1)  # [batch, experts, units]
        return [tf.einsum('be,beu->bu', weights, expert_outputs)
                for weights in self.gate_weights(x)]

    def get_config(self):
        return {**super().get_config(), 'num_experts': self.num_experts,
                'expert_units': list(self.expert_units), 'num_tasks': self.num_tasks,
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout}


@tf.keras.utils.register_keras_serializable(package='funnel')
class Tower(tf.keras.layers.Layer):
    """A task head: an MLP and one sigmoid unit giving a probability of shape [batch, 1]."""

    def __init__(self, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(units)
        self.dropout = dropout
        self.body = MLP(units, dropout, name='body')
        self.head = tf.keras.layers.Dense(1, activation='sigmoid', name='head')

    def call(self, x, training=None):
        return self.head(self.body(x, training=training))

    def get_config(self):
        return {**super().get_config(), 'units': list(self.units), 'dropout': self.dropout}
