"""Tests of bench/mmoe_paper.py: the MMoE paper's synthetic data generator and its three models."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from bench import mmoe_paper
from trainer import blocks, mmoe


@pytest.mark.parametrize('correlation', [0.5, 0.9, 1.0, -0.3])
def test_generator_has_the_requested_task_correlation(correlation):
    """w1, w2 have norm c and Pearson correlation (and cosine) p; the labels' linear parts
    w_i^T x, x ~ N(0, I), are correlated by p too, up to sampling error."""
    settings = dataclasses.replace(mmoe_paper.Settings(), scale=2.0)
    rng = np.random.default_rng(3)
    w1, w2 = mmoe_paper.task_directions(settings.dim, correlation, settings.scale, rng)
    np.testing.assert_allclose([np.linalg.norm(w1), np.linalg.norm(w2)], 2.0, rtol=1e-9)
    assert np.corrcoef(w1, w2)[0, 1] == pytest.approx(correlation, abs=1e-9)
    assert w1 @ w2 / 4.0 == pytest.approx(correlation, abs=1e-9)

    x = rng.normal(size=(20_000, settings.dim))
    linear = x @ np.column_stack([w1, w2])
    assert np.corrcoef(linear.T)[0, 1] == pytest.approx(correlation, abs=0.02)
    # The labels are the linear parts plus their sines and a little noise.
    y = mmoe_paper.labels(x, (w1, w2), dataclasses.replace(settings, noise_std=0.0), rng)
    expected = linear[:, 0] + np.sin(np.outer(linear[:, 0], settings.alphas)
                                     + settings.betas).sum(axis=1)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-9)


def test_generated_splits_are_seeded_and_sized():
    settings = dataclasses.replace(mmoe_paper.Settings(), train_rows=50, validation_rows=10,
                                   test_rows=20, dim=6)
    (train, validation, test), directions = mmoe_paper.generate(0.9, settings, seed=1)
    assert train[0].shape == (50, 6) and train[1].shape == (50, 2)
    assert validation[1].shape == (10, 2) and test[1].shape == (20, 2)
    (again, _, _), _ = mmoe_paper.generate(0.9, settings, seed=1)
    np.testing.assert_array_equal(train[1], again[1])
    (other, _, _), _ = mmoe_paper.generate(0.9, settings, seed=2)
    assert not np.allclose(train[1], other[1])
    with pytest.raises(ValueError, match='correlation'):
        mmoe_paper.task_directions(6, 1.5, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize('architecture', mmoe_paper.ARCHITECTURES)
def test_models_build_from_project_layers_and_train(architecture):
    """Each model maps x to two unbounded regression outputs through the project's layers
    (one gate for OMoE, two for MMoE); a few epochs on tiny data lower its test MSE."""
    settings = dataclasses.replace(mmoe_paper.Settings(), dim=8, train_rows=256,
                                   validation_rows=64, test_rows=128,
                                   experts=3, expert_units=8, tower_units=4,
                                   learning_rate=0.01, batch_size=64)
    splits, _ = mmoe_paper.generate(0.5, settings, seed=0)
    model = mmoe_paper.build_model(architecture, settings)
    towers = [model.get_layer(task) for task in mmoe_paper.TASKS]
    assert all(isinstance(t, blocks.Tower) and t.activation is None for t in towers)
    if architecture == 'shared_bottom':
        assert isinstance(model.get_layer('shared_bottom'), blocks.MLP)
    else:
        moe = model.get_layer(architecture)
        assert isinstance(moe, mmoe.MixtureOfExperts)
        assert len(moe.gates) == {'omoe': 1, 'mmoe': 2}[architecture]
    outputs = model(splits[-1][0])
    assert {name: value.shape for name, value in outputs.items()} == {
        task: (128, 1) for task in mmoe_paper.TASKS}

    untrained = mmoe_paper.train_and_test(architecture, splits, settings, seed=0, epochs=0)
    trained = mmoe_paper.train_and_test(architecture, splits, settings, seed=0, epochs=5)
    assert trained < 0.9 * untrained


def test_markdown_states_whether_the_finding_is_reproduced():
    results = {(p, a): values for p, gains in ((0.5, 1.0), (1.0, 0.1))
               for a, values in (('shared_bottom', [2.0 + gains, 2.1 + gains]),
                                 ('omoe', [2.0, 2.1]), ('mmoe', [2.0, 2.1]),
                                 ('label_variance', [6.0, 6.0]))}
    table = mmoe_paper.markdown(results, [0.5, 1.0], seeds=2)
    assert ('| 0.5 | 6.000 ± 0.000 | 3.050 ± 0.071 | 2.050 ± 0.071 | 2.050 ± 0.071 '
            '| 1.000 ± 0.000 |') in table
    assert 'reproduced' in table and 'NOT' not in table
    results[0.5, 'shared_bottom'] = [2.0, 2.1]
    assert 'NOT reproduced' in mmoe_paper.markdown(results, [0.5, 1.0], seeds=2)


def test_regression_tower_is_unbounded_and_keeps_its_activation_in_config():
    """Tower(activation=None) is linear at the head (values outside [0, 1]); the default stays
    the sigmoid of the funnel models."""
    tower = blocks.Tower([4], activation=None, name='y')
    tower(tf.zeros((1, 3)))
    tower.head.bias.assign([5.0])
    np.testing.assert_allclose(tower(tf.zeros((2, 3))).numpy(), 5.0)
    assert blocks.Tower.from_config(tower.get_config()).activation is None
    assert blocks.Tower([4]).get_config()['activation'] == 'sigmoid'
