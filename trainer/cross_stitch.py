"""Cross-stitch networks (Misra et al., CVPR 2016).

x -> one MLP column per task, a learnt linear mix of the columns (cross-stitch unit) after every
layer -> per task, its column's last mixed activation.
"""

from typing import List, Sequence

import tensorflow as tf

from trainer.blocks import MLP


@tf.keras.utils.register_keras_serializable(package='funnel')
class CrossStitchUnit(tf.keras.layers.Layer):
    """A learnt linear mix of the tasks' activations (Misra et al., CVPR 2016): task t gets
    sum_s alpha[t, s] * x_s. alpha starts near the identity (0.9 on the diagonal, 0.1 shared
    among the other tasks), so each column starts mostly on its own."""

    def __init__(self, num_tasks: int, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks

    def build(self, input_shape):
        own = 0.9 if self.num_tasks > 1 else 1.0
        initial = [[own if t == s else (1.0 - own) / (self.num_tasks - 1)
                    for s in range(self.num_tasks)] for t in range(self.num_tasks)]
        self.alpha = self.add_weight(name='alpha', shape=(self.num_tasks, self.num_tasks),
                                     initializer=tf.keras.initializers.Constant(initial))
        super().build(input_shape)

    def call(self, inputs) -> List[tf.Tensor]:
        mixed = tf.einsum('ts,bsu->btu', self.alpha, tf.stack(inputs, axis=1))
        return tf.unstack(mixed, num=self.num_tasks, axis=1)

    def get_config(self):
        return {**super().get_config(), 'num_tasks': self.num_tasks}


@tf.keras.utils.register_keras_serializable(package='funnel')
class CrossStitchNetwork(tf.keras.layers.Layer):
    """Cross-stitch networks: one MLP column per task, a CrossStitchUnit after every layer
    (the last one mixes what the towers get). Returns one [batch, units[-1]] tensor per task."""

    def __init__(self, num_tasks: int, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.units = tuple(units)
        self.dropout = dropout
        self.columns = [[MLP([width], dropout, name=f'task_{t}_layer_{i}')
                         for i, width in enumerate(self.units)] for t in range(num_tasks)]
        self.stitches = [CrossStitchUnit(num_tasks, name=f'cross_stitch_{i}')
                         for i in range(len(self.units))]

    def call(self, x, training=None) -> List[tf.Tensor]:
        outputs = [x] * self.num_tasks
        for i, stitch in enumerate(self.stitches):
            outputs = stitch([column[i](h, training=training)
                              for column, h in zip(self.columns, outputs)])
        return outputs

    def last_shared_variables(self) -> List[tf.Variable]:
        """The last mixing unit: the columns themselves are not shared."""
        return self.stitches[-1].trainable_variables

    def get_config(self):
        return {**super().get_config(), 'num_tasks': self.num_tasks, 'units': list(self.units),
                'dropout': self.dropout}
