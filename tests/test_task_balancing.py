"""Tests of GradNorm task weighting (trainer/task_weighting.py) and the training schedules
(trainer/schedules.py): what each changes in a training step, checked on the weights it moves."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_DENSE_FEATURES, TINY_VOCAB_SIZES

from trainer import features, losses, schedules, task_weighting
from trainer.labels import labels_for_loss
from trainer.model import build_model

BATCH = 32


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    click = (rng.random(BATCH) < 0.4).astype(np.float32)
    conversion = click * (rng.random(BATCH) < 0.5).astype(np.float32)
    return {features.CLICK_LABEL: click, features.CONVERSION_LABEL: conversion}


def _model(tiny_config, optimizer, **changes):
    config = dataclasses.replace(tiny_config, **changes)
    config.validate()
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, TINY_VOCAB_SIZES, TINY_DENSE_FEATURES)
    loss, loss_weights = losses.funnel_loss(config)
    model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, run_eagerly=True)
    return model


def _batch(inputs, labels):
    return tf.data.Dataset.from_tensors((inputs, *labels_for_loss(labels)))


def _values(layer):
    return [v.numpy().copy() for v in layer.trainable_variables]


def _changed(before, layer):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, layer.trainable_variables))


# --- GradNorm --------------------------------------------------------------------------------

def test_gradnorm_first_step_follows_the_gradient_norms(tiny_config, random_inputs):
    """At the first step every loss ratio is 1, so each target is the mean gradient norm and
    d L_grad / d w_i = sign(G_i - mean G) * ||dL_i/dW||: with plain SGD the weight of the task
    with the larger gradient norm on the shared layer falls, the other rises, then both are
    renormalised to sum to 2. W is the last Dense layer of each MMoE expert."""
    learning_rate = 0.01
    model = _model(tiny_config, tf.keras.optimizers.SGD(learning_rate), task_weighting='gradnorm')
    assert isinstance(model, task_weighting.GradNormModel)
    shared = model.shared_variables()
    experts = model.get_layer('mmoe').experts
    assert [v.name for v in shared] == [v.name for e in experts
                                        for v in e.blocks[-1].trainable_variables]

    inputs, labels = random_inputs(batch=BATCH, seed=1), _labels()
    initial_losses, norms = [], []
    for output, label in ((features.P_CLICK, 'click'), (features.P_CONVERSION, 'conversion')):
        with tf.GradientTape() as tape:
            p = model(inputs, training=True)[output]
            task_loss = tf.reduce_mean(tf.keras.losses.binary_crossentropy(
                tf.reshape(labels[label], (-1, 1)), p))
        initial_losses.append(float(task_loss))
        norms.append(float(tf.linalg.global_norm(tape.gradient(task_loss, shared))))
    norms = np.array(norms)
    assert abs(norms[0] - norms[1]) > 1e-3

    model.fit(_batch(inputs, labels), verbose=0)
    step = 1.0 - learning_rate * np.sign(norms - norms.mean()) * norms
    expected = 2 * step / step.sum()
    found = model.task_weights()
    np.testing.assert_allclose([found[features.P_CLICK], found[features.P_CONVERSION]],
                               expected, rtol=1e-4)
    np.testing.assert_allclose(model.initial_losses.numpy(), initial_losses, rtol=1e-5)


@pytest.mark.parametrize('architecture', ['shared_bottom', 'ple', 'cross_stitch', 'aitm'])
def test_gradnorm_weights_stay_positive_and_sum_to_the_number_of_tasks(
        tiny_config, random_inputs, architecture):
    """With a learning rate that would drive a weight below zero, the weights are clipped and
    renormalised: after every step they are positive and sum to 2; they do move."""
    model = _model(tiny_config, tf.keras.optimizers.SGD(5.0), architecture=architecture,
                   task_weighting='gradnorm', gradnorm_alpha=1.5)
    inputs = random_inputs(batch=BATCH, seed=2)
    history = []
    for step in range(4):
        model.fit(_batch(inputs, _labels(seed=step)), verbose=0)
        weights = np.array(list(model.task_weights().values()))
        history.append(weights)
        assert (weights >= task_weighting.GradNormModel.MIN_WEIGHT * 0.5).all(), weights
        assert weights.sum() == pytest.approx(2.0, abs=1e-5)
    assert any(abs(w[0] - 1.0) > 1e-2 for w in history)


# --- Schedules -------------------------------------------------------------------------------

def _towers_changed_per_step(model, inputs, steps):
    """For each training step, whether the click and the cvr tower's weights moved."""
    moved = []
    for step in range(steps):
        click, cvr = model.get_layer(features.P_CLICK), model.get_layer(features.P_CVR)
        before = (_values(click), _values(cvr))
        model.fit(_batch(inputs, _labels(seed=step)), verbose=0)
        moved.append((_changed(before[0], click), _changed(before[1], cvr)))
    return moved


