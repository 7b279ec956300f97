"""Warm start (trainer/warm_start.py): weights come from the blessed model where they fit,
embedding rows by id, and a model with other inputs starts fresh."""

import numpy as np
import tensorflow as tf
from conftest import EXPORTED_MODEL_CONFIG, SPEC

from trainer import warm_start
from trainer.model import build_model
from trainer.train import model_inputs


def _fresh_model(transform_run, seed, dense=None):
    vocab_sizes, all_dense = model_inputs(transform_run.tft_output, SPEC)
    tf.keras.utils.set_random_seed(seed)
    return build_model(EXPORTED_MODEL_CONFIG, vocab_sizes, all_dense if dense is None else dense)


def test_row_map_follows_ids_and_oov_buckets():
    old, new = [b'a', b'b', b'c'], [b'c', b'new', b'a']
    # 3 + 2 OOV rows before, 3 + 3 after: the two old buckets keep their rows, the third is new.
    rows = warm_start._row_map(old, new, old_rows=5, new_rows=6)
    assert rows.tolist() == [2, -1, 0, 3, 4, -1]


def test_every_weight_comes_from_the_blessed_model(transform_run, exported_model_dir):
    model = _fresh_model(transform_run, seed=7)
    base = tf.keras.models.load_model(exported_model_dir, compile=False)
    before = {w.name: w.numpy() for w in model.weights}
    counts = warm_start.from_base_model(model, exported_model_dir, transform_run.tft_output)
    assert counts['remapped'] == len(SPEC.categorical_names) and counts['fresh'] == 0
    assert counts['copied'] > 0
    base_weights = {w.name: w.numpy() for w in base.weights}
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), base_weights[weight.name])
        assert not np.array_equal(before[weight.name], weight.numpy()) or np.all(
            before[weight.name] == 0)  # a different seed: only zero-initialised biases agree


def test_other_inputs_start_fresh(transform_run, exported_model_dir):
    model = _fresh_model(transform_run, seed=7, dense=['price'])  # a changed feature spec
    before = [w.numpy() for w in model.weights]
    counts = warm_start.from_base_model(model, exported_model_dir, transform_run.tft_output)
    assert counts == {'copied': 0, 'remapped': 0, 'fresh': 0}
    for old, weight in zip(before, model.weights):
        np.testing.assert_array_equal(old, weight.numpy())


def test_no_blessed_model_is_a_fresh_start(transform_run):
    assert warm_start.from_base_model(_fresh_model(transform_run, 0), None,
                                      transform_run.tft_output)['copied'] == 0
