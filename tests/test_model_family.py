"""Tests of the model family (trainer/model.py and one module per architecture), the funnel
losses (trainer/losses.py) and task weighting (trainer/task_weighting.py): every architecture x
loss on tiny sizes and random data."""

import dataclasses
import itertools
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import SPEC, TINY_DENSE_FEATURES, TINY_VOCAB_SIZES

from pipeline.config import load_config
from trainer import (
    aitm,
    blocks,
    cross_stitch,
    features,
    funnel_outputs,
    losses,
    mmoe,
    ple,
    task_weighting,
)
from trainer.config import ARCHITECTURES, LOSSES, ConfigError, ModelConfig
from trainer.labels import labels_for_loss
from trainer.model import build_model

BATCH = 32


@pytest.fixture
def family_config(tiny_config):
    """Factory: the tiny config with the given architecture, loss and task weighting."""
    def make(architecture='mmoe', loss='esmm', task_weighting='static', **changes):
        return dataclasses.replace(tiny_config, architecture=architecture, loss=loss,
                                   task_weighting=task_weighting, ple_levels=2,
                                   experts_per_task=1, shared_experts=2, embedding_l2=0.0,
                                   **changes)
    return make


def _build(config):
    """The model on the fake vocabularies, with the simulator spec's user / item marks."""
    tf.keras.utils.set_random_seed(0)
    return build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES,
                       input_entities=SPEC.input_entities)


def _labels(batch=BATCH, seed=0):
    """Funnel labels as [batch] float32: conversions only on clicks."""
    rng = np.random.default_rng(seed)
    click = (rng.random(batch) < 0.4).astype(np.float32)
    conversion = click * (rng.random(batch) < 0.5).astype(np.float32)
    assert 0 < conversion.sum() < click.sum() < batch
    return {features.CLICK_LABEL: click, features.CONVERSION_LABEL: conversion}


def _dataset(inputs, labels):
    """One batch of (features, labels, sample weights), as trainer/train.py's input_fn yields."""
    return tf.data.Dataset.from_tensors((inputs, *labels_for_loss(labels)))


def _compile(model, config, learning_rate=1e-3, run_eagerly=True):
    """Compiles with the configured loss; eagerly by default, which is much faster for the
    few steps of these tests than tracing the train and test functions."""
    loss, loss_weights = losses.funnel_loss(config)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=loss,
                  loss_weights=loss_weights, run_eagerly=run_eagerly)
    return model


def _predict(model, inputs):
    return {name: value.numpy() for name, value in model(inputs, training=False).items()}


def _bce(labels, probabilities):
    p = probabilities.astype(np.float64).reshape(-1)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


VALID_PAIRS = [(architecture, loss)
               for architecture, loss in itertools.product(ARCHITECTURES, LOSSES)
               if not (architecture == 'aitm' and loss == 'naive')]


@pytest.mark.parametrize('architecture, loss', VALID_PAIRS)
def test_outputs_are_named_funnel_probabilities(family_config, random_inputs, architecture,
                                                loss):
    """Every architecture x loss: the same named inputs and outputs, [batch, 1] probabilities.
    With a product (esmm, naive) p_conversion = p_click * p_cvr <= p_click on every row; with
    two direct towers (monotonic, AITM) nothing guarantees that, and p_cvr is the clipped
    ratio."""
    model = _build(family_config(architecture, loss))
    outputs = _predict(model, random_inputs(batch=BATCH, seed=1))
    assert set(model.input_names) == set(TINY_VOCAB_SIZES) | set(TINY_DENSE_FEATURES)
    assert set(outputs) == set(features.OUTPUTS)
    for name, value in outputs.items():
        assert value.shape == (BATCH, 1), name
        assert ((value >= 0) & (value <= 1)).all(), name
    p_click, p_cvr, p_conversion = (outputs[name] for name in (
        features.P_CLICK, features.P_CVR, features.P_CONVERSION))
    if loss == 'monotonic' or architecture == 'aitm':
        assert np.ptp(p_click) > 0 and np.ptp(p_conversion) > 0
        np.testing.assert_allclose(p_cvr, np.clip(p_conversion / p_click, 0, 1), rtol=1e-5)
    else:
        assert np.ptp(p_click) > 0 and np.ptp(p_cvr) > 0
        np.testing.assert_allclose(p_conversion, p_click * p_cvr, rtol=1e-6)
        assert (p_conversion <= p_click).all()


