"""Adaptive Information Transfer Multi-task (Xi et al., KDD 2021) along the funnel.

x -> a tower per funnel step (click, conversion); the click step's representation is transferred
to the conversion step and mixed with its own by attention -> per step, its representation.
"""

from typing import List, Sequence

import tensorflow as tf

from trainer.blocks import MLP, mix


@tf.keras.utils.register_keras_serializable(package='funnel')
class InformationTransfer(tf.keras.layers.Layer):
    """AITM's adaptive information transfer (Xi et al., KDD 2021): self-attention over two
    representations of a funnel step, the one transferred from the previous step and the step's
    own. With h1, h2, h3 linear maps to `units`: w_u = softmax_u(<h1(u), h2(u)> / sqrt(units)),
    output sum_u w_u * h3(u)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.query = tf.keras.layers.Dense(units, name='query')
        self.key = tf.keras.layers.Dense(units, name='key')
        self.value = tf.keras.layers.Dense(units, name='value')

    def attention_weights(self, inputs) -> tf.Tensor:
        """[batch, 2]: the weights of (transferred, own), >= 0 and summing to 1."""
        stacked = tf.stack(inputs, axis=1)
        scores = tf.reduce_sum(self.query(stacked) * self.key(stacked), axis=-1)
        return tf.nn.softmax(scores / self.units ** 0.5, axis=-1)

    def call(self, inputs):
        """inputs: [transferred, own], each [batch, d]; returns [batch, units]."""
        return mix(self.attention_weights(inputs), self.value(tf.stack(inputs, axis=1)))

    def get_config(self):
        return {**super().get_config(), 'units': self.units}


@tf.keras.utils.register_keras_serializable(package='funnel')
class AITM(tf.keras.layers.Layer):
    """AITM's task towers along the funnel (click, then conversion): each step has its own MLP;
    from the second step on, the previous step's representation passes through a transfer layer
    (ReLU Dense) and InformationTransfer mixes it with the step's own. Returns one
    [batch, units[-1]] representation per step, for its output tower. Nothing here is shared
    between the steps: they share the input embeddings and what is transferred."""

    def __init__(self, num_tasks: int, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.units = tuple(units)
        self.dropout = dropout
        self.task_layers = [MLP(units, dropout, name=f'task_{t}') for t in range(num_tasks)]
        self.transfers = [tf.keras.layers.Dense(self.units[-1], activation='relu',
                                                name=f'transfer_{t}')
                          for t in range(num_tasks - 1)]
        self.information_transfers = [InformationTransfer(self.units[-1], name=f'ait_{t + 1}')
                                      for t in range(num_tasks - 1)]

    def call(self, x, training=None) -> List[tf.Tensor]:
        outputs = [self.task_layers[0](x, training=training)]
        for task_layer, transfer, attention in zip(self.task_layers[1:], self.transfers,
                                                   self.information_transfers):
            own = task_layer(x, training=training)
            outputs.append(attention([transfer(outputs[-1]), own]))
        return outputs

    def get_config(self):
        return {**super().get_config(), 'num_tasks': self.num_tasks, 'units': list(self.units),
                'dropout': self.dropout}
