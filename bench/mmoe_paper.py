"""The synthetic experiment of the MMoE paper (Ma et al., KDD 2018, section 4), on this project's
layers: does MMoE's advantage over shared-bottom grow as the two tasks become less correlated?

Data (the paper's generation procedure): two orthogonal unit vectors u1, u2 in R^d;
w1 = c * u1, w2 = c * (p * u1 + sqrt(1 - p^2) * u2); x ~ N(0, I_d);
y_i = w_i^T x + sum_{j=1..m} sin(alpha_j * w_i^T x + beta_j) + noise. The cosine of w1 and w2 is
p, and so is the Pearson correlation of the labels' linear parts w_i^T x. u1 and u2 are also made
orthogonal to the all-ones vector (zero mean), so that the Pearson correlation of the entries of
w1 and w2 is p as well. The paper gives no values for alpha and beta; Google Research's own
generator for this procedure (google-research, synthetic_data_generator.py) uses
alpha_j = j, beta_j = (j - 1)^2 with c = 1 and m = 10, and so does this one.

Models, all from the trainer's layers (blocks.py, mmoe.py) with linear (regression) towers,
the paper's sizes: MMoE and OMoE (one gate shared by both tasks) with 8 single-layer experts of
16 units; shared-bottom with one layer of 8 * 16 = 128 units (the same bottom parameters);
towers of 8 units. Loss:
mean squared error of each task, summed. Training stops when the loss on a validation split
has not improved for `patience` epochs and keeps the best weights (with 10,000 rows the models
overfit the high-frequency sines within a few dozen epochs). Reported: the test MSE averaged
over the two tasks.

    make bench-mmoe-paper        # prints the table and writes bench/results/mmoe_paper.md
"""

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainer import blocks, mmoe

ARCHITECTURES = ('shared_bottom', 'omoe', 'mmoe')
LABELS = {'shared_bottom': 'shared-bottom', 'omoe': 'OMoE', 'mmoe': 'MMoE'}
TASKS = ('y1', 'y2')
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'mmoe_paper.md')


@dataclasses.dataclass(frozen=True)
class Settings:
    """The data generator's constants and the models' sizes and training."""
    dim: int = 100             # d, the input dimension
    scale: float = 1.0         # c, the norm of w1 and w2
    sines: int = 10            # m, the number of sine terms
    noise_std: float = 0.1     # the paper's noise N(0, 0.01), read as variance 0.01
    train_rows: int = 10_000
    validation_rows: int = 2_000
    test_rows: int = 5_000
    experts: int = 8
    expert_units: int = 16
    tower_units: int = 8
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 40           # at most; early stopping usually ends training sooner
    patience: int = 3

    @property
    def alphas(self) -> np.ndarray:
        return np.arange(1, self.sines + 1, dtype=np.float64)

    @property
    def betas(self) -> np.ndarray:
        return np.arange(self.sines, dtype=np.float64) ** 2


