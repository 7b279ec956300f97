"""Training batches from columns held in memory: a new seeded order every epoch.

Parsing tf.Examples costs about as much CPU per example as a training step of the default model,
so on a CPU machine a streaming input slows training down. When the transformed train split fits
in memory, the Trainer parses it once and then shuffles row indices and gathers each batch (both
inputs against the in-memory ceiling: bench/results/speed.md, `make bench`). Imports only
TensorFlow (the benchmark's DeepCTR venv uses it too).
"""

from typing import Dict

import numpy as np
import tensorflow as tf


def epoch_batches(columns: Dict[str, np.ndarray], batch_size: int, seed: int) -> tf.data.Dataset:
    """One epoch of dict batches, in a new seeded order each epoch (repeat() for more): a shuffle
    of row indices, then a gather."""
    tensors = {name: tf.constant(values) for name, values in columns.items()}
    rows = len(next(iter(columns.values())))
    return (tf.data.Dataset.range(rows)
            .shuffle(rows, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(lambda index: {name: tf.gather(t, index) for name, t in tensors.items()},
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
