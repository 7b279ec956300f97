"""Shared-bottom multi-task learning (Caruana, 1997): hard parameter sharing.

x -> one MLP every task shares -> the same representation for every task's tower.
"""

from typing import List, Sequence

import tensorflow as tf

from trainer.blocks import MLP


@tf.keras.utils.register_keras_serializable(package='funnel')
class SharedBottom(tf.keras.layers.Layer):
    """One MLP shared by all `num_tasks` tasks; returns its output once per task."""

    def __init__(self, num_tasks: int, units: Sequence[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.units = tuple(units)
        self.dropout = dropout
        self.bottom = MLP(units, dropout, name='bottom')

    def call(self, x, training=None) -> List[tf.Tensor]:
        return [self.bottom(x, training=training)] * self.num_tasks

    def last_shared_variables(self) -> List[tf.Variable]:
        """The bottom's last Dense layer."""
        return self.bottom.last_shared_variables()

    def get_config(self):
        return {**super().get_config(), 'num_tasks': self.num_tasks, 'units': list(self.units),
                'dropout': self.dropout}
