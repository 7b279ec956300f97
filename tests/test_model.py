"""Tests of trainer/model.py and its layers (blocks.py, mmoe.py): outputs, gates, gradients,
serialization."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_DENSE_FEATURES, TINY_VOCAB_SIZES

from trainer import blocks, features, losses, mmoe
from trainer.labels import labels_for_loss
from trainer.model import build_model, embedding_dim


def _predict(model, inputs):
    return {name: value.numpy() for name, value in model(inputs, training=False).items()}


def test_outputs_are_funnel_probabilities(tiny_model, random_inputs):
    """p_click, p_cvr, p_conversion: [batch, 1], in [0, 1], p_conversion = p_click * p_cvr."""
    outputs = _predict(tiny_model, random_inputs(batch=16))
    assert set(outputs) == set(features.OUTPUTS)
    for name, value in outputs.items():
        assert value.shape == (16, 1), name
        assert ((value >= 0) & (value <= 1)).all(), name
    np.testing.assert_allclose(outputs['p_conversion'], outputs['p_click'] * outputs['p_cvr'],
                               rtol=1e-6)
    assert (outputs['p_conversion'] <= outputs['p_click']).all()
    assert np.ptp(outputs['p_click']) > 0  # the outputs depend on the inputs


def test_model_takes_one_named_input_per_feature(tiny_model):
    """The inputs are the categorical ids (int64) and dense floats, by name, each [batch]."""
    by_name = {tensor.name.split(':')[0]: tensor for tensor in tiny_model.inputs}
    assert set(tiny_model.input_names) == set(TINY_VOCAB_SIZES) | set(TINY_DENSE_FEATURES)
    for name in TINY_VOCAB_SIZES:
        assert by_name[name].dtype == tf.int64 and by_name[name].shape.as_list() == [None]
    for name in TINY_DENSE_FEATURES:
        assert by_name[name].dtype == tf.float32 and by_name[name].shape.as_list() == [None]


def test_embedding_sizes_follow_the_rule(tiny_config):
    """Embedding dim = min(max_dim, ceil(6 * size ** 0.25)), at least 1."""
    assert embedding_dim(1, 16) == 6
    assert embedding_dim(16, 16) == 12
    assert embedding_dim(81, 100) == 18
    assert embedding_dim(100_000, 16) == 16
    assert embedding_dim(2, 1) == 1
    config = dataclasses.replace(tiny_config, max_embedding_dim=16)
    model = build_model(config, {'user_id': 10_000, 'device': 3}, ['price', 'user_age'])
    assert model.get_layer('user_id_embedding').input_dim == 10_000
    assert model.get_layer('user_id_embedding').output_dim == 16  # 60, capped
    assert model.get_layer('device_embedding').output_dim == 8    # ceil(6 * 3 ** 0.25)


def _mmoe(temperature=1.0, **kwargs):
    """A MixtureOfExperts over 6 input features, called once so that its weights exist."""
    layer = mmoe.MixtureOfExperts(num_experts=4, expert_units=(8, 4), num_tasks=2,
                                    gate_temperature=temperature, **kwargs)
    layer(tf.zeros((1, 6)))
    return layer


def _entropy(weights):
    return -(weights * np.log(weights)).sum(axis=-1)


def test_gates_are_softmax_weights_per_task():
    """Each task's gate gives every row weights over the experts that are >= 0 and sum to 1."""
    tf.keras.utils.set_random_seed(0)
    layer = _mmoe()
    x = tf.random.normal((10, 6), seed=1)
    gates = layer.gate_weights(x)
    assert len(gates) == 2
    for weights in gates:
        assert weights.shape == (10, 4)
        assert (weights.numpy() >= 0).all()
        np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, rtol=1e-6)
    assert not np.allclose(gates[0].numpy(), gates[1].numpy())  # one gate per task
    outputs = layer(x)
    assert len(outputs) == 2 and all(output.shape == (10, 4) for output in outputs)


def test_low_temperature_sharpens_the_gates():
    """Same weights, temperature 0.5 vs 1: every row's gate distribution has lower entropy."""
    tf.keras.utils.set_random_seed(0)
    warm, cold = _mmoe(1.0), _mmoe(0.5)
    cold.set_weights(warm.get_weights())
    x = tf.random.normal((10, 6), seed=2)
    for warm_gate, cold_gate in zip(warm.gate_weights(x), cold.gate_weights(x)):
        assert (_entropy(cold_gate.numpy()) < _entropy(warm_gate.numpy())).all()
        # Temperature only rescales the logits: same ranking of experts per row.
        np.testing.assert_array_equal(np.argmax(cold_gate, -1), np.argmax(warm_gate, -1))