@pytest.mark.parametrize('architecture, loss, task_weighting, schedule', [
    ('mmoe', 'esmm', 'static', 'joint'), ('shared_bottom', 'naive', 'static', 'joint'),
    ('ple', 'monotonic', 'uncertainty', 'joint'), ('single_task', 'naive', 'uncertainty', 'joint'),
    ('aitm', 'esmm', 'static', 'joint'), ('cross_stitch', 'naive', 'static', 'alternating'),
    ('aitm', 'monotonic', 'gradnorm', 'joint'), ('mmoe', 'esmm', 'static', 'curriculum')])
def test_trained_model_reloads_with_same_predictions(tmp_path, family_config, random_inputs,
                                                     architecture, loss, task_weighting,
                                                     schedule):
    """After a few training steps, model.save(save_format='tf') + load_model revive the model
    (its class and custom layers, the learnt task weights) with the same predictions."""
    config = family_config(architecture, loss, task_weighting, schedule=schedule,
                           curriculum_click_steps=1, curriculum_ramp_steps=1)
    model = _compile(_build(config), config, learning_rate=0.05)
    inputs = random_inputs(batch=BATCH, seed=2)
    model.fit(_dataset(inputs, _labels()), epochs=3, verbose=0)
    before = _predict(model, inputs)
    model.save(str(tmp_path / 'model'), save_format='tf')
    loaded = tf.keras.models.load_model(str(tmp_path / 'model'))
    assert type(loaded) is type(model)
    after = _predict(loaded, inputs)
    for name in features.OUTPUTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-7)
    if task_weighting != 'static':
        assert loaded.task_weights() == pytest.approx(model.task_weights())
        assert loaded.task_weights() != pytest.approx({name: 1.0 for name in loaded.task_outputs})
    if schedule != 'joint':
        assert (loaded.schedule, loaded.task_outputs) == (schedule, model.task_outputs)


def test_monotonicity_penalty_is_zero_only_when_the_funnel_order_holds():
    """weight * mean(relu(p_conversion - p_click)): zero when p_conversion <= p_click on every
    row, positive otherwise; p_conversion passes through unchanged."""
    penalty = losses.MonotonicityPenalty(weight=3.0)
    p_click = tf.constant([[0.5], [0.4], [0.2]])
    ordered = tf.constant([[0.1], [0.4], [0.0]])
    np.testing.assert_array_equal(penalty([p_click, ordered]), ordered)
    assert float(tf.add_n(penalty.losses)) == 0.0
    penalty([p_click, tf.constant([[0.6], [0.1], [0.5]])])
    assert float(tf.add_n(penalty.losses)) == pytest.approx(3.0 * (0.1 + 0.3) / 3)


def test_monotonic_loss_adds_the_penalty(family_config, random_inputs):
    """With loss 'monotonic', the compiled loss is the two BCEs plus the model's penalty, which
    is positive for an untrained model (its p_conversion exceeds p_click on some rows)."""
    config = family_config('mmoe', 'monotonic', monotonic_penalty_weight=5.0)
    model = _compile(_build(config), config)
    inputs, labels = random_inputs(batch=BATCH, seed=3), _labels()
    result = model.evaluate(_dataset(inputs, labels), verbose=0, return_dict=True)
    outputs = _predict(model, inputs)
    excess = outputs[features.P_CONVERSION] - outputs[features.P_CLICK]
    assert (excess > 0).any()
    expected = (config.click_loss_weight * _bce(labels['click'], outputs[features.P_CLICK])
                + config.conversion_loss_weight * _bce(labels['conversion'],
                                                       outputs[features.P_CONVERSION])
                + 5.0 * np.maximum(excess, 0).mean())
    assert result['loss'] == pytest.approx(expected, abs=1e-5)


