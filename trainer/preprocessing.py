"""The Transform's preprocessing_fn: the one feature graph shared by training and serving.

Categorical ids -> vocabulary ids (rare, unseen and, where the spec says `blank: oov`, missing
ids fall into hashed OOV buckets), dense features -> z-scores (log1p first for heavy tails;
missing values imputed with the mean and flagged), labels renamed to the model's label names.
The same graph is attached to the exported model, so there is no training/serving skew.
"""

from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features
from trainer.config import VocabularyConfig, from_dict


def _dense(x, default_value):
    """Turns an optional feature (SparseTensor) into a [batch] tensor, filling gaps."""
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default_value)
    return tf.reshape(x, [-1])


def _is_missing(x: tf.SparseTensor) -> tf.Tensor:
    """1.0 where an optional feature has no value, else 0.0."""
    present = tf.SparseTensor(x.indices, tf.ones_like(x.values, tf.float32), x.dense_shape)
    return 1.0 - _dense(present, 0.0)


def _normalise(x, log: bool):
    """z-score (after log1p for heavy tails) of the present values; missing ones become 0.

    0 is the mean after z-scoring, so missing values are imputed with the mean; the analyzer
    sees only present values, so the imputation does not bias the statistics.
    """
    if isinstance(x, tf.SparseTensor):
        values = tf.cast(x.values, tf.float32)
        values = tf.math.log1p(tf.maximum(values, 0.0)) if log else values
        scaled = tft.scale_to_z_score(tf.SparseTensor(x.indices, values, x.dense_shape))
        return _dense(scaled, 0.0)
    x = tf.cast(_dense(x, 0), tf.float32)
    x = tf.math.log1p(tf.maximum(x, 0.0)) if log else x
    return tft.scale_to_z_score(x)


def _vocabulary_ids(x, **options) -> tf.Tensor:
    """Vocabulary ids of an id column. An optional column (a SparseTensor: the spec's `blank:
    oov`) has its vocabulary computed over the present ids only, and a missing id takes the id
    of an unseen value (b'' for strings, -1 for integers: an OOV bucket), so blanks never become
    a vocabulary entry of their own."""
    missing = b'' if x.dtype == tf.string else -1
    if not isinstance(x, tf.SparseTensor):
        return tft.compute_and_apply_vocabulary(_dense(x, missing), **options)
    num_oov_buckets = options.pop('num_oov_buckets')
    vocabulary = tft.vocabulary(x, **options)
    return tft.apply_vocabulary(_dense(x, missing), vocabulary, num_oov_buckets=num_oov_buckets)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
    """tf.Transform entry point.

    `custom_config` holds the feature spec (`features`, FeatureSpec.to_dict()) and the default
    vocabulary settings (`vocabulary`, VocabularyConfig fields); pipeline/graph.py passes both.
    """
    spec = features.FeatureSpec.from_dict(custom_config['features'])
    vocab = from_dict(VocabularyConfig, custom_config.get('vocabulary', {}))
    outputs = {}
    for column in spec.categorical:
        x = inputs[column.name]
        # Scoped by column: TFT names a vocabulary's lookup table after its graph position, and
        # tables live as long as the process; unscoped, the third id column of one spec (a
        # string) and of another (an int) would claim one table in a process that runs both.
        with tf.name_scope(column.name):
            outputs[column.name] = _vocabulary_ids(
                x, top_k=column.top_k or vocab.top_k,
                frequency_threshold=column.frequency_threshold or vocab.frequency_threshold,
                num_oov_buckets=vocab.num_oov_buckets, vocab_filename=column.name)
    for column in spec.dense:
        x = inputs[column.name]
        outputs[column.name] = _normalise(x, log=column.log)
        if isinstance(x, tf.SparseTensor):
            outputs[features.missing_indicator_name(column.name)] = _is_missing(x)
    for label, column in spec.raw_labels.items():
        outputs[label] = tf.cast(_dense(inputs[column], 0), tf.float32)
    return outputs
