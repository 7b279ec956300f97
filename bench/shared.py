"""What both venvs of the benchmark share (it imports only numpy and TensorFlow): the arrays,
the input pipeline and the throughput measurement.

Both systems train on the same in-memory arrays, batched and reshuffled every epoch the same
way (trainer/in_memory.py, the Trainer's in-memory option), and are timed the same way, so that
examples/s compares the models, not two input pipelines.
"""

import time
from typing import Dict

import numpy as np
import tensorflow as tf

WARMUP_STEPS = 20  # the first steps trace the training graph: not part of the throughput


def load(data_dir: str, split: str) -> Dict[str, np.ndarray]:
    """The `split` ('train', 'validation', 'test' or 'truth') columns of a data set made by
    bench/data.py."""
    arrays = np.load(f'{data_dir}/transformed.npz')
    prefix = split + '_'
    return {name[len(prefix):]: arrays[name] for name in arrays.files if name.startswith(prefix)}


class Throughput(tf.keras.callbacks.Callback):
    """Training examples/s from the end of step WARMUP_STEPS to the end of fit (each batch
    counted as full: the last, partial one of an epoch is a rounding error)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size, self.steps, self.start = batch_size, 0, None
        self.examples_per_s = float('nan')

    def on_train_begin(self, logs=None):
        # Tiny runs (tests) have fewer steps: then time their second half.
        self.warmup = min(WARMUP_STEPS, self.params['steps'] * self.params['epochs'] // 2)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        if self.start is not None and self.steps > self.warmup:
            self.examples_per_s = ((self.steps - self.warmup) * self.batch_size
                                   / (time.perf_counter() - self.start))


def fit(model: tf.keras.Model, batches: tf.data.Dataset, epochs: int, batch_size: int) -> float:
    """Trains `model` for `epochs`; returns its training examples/s."""
    throughput = Throughput(batch_size)
    model.fit(batches, epochs=epochs, verbose=0, callbacks=[throughput])
    return throughput.examples_per_s


def predict(model: tf.keras.Model, test: Dict[str, np.ndarray]):
    """The model's predictions on the held-out columns it takes as inputs."""
    return model.predict({name: test[name] for name in model.input_names}, batch_size=8192,
                         verbose=0)
