"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018), with optional entity experts.

x -> experts (shared; and per entity, e.g. user and item, experts fed only that side's features)
  -> one softmax gate per task over all experts -> per task, the gate-weighted sum of the experts.
"""

from typing import List, Sequence

import tensorflow as tf

from trainer.blocks import MLP, Gate, mix, run_experts


@tf.keras.utils.register_keras_serializable(package='funnel')
class MixtureOfExperts(tf.keras.layers.Layer):
    """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

    `num_experts` MLPs see the same input; each task has its own softmax gate over the experts
    and receives the gate-weighted sum of their outputs. A temperature below 1 sharpens the gates.

    With `entities` (e.g. user, item) and `entity_experts` > 0, each entity also has that many
    experts of its own, fed only that entity's features, as the towers of a two-tower model are;
    the gates, fed the full input, weight the shared and the entity experts together. The layer
    is then called on [full input, one input per entity].
    """

    def __init__(self, num_experts: int, expert_units: Sequence[int], num_tasks: int,
                 gate_temperature: float = 1.0, dropout: float = 0.0,
                 entities: Sequence[str] = (), entity_experts: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.expert_units = tuple(expert_units)
        self.num_tasks = num_tasks
        self.gate_temperature = gate_temperature
        self.dropout = dropout
        self.entities = tuple(entities) if entity_experts else ()
        self.entity_experts = entity_experts if self.entities else 0
        self.experts = [MLP(expert_units, dropout, name=f'expert_{i}') for i in range(num_experts)]
        self.entity_expert_layers = [[MLP(expert_units, dropout, name=f'{entity}_expert_{i}')
                                      for i in range(self.entity_experts)]
                                     for entity in self.entities]
        self.gates = [Gate(num_experts + len(self.entities) * self.entity_experts,
                           gate_temperature, name=f'gate_{t}') for t in range(num_tasks)]

    def gate_weights(self, x) -> List[tf.Tensor]:
        """Per task, the [batch, experts] softmax weights given to the experts (the shared ones,
        then each entity's), from the full input x."""
        return [gate(x) for gate in self.gates]

    def call(self, inputs, training=None) -> List[tf.Tensor]:
        x, *entity_inputs = inputs if self.entities else [inputs]
        expert_outputs = tf.concat(
            [run_experts(self.experts, x, training)]
            + [run_experts(experts, side, training)
               for experts, side in zip(self.entity_expert_layers, entity_inputs)], axis=1)
        return [mix(weights, expert_outputs) for weights in self.gate_weights(x)]

    def last_shared_variables(self) -> List[tf.Variable]:
        """The last Dense layer of every expert (entity experts serve both tasks too)."""
        experts = self.experts + [e for side in self.entity_expert_layers for e in side]
        return [v for expert in experts for v in expert.last_shared_variables()]

    def get_config(self):
        return {**super().get_config(), 'num_experts': self.num_experts,
                'expert_units': list(self.expert_units), 'num_tasks': self.num_tasks,
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout,
                'entities': list(self.entities), 'entity_experts': self.entity_experts}