def test_naive_loss_ignores_conversions_of_unclicked_rows(family_config, random_inputs):
    """The naive loss trains p_cvr on clicked rows only: a non-clicked row's conversion label
    does not change the loss, a clicked row's does."""
    config = family_config('mmoe', 'naive')
    model = _compile(_build(config), config)
    inputs, labels = random_inputs(batch=BATCH, seed=4), _labels()

    def loss_with(conversion):
        data = _dataset(inputs, {**labels, 'conversion': conversion})
        return model.evaluate(data, verbose=0, return_dict=True)['loss']

    clicked = labels['click'] == 1
    unclicked_converted = np.where(clicked, labels['conversion'], 1.0).astype(np.float32)
    clicked_flipped = np.where(clicked, 1 - labels['conversion'], 0.0).astype(np.float32)
    assert loss_with(unclicked_converted) == pytest.approx(loss_with(labels['conversion']),
                                                           abs=1e-6)
    assert loss_with(clicked_flipped) != pytest.approx(loss_with(labels['conversion']),
                                                       abs=1e-3)


def test_uncertainty_weights_are_learnt(family_config, random_inputs, caplog):
    """Uncertainty weighting: one trainable log-variance s_i per task output, 0 at first, moved
    by training; loss = sum_i exp(-s_i) * L_i + s_i; fit logs the learnt weights exp(-s_i)."""
    config = family_config('ple', 'esmm', 'uncertainty')
    model = _compile(_build(config), config, learning_rate=0.05, run_eagerly=False)  # as in fit
    assert isinstance(model, task_weighting.UncertaintyWeightedModel)
    log_variances = list(model.log_variances.values())
    assert len(log_variances) == 2 and all(v.trainable for v in log_variances)
    assert {id(v) for v in log_variances} <= {id(v) for v in model.trainable_variables}
    assert model.task_weights() == {features.P_CLICK: 1.0, features.P_CONVERSION: 1.0}

    inputs, labels = random_inputs(batch=BATCH, seed=5), _labels()
    with caplog.at_level(logging.INFO):
        model.fit(_dataset(inputs, labels), epochs=3, verbose=0)
    assert all(abs(float(v)) > 1e-3 for v in log_variances)
    assert 'Learnt task weights' in caplog.text and features.P_CONVERSION in caplog.text

    result = model.evaluate(_dataset(inputs, labels), verbose=0, return_dict=True)
    outputs = _predict(model, inputs)
    task_losses = {features.P_CLICK: _bce(labels['click'], outputs[features.P_CLICK]),
                   features.P_CONVERSION: _bce(labels['conversion'],
                                               outputs[features.P_CONVERSION])}
    expected = sum(np.exp(-float(model.log_variances[name])) * task_loss
                   + float(model.log_variances[name]) for name, task_loss in task_losses.items())
    assert result['loss'] == pytest.approx(expected, abs=1e-5)


def _train_with_and_without_mirroring(task_weighting: str) -> dict:
    """The same shared-bottom + naive model with learnt task weights (and embedding L2) trained
    for a few steps on one device and under MirroredStrategy on two logical CPUs; how far apart
    they end."""
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    config = ModelConfig(architecture='shared_bottom', loss='naive', task_weighting=task_weighting,
                         expert_units=(8, 4), tower_units=(4,), max_embedding_dim=4,
                         dense_projection_dim=4, embedding_l2=1e-3)
    rng = np.random.default_rng(9)
    inputs = {name: rng.integers(0, size, BATCH) for name, size in TINY_VOCAB_SIZES.items()}
    inputs.update({name: rng.normal(size=BATCH).astype(np.float32)
                   for name in TINY_DENSE_FEATURES})
    models = {}
    for name, strategy in (('default', tf.distribute.get_strategy()),
                           ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))):
        with strategy.scope():
            models[name] = _compile(_build(config), config, learning_rate=0.05,
                                    run_eagerly=False)
        models[name].fit(_dataset(inputs, _labels()).repeat(3), verbose=0)
    default, mirrored = models['default'], models['mirrored']
    return {'replicas': mirrored.distribute_strategy.num_replicas_in_sync,
            'task_weights': [default.task_weights(), mirrored.task_weights()],
            'max_weight_difference': max(float(np.abs(a - b).max()) for a, b in zip(
                default.get_weights(), mirrored.get_weights()))}


