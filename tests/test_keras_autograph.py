"""trainer/keras_autograph.py: once a model is built, autograph leaves Keras 2's own code
(tf_keras) unconverted, as TensorFlow leaves 'keras', and still converts the project's layers."""

import tensorflow as tf
import tf_keras
from conftest import TINY_DENSE_FEATURES, TINY_VOCAB_SIZES
from tensorflow.python.autograph.impl import conversion

from trainer import blocks, keras_autograph
from trainer.config import ModelConfig
from trainer.model import build_model


def _converted(function) -> bool:
    return not conversion.is_allowlisted(function)


def test_building_a_model_leaves_tf_keras_unconverted():
    build_model(ModelConfig(), TINY_VOCAB_SIZES, TINY_DENSE_FEATURES)
    assert not _converted(tf_keras.layers.Dense.call)
    assert not _converted(tf_keras.optimizers.Adam.update_step)
    assert not _converted(tf.keras.Model.train_step)  # tf.keras is tf_keras here
    assert _converted(blocks.MLP.call)  # the project's own code: still autograph's


def test_the_rule_is_added_once():
    keras_autograph.leave_keras_2_unconverted()
    keras_autograph.leave_keras_2_unconverted()
    from tensorflow.python.autograph.core import config
    assert sum(rule.matches(keras_autograph.KERAS_2) for rule in config.CONVERSION_RULES
               if isinstance(rule, config.DoNotConvert)) == 1
