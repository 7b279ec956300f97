"""Builds the funnel model from transformed features; the architecture is chosen by config.

Reads top to bottom like the architecture diagram:
embed ids + project dense -> shared body (by architecture) -> towers -> funnel outputs.

- 'mmoe': experts shared by both tasks, one gate per task (MixtureOfExperts); with
  `entity_experts`, also user-side and item-side experts that see only their side's features
  (the feature spec's `entity` marks), as in two-tower models.
- 'shared_bottom': one MLP shared by both tasks.
- 'ple': task-specific and shared experts over `ple_levels` levels (PLE; one level is CGC).
- 'single_task': two independent networks, each with its own embeddings: no parameter is shared,
  the baseline that measures what sharing brings.
- 'cross_stitch': one MLP column per task, mixed by learnt cross-stitch units (Misra et al., 2016).
- 'aitm': a tower per funnel step, the click step's representation transferred to the conversion
  step by attention (Xi et al., KDD 2021); it predicts p_conversion with its own tower, held
  below p_click by its calibrator penalty.

Each architecture is a layer of its own module (shared_bottom.py, mmoe.py, ple.py, cross_stitch.py,
aitm.py) that turns the input features into one input per task tower. The funnel outputs depend
on the loss (trainer/funnel_outputs.py).

Task weighting and training schedule choose the model's class: a plain Keras model for static
weights and the joint schedule (the default), otherwise a task_weighting.UncertaintyWeightedModel,
task_weighting.GradNormModel or schedules.ScheduledModel, which change how it trains, not what
it computes.

Every architecture can add learned interactions to its input features (trainer/interactions.py):
`user_item_interaction` 'product' (the user side's and the item side's projections multiplied)
and `cross_layers` (DCN-v2 cross layers over all input features).
"""

import functools
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from trainer import features, interactions, keras_autograph, losses, schedules, task_weighting
from trainer.aitm import AITM
from trainer.blocks import MLP
from trainer.config import ModelConfig
from trainer.cross_stitch import CrossStitchNetwork
from trainer.funnel_outputs import funnel_outputs
from trainer.mmoe import MixtureOfExperts
from trainer.ple import ProgressiveLayeredExtraction
from trainer.shared_bottom import SharedBottom

TASKS = ('click', 'cvr')  # the tasks' names in layer names, in the order of the task outputs

# Per architecture, the layer whose last shared weights GradNorm balances the gradients on
# (AITM's towers share nothing: the tasks share the input features only).
SHARED_LAYERS = {'mmoe': 'mmoe', 'shared_bottom': 'shared_bottom', 'ple': 'ple',
                 'cross_stitch': 'cross_stitch', 'aitm': 'dense_projection'}


def embedding_dim(vocab_size: int, max_dim: int) -> int:
    """The usual rule of thumb, 6 * size ** 0.25, capped: small vocabularies get small vectors."""
    return max(1, min(max_dim, math.ceil(6 * vocab_size ** 0.25)))


def build_model(config: ModelConfig, vocab_sizes: Mapping[str, int],
                dense_features: Sequence[str],
                embedding_dims: Optional[Mapping[str, int]] = None,
                input_entities: Optional[Mapping[str, str]] = None) -> tf.keras.Model:
    """The funnel model of `config.architecture`, with the outputs `config.loss` needs.

    Args:
      config: architecture, sizes and loss.
      vocab_sizes: for each categorical feature, its number of ids (vocabulary + OOV buckets).
      dense_features: names of the float inputs (normalised values and missing indicators).
      embedding_dims: embedding sizes set in the feature spec; the others follow embedding_dim.
      input_entities: input name -> entity (FeatureSpec.input_entities), for entity experts.
    Returns:
      A Keras model from a dict of [batch] tensors to {p_click, p_cvr, p_conversion}, each of
      shape [batch, 1]; of the class that trains it as `config` says (see the module doc).
    Raises:
      features.FeatureSpecError: entity experts are asked for, but a side has no feature.
    """
    keras_autograph.leave_keras_2_unconverted()  # before this model's first trace
    inputs = {name: tf.keras.Input(shape=(), dtype=tf.int64, name=name) for name in vocab_sizes}
    inputs.update({name: tf.keras.Input(shape=(), dtype=tf.float32, name=name)
                   for name in dense_features})

    dims = {name: (embedding_dims or {}).get(name) or embedding_dim(size, config.max_embedding_dim)
            for name, size in vocab_sizes.items()}
    embed = functools.partial(_embed, config, inputs, vocab_sizes, dims, dense_features)
    if config.architecture == 'single_task':  # two networks sharing no layer, not even embeddings
        click_input, cvr_input = [
            MLP(config.expert_units, config.dropout, name=f'{task}_bottom')(
                _interactions(config, *embed(prefix=f'{task}_'), input_entities,
                              prefix=f'{task}_'))
            for task in TASKS]
    else:
        embedded, columns = embed()
        x = _interactions(config, embedded, columns, input_entities)
        if config.entity_experts:  # then each entity's own embeddings and dense columns too
            own = {**embedded, **columns}
            sides = features.entity_inputs(input_entities or {}, list(inputs))
            x = [x] + [tf.keras.layers.Concatenate(name=f'{entity}_features')(
                [own[name] for name in names]) for entity, names in sides.items()]
        click_input, cvr_input = _shared_body(config, x)

    outputs = funnel_outputs(config, click_input, cvr_input)
    name = f'funnel_{config.architecture}'
    task_outputs = losses.LOSS_OUTPUTS[config.loss]
    if config.task_weighting == 'uncertainty':
        return task_weighting.UncertaintyWeightedModel(inputs, outputs, task_outputs, name=name)
    if config.task_weighting == 'gradnorm':
        return task_weighting.GradNormModel(inputs, outputs, task_outputs,
                                            shared_layer=SHARED_LAYERS[config.architecture],
                                            alpha=config.gradnorm_alpha, name=name)
    if config.schedule != 'joint':
        return schedules.ScheduledModel(inputs, outputs, task_outputs, config.schedule,
                                        config.curriculum_click_steps,
                                        config.curriculum_ramp_steps, name=name)
    return tf.keras.Model(inputs=inputs, outputs=outputs, name=name)