@pytest.mark.parametrize('task_weighting', ['uncertainty', 'gradnorm'])
def test_learnt_task_weights_under_mirrored_strategy(task_weighting):
    """Two replicas train exactly as one device: the per-replica losses (task losses weighted by
    the learnt weights, the naive loss's sample weights, the log-variance and L2 terms) are
    scaled so that their all-reduced gradient is the single-device one; GradNorm's gradient
    norms, loss ratios and weight update are those of the global batch. Runs in a fresh process,
    since logical devices must be set before TensorFlow starts (see
    test_distributed_training.py)."""
    result = subprocess.run([sys.executable, __file__, task_weighting], capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, 'TF_USE_LEGACY_KERAS': '1'})
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found['replicas'] == 2
    default, mirrored = found['task_weights']
    assert default == pytest.approx(mirrored, abs=1e-5) and default[features.P_CVR] != 1.0
    assert found['max_weight_difference'] < 1e-5
    if task_weighting == 'gradnorm':
        assert sum(mirrored.values()) == pytest.approx(2.0, abs=1e-5)


def _gradients(model, inputs, output):
    """Variable name -> gradient of sum(output) (None where the output does not depend on it)."""
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(model(inputs, training=True)[output])
    variables = model.trainable_variables
    return dict(zip((v.name for v in variables), tape.gradient(value, variables)))


def _reaches(gradients, layer):
    return any(gradients[v.name] is not None and np.abs(gradients[v.name].numpy()).sum() > 0
               for v in layer.trainable_variables)


def test_ple_gates_and_task_specific_experts(family_config, random_inputs):
    """PLE: every gate gives softmax weights over its experts; at the last level a task's own
    experts and gate are trained by that task alone, while below it the shared gate lets every
    expert reach both tasks."""
    model = _build(family_config('ple', 'esmm'))
    first, last = model.get_layer('ple').levels
    inputs = random_inputs(batch=BATCH, seed=7)
    x = tf.keras.Model(model.inputs, model.get_layer('input_features').output)(inputs)
    level_inputs = [x] * 3  # click, cvr, shared
    # Task gates: own expert + 2 shared; the shared gate (not at the last level): all 4.
    for level, experts in ((first, [3, 3, 4]), (last, [3, 3])):
        gates = level.gate_weights(level_inputs)
        assert [weights.shape for weights in gates] == [(BATCH, n) for n in experts]
        for weights in gates:
            assert (weights.numpy() >= 0).all()
            np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, rtol=1e-6)
        level_inputs = level(level_inputs)

    for task, (own, other) in enumerate([(features.P_CLICK, features.P_CVR),
                                         (features.P_CVR, features.P_CLICK)]):
        gradients = _gradients(model, inputs, own)
        for layer in last.task_expert_layers[task] + [last.task_gates[task]]:
            assert _reaches(gradients, layer), (own, layer.name)
        for layer in last.task_expert_layers[1 - task] + [last.task_gates[1 - task]]:
            assert not _reaches(gradients, layer), (own, layer.name)
        assert not _reaches(gradients, model.get_layer(other))
        for layer in first.task_expert_layers[1 - task]:
            assert _reaches(gradients, layer), (own, layer.name)


def test_single_task_networks_share_nothing(family_config, random_inputs):
    """single_task: each task has its own embeddings and bottom; p_click depends on no
    parameter of the cvr network and p_cvr on none of the click network."""
    model = _build(family_config('single_task', 'naive'))
    for name in TINY_VOCAB_SIZES:
        assert model.get_layer(f'click_{name}_embedding') is not model.get_layer(
            f'cvr_{name}_embedding')
    inputs = random_inputs(batch=BATCH, seed=8)
    for own, other in (('click', 'cvr'), ('cvr', 'click')):
        gradients = _gradients(model, inputs, f'p_{own}')
        other_variables = [v.name for v in model.trainable_variables if v.name.startswith(other)]
        assert other_variables and all(gradients[name] is None for name in other_variables)
        assert all(gradients[v.name] is not None for v in model.trainable_variables
                   if v.name.startswith(own))


