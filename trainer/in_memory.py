"""Training batches from columns held in memory: a new seeded order every epoch.

The Trainer's option `model.in_memory_max_rows` (default: stream the files): the split is parsed
once, then every epoch shuffles all row indices and gathers each batch, where the streaming input
shuffles within a 10,000-record buffer. The benchmarks train from it (bench/quality.py), and the
in-memory ceiling of `make bench` is it without the read. Imports only TensorFlow (the
benchmark's DeepCTR venv uses it too).
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