@pytest.mark.parametrize('schedule, expected', [
    ('joint', [(True, True)] * 4),
    ('alternating', [(True, False), (False, True), (True, False), (False, True)]),
    ('curriculum', [(True, False), (True, False), (True, False), (True, True)]),
])
def test_schedule_decides_which_loss_updates_which_tower(tiny_config, random_inputs, schedule,
                                                          expected):
    """With the naive loss (the click tower learns from the click loss only, the cvr tower
    from the conversion loss only) and plain SGD (a weight moves iff its gradient is non-zero):
    joint moves both towers every step; alternating the click tower on even steps and the cvr
    tower on odd ones; the curriculum (2 click-only steps, a ramp of 2) starts the cvr tower
    at step 3, when the conversion loss's weight is 0.5."""
    model = _model(tiny_config, tf.keras.optimizers.SGD(0.1), architecture='shared_bottom',
                   loss='naive', schedule=schedule, curriculum_click_steps=2,
                   curriculum_ramp_steps=2)
    assert isinstance(model, schedules.ScheduledModel) == (schedule != 'joint')
    assert _towers_changed_per_step(model, random_inputs(batch=BATCH, seed=3), 4) == expected


def test_schedule_multipliers():
    inputs = tf.keras.Input(shape=(1,))
    outputs = {'a': tf.keras.layers.Dense(1, name='a')(inputs),
               'b': tf.keras.layers.Dense(1, name='b')(inputs)}

    def multipliers(schedule, step):
        model = schedules.ScheduledModel(inputs, outputs, ('a', 'b'), schedule, click_steps=10,
                                         ramp_steps=4)
        return {k: float(v) for k, v in model.multipliers(step).items()}

    assert multipliers('alternating', 6) == {'a': 1.0, 'b': 0.0}
    assert multipliers('alternating', 7) == {'a': 0.0, 'b': 1.0}
    assert [multipliers('curriculum', s)['b'] for s in (0, 10, 11, 13, 14, 100)] == [
        0.0, 0.0, 0.25, 0.75, 1.0, 1.0]
    with pytest.raises(ValueError, match='joint'):
        schedules.ScheduledModel(inputs, outputs, ('a', 'b'), 'joint', 1, 1)


def test_evaluation_ignores_the_schedule(tiny_config, random_inputs):
    """evaluate (and so early stopping's val_loss) is the joint loss whatever the step: the
    weighted BCEs of both tasks even while training is on the click loss alone."""
    model = _model(tiny_config, tf.keras.optimizers.SGD(0.1), schedule='curriculum',
                   curriculum_click_steps=100)
    inputs, labels = random_inputs(batch=BATCH, seed=4), _labels()
    model.fit(_batch(inputs, labels), verbose=0)
    result = model.evaluate(_batch(inputs, labels), verbose=0, return_dict=True)
    outputs = model(inputs, training=False)
    bce = {output: float(tf.reduce_mean(tf.keras.losses.binary_crossentropy(
        tf.reshape(labels[label], (-1, 1)), outputs[output])))
        for output, label in ((features.P_CLICK, 'click'), (features.P_CONVERSION, 'conversion'))}
    expected = (tiny_config.click_loss_weight * bce[features.P_CLICK]
                + tiny_config.conversion_loss_weight * bce[features.P_CONVERSION])
    assert result['loss'] == pytest.approx(expected, rel=1e-5)


def test_default_model_is_a_plain_keras_model(tiny_model):
    """mmoe + esmm + static + joint builds the same plain functional model as before."""
    assert type(tiny_model).__name__ == 'Functional'
    assert not isinstance(tiny_model, task_weighting.FunnelModel)