@pytest.mark.parametrize('cls, kwargs', [
    (blocks.Gate, {'num_experts': 4, 'temperature': 0.5}),
    (ple.ExtractionLevel, {'num_tasks': 2, 'experts_per_task': 1, 'shared_experts': 2,
                              'expert_units': [8, 4], 'gate_temperature': 0.7, 'dropout': 0.1,
                              'shared_output': True}),
    (ple.ProgressiveLayeredExtraction, {'num_levels': 2, 'num_tasks': 2,
                                           'experts_per_task': 1, 'shared_experts': 2,
                                           'expert_units': [8]}),
    (funnel_outputs.ConditionalRate, {}),
    (losses.MonotonicityPenalty, {'weight': 2.0}),
    (cross_stitch.CrossStitchUnit, {'num_tasks': 3}),
    (cross_stitch.CrossStitchNetwork, {'num_tasks': 2, 'units': [8, 4], 'dropout': 0.1}),
    (aitm.InformationTransfer, {'units': 4}),
    (aitm.AITM, {'num_tasks': 3, 'units': [8, 4], 'dropout': 0.1}),
    (mmoe.MixtureOfExperts, {'num_experts': 2, 'expert_units': [8], 'num_tasks': 2,
                               'entities': ['user', 'item'], 'entity_experts': 3}),
], ids=lambda value: getattr(value, '__name__', ''))
def test_new_layers_config_round_trip(cls, kwargs):
    """The new layers rebuild from their config (needed to reload a saved model)."""
    layer = cls(**kwargs, name='layer')
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_config_choices_are_validated():
    """The defaults are today's model (MMoE, ESMM, static weights); a wrong choice names the
    allowed values; the choices can be set from the environment."""
    default = ModelConfig()
    assert (default.architecture, default.loss, default.task_weighting) == (
        'mmoe', 'esmm', 'static')
    for field, value, allowed in (('architecture', 'moe', "'shared_bottom', 'ple'"),
                                  ('loss', 'bce', "'esmm', 'naive', 'monotonic'"),
                                  ('task_weighting', 'learnt', "'static', 'uncertainty'")):
        with pytest.raises(ConfigError, match=f'model.{field}') as error:
            dataclasses.replace(default, **{field: value}).validate()
        assert allowed in str(error.value)
    with pytest.raises(ConfigError, match='model.ple_levels'):
        dataclasses.replace(default, ple_levels=0).validate()
    config = load_config(env={'FUNNEL_MODEL_ARCHITECTURE': 'ple', 'FUNNEL_MODEL_LOSS': 'naive',
                              'FUNNEL_MODEL_TASK_WEIGHTING': 'uncertainty'}).model
    assert (config.architecture, config.loss, config.task_weighting) == (
        'ple', 'naive', 'uncertainty')


@pytest.mark.parametrize('changes, field, why', [
    ({'schedule': 'round_robin'}, 'schedule', "'joint', 'alternating', 'curriculum'"),
    ({'architecture': 'aitm', 'loss': 'naive'}, 'loss', 'AITM'),
    ({'architecture': 'single_task', 'task_weighting': 'gradnorm'}, 'task_weighting',
     'single_task'),
    ({'task_weighting': 'uncertainty', 'schedule': 'alternating'}, 'schedule', 'static'),
    ({'task_weighting': 'gradnorm', 'schedule': 'curriculum'}, 'schedule', 'static'),
    ({'curriculum_ramp_steps': 0}, 'curriculum_ramp_steps', '> 0'),
    ({'gradnorm_alpha': -1.0}, 'gradnorm_alpha', '>= 0'),
    ({'entity_experts': -1}, 'entity_experts', '>= 0'),
    ({'architecture': 'ple', 'entity_experts': 2}, 'entity_experts', "needs architecture 'mmoe'"),
])
def test_new_choices_are_validated(changes, field, why):
    """The new options' values and the combinations that cannot work are refused by name."""
    with pytest.raises(ConfigError, match=f'model.{field}') as error:
        dataclasses.replace(ModelConfig(), **changes).validate()
    assert why in str(error.value)


def test_new_choices_from_the_environment():
    config = load_config(env={'FUNNEL_MODEL_ARCHITECTURE': 'aitm',
                              'FUNNEL_MODEL_TASK_WEIGHTING': 'gradnorm',
                              'FUNNEL_MODEL_GRADNORM_ALPHA': '0.5'}).model
    assert (config.architecture, config.task_weighting, config.gradnorm_alpha) == (
        'aitm', 'gradnorm', 0.5)
    config = load_config(env={'FUNNEL_MODEL_ARCHITECTURE': 'cross_stitch',
                              'FUNNEL_MODEL_SCHEDULE': 'curriculum',
                              'FUNNEL_MODEL_CURRICULUM_CLICK_STEPS': '100'}).model
    assert (config.architecture, config.schedule, config.curriculum_click_steps) == (
        'cross_stitch', 'curriculum', 100)
    assert ModelConfig().schedule == 'joint'