def task_directions(dim: int, correlation: float, scale: float,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """w1 = c * u1 and w2 = c * (p * u1 + sqrt(1 - p^2) * u2) for random orthonormal u1, u2
    that are also orthogonal to the all-ones vector (zero-mean entries)."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f'The task correlation must be in [-1, 1], got {correlation}.')
    basis, _ = np.linalg.qr(np.column_stack([np.ones(dim), rng.normal(size=(dim, 2))]))
    u1, u2 = basis[:, 1], basis[:, 2]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation ** 2) * u2)
    return w1, w2


def labels(x: np.ndarray, directions: Sequence[np.ndarray], settings: Settings,
           rng: np.random.Generator) -> np.ndarray:
    """[rows, tasks]: y_i = w_i^T x + sum_j sin(alpha_j * w_i^T x + beta_j) + noise."""
    linear = x @ np.column_stack(directions)
    sines = np.sin(linear[..., None] * settings.alphas + settings.betas).sum(axis=-1)
    return linear + sines + rng.normal(scale=settings.noise_std, size=linear.shape)


def generate(correlation: float, settings: Settings, seed: int):
    """Train, validation and test (x, y) of one draw of the task directions, and the
    directions."""
    rng = np.random.default_rng([seed, round(correlation * 1000)])
    directions = task_directions(settings.dim, correlation, settings.scale, rng)
    splits = []
    for rows in (settings.train_rows, settings.validation_rows, settings.test_rows):
        x = rng.normal(size=(rows, settings.dim))
        splits.append((x.astype(np.float32), labels(x, directions, settings, rng)
                       .astype(np.float32)))
    return splits, directions


def build_model(architecture: str, settings: Settings) -> tf.keras.Model:
    """x [batch, d] -> {y1, y2}, each [batch, 1], with the body of `architecture`."""
    x = tf.keras.Input(shape=(settings.dim,), name='x')
    if architecture == 'shared_bottom':
        bottom = blocks.MLP([settings.experts * settings.expert_units], name='shared_bottom')(x)
        task_inputs = [bottom, bottom]
    elif architecture in ('omoe', 'mmoe'):
        gates = len(TASKS) if architecture == 'mmoe' else 1
        task_inputs = mmoe.MixtureOfExperts(settings.experts, [settings.expert_units],
                                              num_tasks=gates, name=architecture)(x)
        task_inputs = task_inputs * (len(TASKS) // gates)
    else:
        raise ValueError(f'Unknown architecture {architecture!r}; one of {ARCHITECTURES}.')
    outputs = {task: blocks.Tower([settings.tower_units], activation=None, name=task)(inputs)
               for task, inputs in zip(TASKS, task_inputs)}
    return tf.keras.Model(x, outputs, name=architecture)


def train_and_test(architecture: str, splits, settings: Settings, seed: int,
                   epochs: int) -> float:
    """Trains one model from a seeded initialisation, with early stopping on the validation
    split; its test MSE averaged over the tasks."""
    (x_train, y_train), (x_validation, y_validation), (x_test, y_test) = splits
    tf.keras.utils.set_random_seed(seed)
    model = build_model(architecture, settings)
    model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate),
                  loss={task: 'mse' for task in TASKS})
    model.fit(x_train, dict(zip(TASKS, y_train.T)), batch_size=settings.batch_size,
              epochs=epochs, verbose=0, shuffle=True,
              validation_data=(x_validation, dict(zip(TASKS, y_validation.T))),
              callbacks=[tf.keras.callbacks.EarlyStopping(
                  patience=settings.patience, restore_best_weights=True)])
    predicted = model(x_test, training=False)
    return float(np.mean([np.mean((predicted[task].numpy()[:, 0] - y_test[:, i]) ** 2)
                          for i, task in enumerate(TASKS)]))


def run(correlations: Sequence[float], seeds: int, settings: Settings) -> Dict:
    """Test MSE per (correlation, architecture): one value per seed; each seed draws new task
    directions and data and initialises every model afresh (the same data for all three)."""
    results = {}
    for correlation in correlations:
        for seed in range(seeds):
            splits, _ = generate(correlation, settings, seed)
            results.setdefault((correlation, 'label_variance'), []).append(
                float(np.var(splits[-1][1], axis=0).mean()))
            for architecture in ARCHITECTURES:
                start = time.time()
                loss = train_and_test(architecture, splits, settings, seed, settings.epochs)
                results.setdefault((correlation, architecture), []).append(loss)
                logging.info('p=%.2f seed %d %-13s test MSE %.4f (%.1f s)', correlation, seed,
                             architecture, loss, time.time() - start)
    return results


def _mean_std(values) -> str:
    return f'{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}'


def markdown(results: Dict, correlations: Sequence[float], seeds: int) -> str:
    """One row per task correlation: each model's test MSE, and MMoE's gain over shared-bottom
    (paired by seed), mean ± sample standard deviation over the seeds."""
    lines = ['| task correlation p | label variance | '
             + ' | '.join(LABELS[a] for a in ARCHITECTURES) + ' | shared-bottom - MMoE |',
             '|---' * (len(ARCHITECTURES) + 3) + '|']
    gains = []
    for p in correlations:
        gain = np.subtract(results[p, 'shared_bottom'], results[p, 'mmoe'])
        gains.append(np.mean(gain))
        lines.append(f'| {p:g} | {_mean_std(results[p, "label_variance"])} | '
                     + ' | '.join(_mean_std(results[p, a]) for a in ARCHITECTURES)
                     + f' | {_mean_std(gain)} |')
    order = np.argsort(correlations)
    reproduced = all(np.diff(np.asarray(gains)[order]) < 0)
    lines += ['', f'Test MSE (mean of the two tasks), mean ± std over {seeds} seeds; the label '
              'variance is the MSE of predicting the mean. '
              'The paper\'s finding, "the lower the task correlation, the larger MMoE\'s '
              'advantage over shared-bottom": '
              + ('reproduced (the gain falls as p rises).' if reproduced else
                 'NOT reproduced (the gain does not fall monotonically as p rises).')]
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--correlations', type=float, nargs='+', default=[0.5, 0.9, 1.0])
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--epochs', type=int, default=Settings.epochs)
    parser.add_argument('--out', default=RESULTS, help='markdown file to write ("" for none)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    settings = Settings(epochs=args.epochs)
    start = time.time()
    results = run(args.correlations, args.seeds, settings)
    table = markdown(results, args.correlations, args.seeds)
    command = 'python -m bench.mmoe_paper ' + ' '.join(argv if argv is not None else sys.argv[1:])
    report = (f'# MMoE paper, synthetic experiment (Ma et al., KDD 2018, section 4)\n\n'
              f'{table}\n\nSettings: {settings}; alpha_j = j, beta_j = (j - 1)^2 (j = 1..m).\n'
              f'Produced by `{command.strip()}` (`make bench-mmoe-paper`) in '
              f'{time.time() - start:.0f} s.\n')
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(report)


if __name__ == '__main__':
    main()