def _embed(config: ModelConfig, inputs: Mapping[str, tf.Tensor], vocab_sizes: Mapping[str, int],
           embedding_dims: Mapping[str, int], dense_features: Sequence[str],
           prefix: str = '') -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Per id input its embedding [batch, dim], per float input its column [batch, 1].

    `prefix` names the layers of a second, independent copy (the single-task networks).
    """
    regularizer = tf.keras.regularizers.L2(config.embedding_l2) if config.embedding_l2 else None
    embedded = {name: tf.keras.layers.Embedding(size, embedding_dims[name],
                                                embeddings_regularizer=regularizer,
                                                name=f'{prefix}{name}_embedding')(inputs[name])
                for name, size in vocab_sizes.items()}
    columns = {name: tf.keras.layers.Reshape((1,), name=f'{prefix}{name}_column')(inputs[name])
               for name in dense_features}
    return embedded, columns


def _input_features(config: ModelConfig, embedded: Mapping[str, tf.Tensor],
                    columns: Mapping[str, tf.Tensor], prefix: str = '') -> tf.Tensor:
    """The embeddings and a learnt linear projection of the dense columns, concatenated."""
    parts = list(embedded.values())
    if columns:  # a feature spec may declare ids only
        dense = tf.keras.layers.Concatenate(name=f'{prefix}dense_inputs')(list(columns.values()))
        parts.append(tf.keras.layers.Dense(config.dense_projection_dim,
                                           name=f'{prefix}dense_projection')(dense))
    return tf.keras.layers.Concatenate(name=f'{prefix}input_features')(parts)


def _interactions(config: ModelConfig, embedded: Mapping[str, tf.Tensor],
                  columns: Mapping[str, tf.Tensor], input_entities: Optional[Mapping[str, str]],
                  prefix: str = '') -> tf.Tensor:
    """The input features, through the cross layers and with the user x item product appended,
    as `config` asks; raises features.FeatureSpecError if the product lacks a side."""
    x = _input_features(config, embedded, columns, prefix)
    if config.cross_layers:
        x = interactions.CrossNetwork(config.cross_layers, name=f'{prefix}cross_network')(x)
    if config.user_item_interaction == 'product':
        own = {**embedded, **columns}
        sides = features.entity_inputs(input_entities or {}, list(own))
        user, item = [tf.keras.layers.Concatenate(name=f'{prefix}{entity}_side')(
            [own[name] for name in sides[entity]]) for entity in features.ENTITIES]
        product = interactions.UserItemProduct(config.interaction_dim,
                                               name=f'{prefix}user_item_product')([user, item])
        x = tf.keras.layers.Concatenate(name=f'{prefix}with_interactions')([x, product])
    return x


def _shared_body(config: ModelConfig, x) -> List[tf.Tensor]:
    """The body between the input features and the towers: one input per tower (click, cvr).
    x is the input features, or with entity experts [input features, user, item features]."""
    tasks, units, dropout = len(TASKS), config.expert_units, config.dropout
    if config.architecture == 'mmoe':
        return MixtureOfExperts(config.num_experts, units, tasks, config.gate_temperature, dropout,
                                entities=features.ENTITIES, entity_experts=config.entity_experts,
                                name='mmoe')(x)
    if config.architecture == 'shared_bottom':
        return SharedBottom(tasks, units, dropout, name='shared_bottom')(x)
    if config.architecture == 'ple':
        return ProgressiveLayeredExtraction(config.ple_levels, tasks, config.experts_per_task,
                                            config.shared_experts, units,
                                            config.gate_temperature, dropout, name='ple')(x)
    if config.architecture == 'cross_stitch':
        return CrossStitchNetwork(tasks, units, dropout, name='cross_stitch')(x)
    if config.architecture == 'aitm':
        return AITM(tasks, units, dropout, name='aitm')(x)
    raise ValueError(f'Unknown model architecture {config.architecture!r}.')


def compile_model(funnel_model: tf.keras.Model, config: ModelConfig) -> tf.keras.Model:
    """Adam, the funnel loss of `config` and an AUC per trained output."""
    loss, loss_weights = losses.funnel_loss(config)
    # Weighted, so that p_cvr's AUC (naive loss) is over clicked impressions, like its loss.
    funnel_model.compile(
        optimizer=tf.keras.optimizers.Adam(config.learning_rate),
        loss=loss, loss_weights=loss_weights,
        weighted_metrics={output: [tf.keras.metrics.AUC(name='auc')] for output in loss})
    return funnel_model
