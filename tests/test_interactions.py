"""trainer/interactions.py through the one model builder: every architecture takes the user x
item product and the cross layers, their weights learn from the funnel loss, and the settings
are validated."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import SPEC, TINY_DENSE_FEATURES, TINY_VOCAB_SIZES

from pipeline.config import load_config
from trainer import features, interactions, losses
from trainer.config import ARCHITECTURES, ConfigError
from trainer.labels import labels_for_loss
from trainer.model import build_model


@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_every_architecture_learns_through_the_interactions(tiny_config, random_inputs,
                                                            architecture):
    config = dataclasses.replace(tiny_config, architecture=architecture,
                                 loss='monotonic' if architecture == 'aitm' else 'esmm',
                                 user_item_interaction='product', interaction_dim=3,
                                 cross_layers=2)
    config.validate()
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES,
                        input_entities=SPEC.input_entities)
    inputs = random_inputs(batch=32, seed=1)
    rng = np.random.default_rng(2)
    click = (rng.random(32) < 0.4).astype(np.float32)
    labels, weights = labels_for_loss(
        {features.CLICK_LABEL: click, features.CONVERSION_LABEL: click * (rng.random(32) < 0.5)})
    loss_fns, _ = losses.funnel_loss(config)
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        loss = sum(fn(tf.reshape(labels[name], (-1, 1)), outputs[name])
                   for name, fn in loss_fns.items())
    interaction_weights = [w for w in model.trainable_weights
                           if 'user_item_product' in w.name or 'cross_network' in w.name]
    prefixes = ('click_', 'cvr_') if architecture == 'single_task' else ('',)
    assert len(interaction_weights) == len(prefixes) * (2 + 2 * 2)  # 2 projections, 2 x (W, b)
    for weight, gradient in zip(interaction_weights,
                                tape.gradient(loss, interaction_weights)):
        assert gradient is not None and np.any(gradient.numpy() != 0), weight.name
    for value in outputs.values():
        assert value.shape == (32, 1) and np.all((value.numpy() >= 0) & (value.numpy() <= 1))


def test_user_item_product_is_the_product_of_the_projections():
    layer = interactions.UserItemProduct(2)
    user, item = np.ones((1, 3), np.float32), np.full((1, 4), 2.0, np.float32)
    out = layer([user, item]).numpy()
    expected = (user @ layer.user.kernel.numpy()) * (item @ layer.item.kernel.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_cross_layer_is_dcn_v2():
    layer = interactions.CrossNetwork(1)
    x0 = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    out = layer(x0).numpy()
    dense = layer.cross[0]
    expected = x0 * (x0 @ dense.kernel.numpy() + dense.bias.numpy()) + x0
    np.testing.assert_allclose(out, expected, rtol=1e-5)


@pytest.mark.parametrize('cls, kwargs', [(interactions.UserItemProduct, {'dim': 4}),
                                         (interactions.CrossNetwork, {'num_layers': 3})])
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name='layer')
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize('env, message', [
    ({'FUNNEL_MODEL_USER_ITEM_INTERACTION': 'dot'}, "must be one of 'none', 'product'"),
    ({'FUNNEL_MODEL_CROSS_LAYERS': '-1'}, 'must be >= 0'),
    ({'FUNNEL_MODEL_INTERACTION_DIM': '0'}, 'must be > 0'),
])
def test_settings_are_validated(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_product_needs_both_sides(tiny_config):
    config = dataclasses.replace(tiny_config, user_item_interaction='product')
    with pytest.raises(features.FeatureSpecError, match='no column is marked entity: item'):
        build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES,
                    input_entities={'user_id': 'user'})
