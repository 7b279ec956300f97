"""Reusable Keras layers of the multi-task models: MLP blocks, gates, mixtures of experts, towers.

Experts are MLPs; a Gate gives softmax weights over experts; MixtureOfExperts (MMoE) and
ExtractionLevel / ProgressiveLayeredExtraction (PLE, CGC) combine them. CrossStitchNetwork mixes
per-task MLP columns; AITM passes information along the funnel's task towers. Sub-layers are
created in __init__ and weights in build (never in call), and every layer has get_config, so a
trained model saves, reloads and runs under tf_keras.

The shared bodies also name their last shared weights (`last_shared_variables`): GradNorm
(trainer/losses.py) balances the tasks' gradient norms on them.
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
            [_run_experts(self.experts, x, training)]
            + [_run_experts(experts, side, training)
               for experts, side in zip(self.entity_expert_layers, entity_inputs)], axis=1)
        return [_mix(weights, expert_outputs) for weights in self.gate_weights(x)]

    def last_shared_variables(self) -> List[tf.Variable]:
        """The last Dense layer of every expert (entity experts serve both tasks too)."""
        experts = self.experts + [e for side in self.entity_expert_layers for e in side]
        return [v for expert in experts for v in expert.last_shared_variables()]

    def get_config(self):
        return {**super().get_config(), 'num_experts': self.num_experts,
                'expert_units': list(self.expert_units), 'num_tasks': self.num_tasks,
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout,
                'entities': list(self.entities), 'entity_experts': self.entity_experts}


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

    def last_shared_variables(self) -> List[tf.Variable]:
        """The last Dense layer of every shared expert of the last level."""
        return [v for expert in self.levels[-1].shared_expert_layers
                for v in expert.last_shared_variables()]

    def get_config(self):
        return {**super().get_config(), 'num_levels': self.num_levels,
                'num_tasks': self.num_tasks, 'experts_per_task': self.experts_per_task,
                'shared_experts': self.shared_experts, 'expert_units': list(self.expert_units),
                'gate_temperature': self.gate_temperature, 'dropout': self.dropout}


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
        return _mix(self.attention_weights(inputs), self.value(tf.stack(inputs, axis=1)))

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
