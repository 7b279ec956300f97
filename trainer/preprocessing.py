"""The Transform's preprocessing_fn: the one feature graph shared by training and serving.

Categorical ids -> vocabulary ids (rare and unseen ids fall into hashed OOV buckets), dense
features -> z-scores (log1p first for heavy tails; missing values imputed with the mean and
flagged), labels passed through. The same graph is attached to the exported model, so there
is no training/serving skew.
"""

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from pipeline.config import VocabularyConfig, from_dict
from trainer import features


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


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
    """tf.Transform entry point; `custom_config['vocabulary']` holds VocabularyConfig fields."""
    vocab = from_dict(VocabularyConfig, (custom_config or {}).get('vocabulary', {}))
    outputs = {}
    for name in features.CATEGORICAL_FEATURES:
        ids = _dense(inputs[name], b'' if inputs[name].dtype == tf.string else -1)
        outputs[name] = tft.compute_and_apply_vocabulary(
            ids, top_k=vocab.top_k, frequency_threshold=vocab.frequency_threshold,
            num_oov_buckets=vocab.num_oov_buckets, vocab_filename=name)
    for name in features.DENSE_FEATURES:
        x = inputs[name]
        outputs[name] = _normalise(x, log=name in features.LOG_DENSE_FEATURES)
        if isinstance(x, tf.SparseTensor):
            outputs[features.missing_indicator_name(name)] = _is_missing(x)
    for name in features.LABELS:
        outputs[name] = tf.cast(_dense(inputs[name], 0), tf.float32)
    return outputs
