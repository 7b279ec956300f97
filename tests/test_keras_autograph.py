"""trainer/keras_autograph.py: once a model is built, or an input pipeline applies the
Transform's layer, autograph leaves Keras 2's own code (tf_keras) unconverted, as TensorFlow
leaves 'keras', and still converts the project's layers."""

import tensorflow as tf
import tf_keras
from conftest import TINY_DENSE_FEATURES, TINY_VOCAB_SIZES
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.impl import conversion

from trainer import blocks, keras_autograph, train
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


def test_an_input_pipeline_on_raw_examples_leaves_tf_keras_unconverted(transform_run,
                                                                      monkeypatch):
    """The Trainer builds its input pipelines, which trace the Transform's Keras 2 layer when the
    Transform does not materialize, before it builds the model."""
    monkeypatch.setattr(autograph_config, 'CONVERSION_RULES', tuple(
        rule for rule in autograph_config.CONVERSION_RULES
        if not (isinstance(rule, autograph_config.DoNotConvert)
                and rule.matches(keras_autograph.KERAS_2))))
    assert _converted(tf_keras.layers.Dense.call)
    train.parsed_batches([], train.RawExamplesOutput(transform_run.transform_fn_dir), 8)
    assert not _converted(tf_keras.layers.Dense.call)