def _representation(model, inputs):
    return tf.keras.Model(model.inputs, model.get_layer('input_features').output)(inputs)


def test_aitm_transfers_click_information_to_conversion(family_config, random_inputs):
    """AITM: p_conversion depends on the click tower (through the transfer and the attention),
    p_click on nothing of the conversion step; the attention weights over (transferred, own)
    are a softmax; p_conversion has its own tower and p_cvr is p_conversion / p_click."""
    model = _build(family_config('aitm', 'esmm'))
    aitm = model.get_layer('aitm')
    inputs = random_inputs(batch=BATCH, seed=10)
    x = _representation(model, inputs)
    click_representation = aitm.task_layers[0](x)
    weights = aitm.information_transfers[0].attention_weights(
        [aitm.transfers[0](click_representation), aitm.task_layers[1](x)]).numpy()
    assert weights.shape == (BATCH, 2) and (weights > 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert np.ptp(weights[:, 0]) > 0  # adaptive: the weights differ by row

    conversion_step = [aitm.task_layers[1], aitm.transfers[0], aitm.information_transfers[0],
                       model.get_layer('conversion_tower')]
    click_gradients = _gradients(model, inputs, features.P_CLICK)
    assert not any(_reaches(click_gradients, layer) for layer in conversion_step)
    conversion_gradients = _gradients(model, inputs, features.P_CONVERSION)
    assert _reaches(conversion_gradients, aitm.task_layers[0])
    assert all(_reaches(conversion_gradients, layer) for layer in conversion_step)
    assert not _reaches(conversion_gradients, model.get_layer(features.P_CLICK))


def test_aitm_calibrator_is_zero_only_when_the_funnel_order_holds(family_config, random_inputs):
    """AITM's calibrator weight * mean(max(p_conversion - p_click, 0)) is the model's loss term:
    it equals that expression on the model's own outputs, is zero when p_conversion <= p_click
    on every row and positive when not."""
    config = family_config('aitm', 'esmm', monotonic_penalty_weight=0.6)
    model = _build(config)
    calibrator = model.get_layer(features.P_CONVERSION)
    assert isinstance(calibrator, losses.MonotonicityPenalty) and calibrator.weight == 0.6
    inputs = random_inputs(batch=BATCH, seed=11)
    outputs = model(inputs, training=False)
    excess = (outputs[features.P_CONVERSION] - outputs[features.P_CLICK]).numpy()
    assert float(tf.add_n(model.losses)) == pytest.approx(
        0.6 * np.maximum(excess, 0).mean(), abs=1e-7)

    p_click = tf.constant([[0.5], [0.3]])
    calibrator([p_click, tf.constant([[0.2], [0.3]])])
    assert float(tf.add_n(calibrator.losses)) == 0.0
    calibrator([p_click, tf.constant([[0.7], [0.1]])])
    assert float(tf.add_n(calibrator.losses)) == pytest.approx(0.6 * 0.2 / 2)


def test_cross_stitch_units_are_what_the_columns_share(family_config, random_inputs):
    """Cross-stitch: the mixing matrices start at 0.9 / 0.1 and are trainable; through them
    p_click depends on the cvr column; with identity mixing it does not."""
    model = _build(family_config('cross_stitch', 'naive'))
    network = model.get_layer('cross_stitch')
    assert len(network.stitches) == 2  # after each of the two layers (8, 4)
    for stitch in network.stitches:
        np.testing.assert_allclose(stitch.alpha.numpy(), [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6)
        assert stitch.alpha.trainable
    inputs = random_inputs(batch=BATCH, seed=12)
    cvr_column = network.columns[1]
    gradients = _gradients(model, inputs, features.P_CLICK)
    assert all(_reaches(gradients, layer) for layer in cvr_column)
    assert _reaches(gradients, network.stitches[0])
    for stitch in network.stitches:
        stitch.alpha.assign(np.eye(2))
    gradients = _gradients(model, inputs, features.P_CLICK)
    assert not any(_reaches(gradients, layer) for layer in cvr_column)


USER_SIDE = {name for name, entity in SPEC.input_entities.items() if entity == 'user'}
ITEM_SIDE = {name for name, entity in SPEC.input_entities.items() if entity == 'item'}


def _perturbed(inputs, names):
    """A copy of `inputs` with every input of `names` changed on every row."""
    changed = dict(inputs)
    for name in names & set(inputs):
        if name in TINY_VOCAB_SIZES:
            changed[name] = (inputs[name] + 1) % TINY_VOCAB_SIZES[name]
        else:
            changed[name] = inputs[name] + 1.5
    return changed


def test_entity_experts_see_only_their_side(family_config, random_inputs):
    """Entity experts: the gates weight 2 shared + 1 user + 1 item expert; a user expert's
    output does not change when every item-side input changes and changes with the user-side
    ones, and the opposite for the item expert; a context input (device) reaches neither, but
    reaches the model's outputs through the shared experts."""
    model = _build(family_config('mmoe', 'esmm', num_experts=2, entity_experts=1))
    mmoe = model.get_layer('mmoe')
    assert mmoe.entities == ('user', 'item')
    assert [[e.name for e in side] for side in mmoe.entity_expert_layers] == [
        ['user_expert_0'], ['item_expert_0']]
    sides = tf.keras.Model(model.inputs, [model.get_layer(f'{entity}_features').output
                                          for entity in mmoe.entities])

    def expert_outputs(inputs):
        user, item = sides(inputs)
        return (mmoe.entity_expert_layers[0][0](user).numpy(),
                mmoe.entity_expert_layers[1][0](item).numpy())

    inputs = random_inputs(batch=BATCH, seed=13)
    x = tf.keras.Model(model.inputs, model.get_layer('input_features').output)(inputs)
    for weights in mmoe.gate_weights(x):
        assert weights.shape == (BATCH, 4)
        np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, rtol=1e-6)
    user, item = expert_outputs(inputs)
    assert np.ptp(user) > 0 and np.ptp(item) > 0
    new_items = expert_outputs(_perturbed(inputs, ITEM_SIDE))
    np.testing.assert_array_equal(new_items[0], user)
    assert np.abs(new_items[1] - item).max() > 1e-4
    new_users = expert_outputs(_perturbed(inputs, USER_SIDE))
    np.testing.assert_array_equal(new_users[1], item)
    assert np.abs(new_users[0] - user).max() > 1e-4
    new_context = _perturbed(inputs, {'device'})
    for before, after in zip((user, item), expert_outputs(new_context)):
        np.testing.assert_array_equal(after, before)
    assert np.abs(_predict(model, new_context)[features.P_CLICK]
                  - _predict(model, inputs)[features.P_CLICK]).max() > 1e-6


def test_entity_experts_train_with_gradnorm_and_reload(tmp_path, family_config, random_inputs):
    """The entity-expert MMoE under GradNorm: its shared weights are the last layers of all six
    experts (shared, user, item), the weights stay positive and sum to 2, and the trained model
    reloads with the same predictions and the same inputs and outputs."""
    config = family_config('mmoe', 'esmm', 'gradnorm', num_experts=2, entity_experts=2)
    model = _compile(_build(config), config, learning_rate=0.05)
    assert len(model.shared_variables()) == 2 * 6  # kernel and bias of each expert's last layer
    inputs = random_inputs(batch=BATCH, seed=14)
    model.fit(_dataset(inputs, _labels()), epochs=3, verbose=0)
    weights = model.task_weights()
    assert all(w > 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(2.0)
    before = _predict(model, inputs)
    model.save(str(tmp_path / 'model'), save_format='tf')
    loaded = tf.keras.models.load_model(str(tmp_path / 'model'))
    assert loaded.get_layer('mmoe').get_config()['entity_experts'] == 2
    assert set(loaded.input_names) == set(model.input_names)
    after = _predict(loaded, inputs)
    assert set(after) == set(features.OUTPUTS)
    for name in features.OUTPUTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-7)


def test_entity_experts_without_a_side_are_refused(family_config):
    """Entity experts with no item-side feature among the inputs: an error naming the side."""
    user_only = {name: 'user' for name in USER_SIDE}
    with pytest.raises(features.FeatureSpecError, match='no column is marked entity: item'):
        build_model(family_config('mmoe', 'esmm', entity_experts=1), TINY_VOCAB_SIZES,
                    TINY_DENSE_FEATURES, input_entities=user_only)


if __name__ == '__main__':
    print(json.dumps(_train_with_and_without_mirroring(sys.argv[1])))
