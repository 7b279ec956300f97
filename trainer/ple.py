"""Progressive Layered Extraction (Tang et al., RecSys 2020); a single level is CGC.

x -> level 1 .. level L, each with task-specific and shared experts and a gate per task (and,
below the last level, a shared gate) -> per task, its gate's mixture at the last level.
"""

from typing import List, Sequence

import tensorflow as tf

from trainer.blocks import MLP, Gate, mix, run_experts


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
        shared = run_experts(self.shared_expert_layers, shared_input, training)
        own = [run_experts(experts, x, training)
               for experts, x in zip(self.task_expert_layers, task_inputs)]
        weights = self.gate_weights(inputs)
        outputs = [mix(task_weights, tf.concat([task_experts, shared], axis=1))
                   for task_weights, task_experts in zip(weights, own)]
        if self.shared_gate is not None:
            outputs.append(mix(weights[-1], tf.concat(own + [shared], axis=1)))
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

    def last_shared_variables(self) -> List[tf.Variable]:
        """The last Dense layer of every shared expert of the last level."""
        return [v for expert in self.levels[-1].shared_expert_layers
                for v in expert.last_shared_variables()]

    def get_config(self):
        return {**super().get_config(), 'num_levels': self.num_levels,
                'num_tasks': self.num_tasks, 'experts_per_task': self.experts_per_task,
                'shared_experts': self.shared_experts, 'expert_units': list(self.expert_units),
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout}