def test_funnel_loss_reaches_every_expert(tiny_config, tiny_model, random_inputs):
    """One step of the ESMM loss gives every expert (and both towers) non-zero gradients."""
    inputs = random_inputs(batch=32, seed=3)
    rng = np.random.default_rng(3)
    click = (rng.random(32) < 0.5).astype(np.float32)
    conversion = click * (rng.random(32) < 0.5)
    labels, _ = labels_for_loss({'click': tf.constant(click),
                                        'conversion': tf.constant(conversion, tf.float32)})
    loss_fns, weights = losses.funnel_loss(tiny_config)
    with tf.GradientTape() as tape:
        outputs = tiny_model(inputs, training=True)
        loss = tf.add_n([weights[name] * loss_fns[name](labels[name], outputs[name])
                         for name in loss_fns])
    variables = tiny_model.trainable_variables
    gradients = dict(zip((v.name for v in variables), tape.gradient(loss, variables)))
    mmoe = tiny_model.get_layer('mmoe')
    assert len(mmoe.experts) == tiny_config.num_experts
    for expert in mmoe.experts:
        kernels = [v for v in expert.trainable_variables if 'kernel' in v.name]
        assert len(kernels) == len(tiny_config.expert_units)
        for kernel in kernels:
            assert np.abs(gradients[kernel.name].numpy()).sum() > 0, kernel.name
    for tower in (features.P_CLICK, features.P_CVR):
        head = tiny_model.get_layer(tower).head.kernel
        assert np.abs(gradients[head.name].numpy()).sum() > 0, tower


def test_mixture_of_experts_config_round_trip():
    """from_config(get_config()) rebuilds the same layer: same settings, same outputs."""
    tf.keras.utils.set_random_seed(0)
    layer = _mmoe(0.7, dropout=0.1, name='mmoe')
    config = layer.get_config()
    clone = mmoe.MixtureOfExperts.from_config(config)
    clone(tf.zeros((1, 6)))
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    assert (clone.num_experts, clone.expert_units, clone.num_tasks, clone.gate_temperature,
            clone.dropout) == (4, (8, 4), 2, 0.7, 0.1)
    x = tf.random.normal((5, 6), seed=4)
    for a, b in zip(layer(x), clone(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


@pytest.mark.parametrize('cls, kwargs', [(blocks.MLP, {'units': [4, 2], 'dropout': 0.2}),
                                         (blocks.Tower, {'units': [3], 'dropout': 0.0})])
def test_mlp_and_tower_config_round_trip(cls, kwargs):
    """MLP and Tower rebuild from their config (needed to reload a saved model)."""
    layer = cls(**kwargs, name='block')
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_saved_model_reloads_with_same_predictions(tmp_path, tiny_model, random_inputs):
    """model.save(save_format='tf') + load_model revives the custom layers, same predictions."""
    inputs = random_inputs(batch=8, seed=5)
    before = _predict(tiny_model, inputs)
    tiny_model.save(str(tmp_path / 'model'), save_format='tf')
    loaded = tf.keras.models.load_model(str(tmp_path / 'model'))
    assert isinstance(loaded.get_layer('mmoe'), mmoe.MixtureOfExperts)
    assert isinstance(loaded.get_layer(features.P_CLICK), blocks.Tower)
    after = _predict(loaded, inputs)
    for name in features.OUTPUTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('vocab_sizes, dense', [({'site': 7}, []), ({}, ['bid']),
                                                ({'site': 7, 'os': 3}, ['bid'])])
def test_any_number_of_ids_and_dense_features(tiny_config, random_inputs, vocab_sizes, dense):
    """A feature spec may declare ids only, dense values only, or one of each."""
    model = build_model(tiny_config, vocab_sizes, dense, embedding_dims={'site': 5})
    outputs = model(random_inputs(batch=4, vocab_sizes=vocab_sizes, dense_features=dense))
    assert {name: tuple(v.shape) for name, v in outputs.items()} == {
        'p_click': (4, 1), 'p_cvr': (4, 1), 'p_conversion': (4, 1)}
    if vocab_sizes:
        assert model.get_layer('site_embedding').output_dim == 5
