"""Builds the funnel MMoE model from transformed features.

Reads top to bottom like the architecture diagram:
embed ids + project dense -> experts -> per-task gates -> towers -> funnel outputs.
p_conversion = p_click * p_cvr (ESMM entire-space modelling), so p_conversion <= p_click holds
by construction and the CVR tower learns from every impression, not only from clicks.
"""

import math
from typing import Mapping, Sequence

import tensorflow as tf

from pipeline.config import ModelConfig
from trainer import features, layers


def embedding_dim(vocab_size: int, max_dim: int) -> int:
    """The usual rule of thumb, 6 * size ** 0.25, capped: small vocabularies get small vectors."""
    return max(1, min(max_dim, math.ceil(6 * vocab_size ** 0.25)))


def build_model(config: ModelConfig, vocab_sizes: Mapping[str, int],
                dense_features: Sequence[str]) -> tf.keras.Model:
    """The MMoE funnel model.

    Args:
      config: architecture sizes.
      vocab_sizes: for each categorical feature, its number of ids (vocabulary + OOV buckets).
      dense_features: names of the float inputs (normalised values and missing indicators).
    Returns:
      A Keras model from a dict of [batch] tensors to {p_click, p_cvr, p_conversion}, each of
      shape [batch, 1].
    """
    inputs = {name: tf.keras.Input(shape=(), dtype=tf.int64, name=name) for name in vocab_sizes}
    inputs.update({name: tf.keras.Input(shape=(), dtype=tf.float32, name=name)
                   for name in dense_features})

    regularizer = tf.keras.regularizers.L2(config.embedding_l2) if config.embedding_l2 else None
    embedded = [tf.keras.layers.Embedding(size, embedding_dim(size, config.max_embedding_dim),
                                          embeddings_regularizer=regularizer,
                                          name=f'{name}_embedding')(inputs[name])
                for name, size in vocab_sizes.items()]
    dense = tf.keras.layers.Concatenate(name='dense_inputs')(
        [tf.keras.layers.Reshape((1,), name=f'{name}_column')(inputs[name])
         for name in dense_features])
    projected = tf.keras.layers.Dense(config.dense_projection_dim, name='dense_projection')(dense)
    shared_input = tf.keras.layers.Concatenate(name='shared_input')(embedded + [projected])

    ctr_input, cvr_input = layers.MixtureOfExperts(
        config.num_experts, config.expert_units, num_tasks=2,
        gate_temperature=config.gate_temperature, dropout=config.dropout,
        name='mmoe')(shared_input)

    p_click = layers.Tower(config.tower_units, config.dropout, name=features.P_CLICK)(ctr_input)
    p_cvr = layers.Tower(config.tower_units, config.dropout, name=features.P_CVR)(cvr_input)
    p_conversion = tf.keras.layers.Multiply(name=features.P_CONVERSION)([p_click, p_cvr])
    return tf.keras.Model(inputs=inputs, outputs={features.P_CLICK: p_click,
                                                  features.P_CVR: p_cvr,
                                                  features.P_CONVERSION: p_conversion},
                          name='funnel_mmoe')
