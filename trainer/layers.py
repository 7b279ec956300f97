"""Reusable Keras layers of the multi-task models: MLP blocks, gates, mixtures of experts, towers.

Experts are MLPs; a Gate gives softmax weights over experts; MixtureOfExperts (MMoE) and
ExtractionLevel / ProgressiveLayeredExtraction (PLE, CGC) combine them. Sub-layers are created in
__init__ (never in call) and every layer has get_config, so a trained model saves, reloads and
runs under tf_keras.
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


def _run_experts(experts: Sequence[MLP], x, training) -> tf.Tensor:
    """The experts' outputs for input x, stacked: [batch, experts, units]."""
    return tf.stack([expert(x, training=training) for expert in experts], axis=1)


def _mix(weights, expert_outputs) -> tf.Tensor:
    """The gate-weighted sum of stacked expert outputs: [batch, units]."""
    return tf.einsum('be,beu->bu', weights, expert_outputs)


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
        self.gates = [Gate(num_experts, gate_temperature, name=f'gate_{t}')
                      for t in range(num_tasks)]

    def gate_weights(self, x) -> List[tf.Tensor]:
        """Per task, the [batch, num_experts] softmax weights given to the experts."""
        return [gate(x) for gate in self.gates]

    def call(self, x, training=None) -> List[tf.Tensor]:
        expert_outputs = _run_experts(self.experts, x, training)
        return [_mix(weights, expert_outputs) for weights in self.gate_weights(x)]

    def get_config(self):
        return {**super().get_config(), 'num_experts': self.num_experts,
                'expert_units': list(self.expert_units), 'num_tasks': self.num_tasks,
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout}


@tf.keras.utils.register_keras_serializable(package='funnel')
class ExtractionLevel(tf.keras.layers.Layer):
    """One extraction level of PLE (Tang et al., RecSys 2020); a single level is CGC.

    Takes one input per task plus a shared input (the outputs of the level below). Each task has
    its own experts, fed by its own input, and a gate over its own and the shared experts; the
    shared experts are fed by the shared input. A level below the last also has a shared gate
    over all experts, whose mixture is the next level's shared input. So at the last level, a
    task's own experts and gate are trained by that task's loss only.
    """

    def __init__(self, num_tasks: int, experts_per_task: int, shared_experts: int,
                 expert_units: Sequence[int], gate_temperature: float = 1.0,
                 dropout: float = 0.0, shared_output: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.experts_per_task = experts_per_task
        self.shared_experts = shared_experts
        self.expert_units = tuple(expert_units)
        self.gate_temperature = gate_temperature
        self.dropout = dropout
        self.shared_output = shared_output
        self.task_expert_layers = [
            [MLP(expert_units, dropout, name=f'task_{t}_expert_{e}')
             for e in range(experts_per_task)] for t in range(num_tasks)]
        self.shared_expert_layers = [MLP(expert_units, dropout, name=f'shared_expert_{e}')
                                     for e in range(shared_experts)]
        self.task_gates = [Gate(experts_per_task + shared_experts, gate_temperature,
                                name=f'task_{t}_gate') for t in range(num_tasks)]
        self.shared_gate = (Gate(num_tasks * experts_per_task + shared_experts,
                                 gate_temperature, name='shared_gate')
                            if shared_output else None)

    def gate_weights(self, inputs) -> List[tf.Tensor]:
        """Per task, then for the shared gate if any, the softmax weights over its experts."""
        weights = [gate(x) for gate, x in zip(self.task_gates, inputs)]
        if self.shared_gate is not None:
            weights.append(self.shared_gate(inputs[-1]))
        return weights

    def call(self, inputs, training=None) -> List[tf.Tensor]:
        """num_tasks + 1 inputs in (tasks, then shared); one output per task, plus the shared
        output if this level has one."""
        *task_inputs, shared_input = inputs
        shared = _run_experts(self.shared_expert_layers, shared_input, training)
        own = [_run_experts(experts, x, training)
               for experts, x in zip(self.task_expert_layers, task_inputs)]
        weights = self.gate_weights(inputs)
        outputs = [_mix(task_weights, tf.concat([task_experts, shared], axis=1))
                   for task_weights, task_experts in zip(weights, own)]
        if self.shared_gate is not None:
            outputs.append(_mix(weights[-1], tf.concat(own + [shared], axis=1)))
        return outputs

    def get_config(self):
        return {**super().get_config(), 'num_tasks': self.num_tasks,
                'experts_per_task': self.experts_per_task, 'shared_experts': self.shared_experts,
                'expert_units': list(self.expert_units),
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout,
                'shared_output': self.shared_output}


@tf.keras.utils.register_keras_serializable(package='funnel')
class ProgressiveLayeredExtraction(tf.keras.layers.Layer):
    """PLE: `num_levels` stacked extraction levels; the first sees the same input everywhere.

    Returns one [batch, units] tensor per task.
    """

    def __init__(self, num_levels: int, num_tasks: int, experts_per_task: int,
                 shared_experts: int, expert_units: Sequence[int],
                 gate_temperature: float = 1.0, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.num_tasks = num_tasks
        self.experts_per_task = experts_per_task
        self.shared_experts = shared_experts
        self.expert_units = tuple(expert_units)
        self.gate_temperature = gate_temperature
        self.dropout = dropout
        self.levels = [ExtractionLevel(num_tasks, experts_per_task, shared_experts, expert_units,
                                       gate_temperature, dropout,
                                       shared_output=level < num_levels - 1,
                                       name=f'level_{level}')
                       for level in range(num_levels)]

    def call(self, x, training=None) -> List[tf.Tensor]:
        inputs = [x] * (self.num_tasks + 1)
        for level in self.levels:
            inputs = level(inputs, training=training)
        return inputs

    def get_config(self):
        return {**super().get_config(), 'num_levels': self.num_levels,
                'num_tasks': self.num_tasks, 'experts_per_task': self.experts_per_task,
                'shared_experts': self.shared_experts, 'expert_units': list(self.expert_units),
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout}


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


@tf.keras.utils.register_keras_serializable(package='funnel')
class ConditionalRate(tf.keras.layers.Layer):
    """p_cvr = p_conversion / p_click, clipped to [0, 1], for models that predict p_conversion
    directly (nothing then guarantees p_conversion <= p_click)."""

    def call(self, inputs):
        p_click, p_conversion = inputs
        return tf.clip_by_value(tf.math.divide_no_nan(p_conversion, p_click), 0.0, 1.0)
