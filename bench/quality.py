"""The quality benchmark (issue 4): the project's model family and DeepCTR on the funnel simulator.

    make bench-quality     # or: python -m bench.quality [--grid-rows ...] [--seeds ...]

For each data size of the grid, every project configuration (trainer.train.build_compiled_model
with a ModelConfig) and every DeepCTR multitask model trains on the same transformed arrays
(bench/data.py) with the same budget (epochs of the train split, batch size), for each seed, one
system after the other. All are scored on the same held-out split: per-task AUC (sklearn) and its
ratio to the Bayes AUC of the true probabilities on exactly those rows, calibration (mean
prediction / mean label) and training examples/s. A learning curve of the project's MMoE + ESMM
adds larger data sizes. The markdown tables are printed and written to --out.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
from sklearn.metrics import roc_auc_score

from bench import data, shared
from pipeline.config import REPO_ROOT, load_config
from trainer import features

# Project systems: ModelConfig overrides (every architecture with ESMM, every loss with MMoE).
MAIN = 'MMoE + ESMM'
PROJECT_SYSTEMS = {
    MAIN: dict(architecture='mmoe', loss='esmm'),
    'shared-bottom + ESMM': dict(architecture='shared_bottom', loss='esmm'),
    'PLE + ESMM': dict(architecture='ple', loss='esmm'),
    'single-task + ESMM': dict(architecture='single_task', loss='esmm'),
    'MMoE + naive': dict(architecture='mmoe', loss='naive'),
    'MMoE + monotonic': dict(architecture='mmoe', loss='monotonic'),
    'MMoE + ESMM + uncertainty weights': dict(architecture='mmoe', loss='esmm',
                                              task_weighting='uncertainty'),
}
DEEPCTR_SYSTEMS = {'DeepCTR MMOE': 'MMOE', 'DeepCTR ESMM': 'ESMM', 'DeepCTR PLE': 'PLE'}
DEEPCTR_PYTHON = os.path.join(REPO_ROOT, '.bench-venv', 'deepctr', 'bin', 'python')

# Scored tasks: (name, label column, model output, scored on clicked impressions only).
TASKS = (
    ('click', features.CLICK_LABEL, features.P_CLICK, False),
    ('conversion', features.CONVERSION_LABEL, features.P_CONVERSION, False),
    ('CVR on clicked', features.CONVERSION_LABEL, features.P_CVR, True),
    ('CVR on all', features.CONVERSION_LABEL, features.P_CVR, False),
)
DEFAULT_EPOCHS = {100_000: 4, 1_000_000: 2, 4_000_000: 1}  # fits the 90-minute budget


def task_rows(test: Dict[str, np.ndarray], clicked_only: bool) -> np.ndarray:
    return test[features.CLICK_LABEL] == 1 if clicked_only else np.ones_like(
        test[features.CLICK_LABEL], bool)


def scores(predictions: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
           bayes: Dict[str, float]) -> Dict[str, float]:
    """AUC, AUC / Bayes AUC and calibration of each task on the held-out rows."""
    result = {}
    for task, label, output, clicked_only in TASKS:
        rows = task_rows(test, clicked_only)
        y, p = test[label][rows], predictions[output][rows]
        result[f'{task} AUC'] = roc_auc_score(y, p)
        result[f'{task} AUC / Bayes'] = result[f'{task} AUC'] / bayes[task]
        result[f'{task} calibration'] = p.mean() / y.mean()
    result['examples/s'] = float(predictions['examples_per_s'])
    return result


def bayes_aucs(data_dir: str, test: Dict[str, np.ndarray]) -> Dict[str, float]:
    """The AUC of the simulator's true probabilities on exactly the held-out rows."""
    truth = shared.load(data_dir, 'truth')
    return {task: roc_auc_score(test[label][task_rows(test, clicked)], truth[output][
        task_rows(test, clicked)]) for task, label, output, clicked in TASKS}


def train_project(config, data_dir: str, epochs: int) -> Dict[str, np.ndarray]:
    """Trains the project's model of `config` on the train arrays; predicts the held-out split."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer.in_memory import epoch_batches
    from trainer.losses import split_labels
    from trainer.train import build_compiled_model

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)
    model = build_compiled_model(config, tft.TFTransformOutput(os.path.join(data_dir,
                                                                            'transform_fn')),
                                 load_config().feature_spec())
    batches = epoch_batches(shared.load(data_dir, 'train'), config.batch_size,
                                   config.seed).map(split_labels)
    examples_per_s = shared.fit(model, batches, epochs, config.batch_size)
    outputs = shared.predict(model, shared.load(data_dir, 'test'))
    return {**{name: value.reshape(-1) for name, value in outputs.items()},
            'examples_per_s': examples_per_s}


def train_deepctr(systems: List[str], config, seeds: int, data_dir: str,
                  epochs: int) -> Dict[str, List[Dict[str, np.ndarray]]]:
    """Runs bench/deepctr_run.py in DeepCTR's venv on the same arrays, budget and seeds."""
    models = [DEEPCTR_SYSTEMS[system] for system in systems]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([DEEPCTR_PYTHON, '-m', 'bench.deepctr_run', '--data', data_dir,
                        '--models', ','.join(models), '--seeds', ','.join(map(str, range(seeds))),
                        '--epochs', str(epochs), '--config', json.dumps(dataclasses.asdict(config)),
                        '--out-dir', tmp], check=True, cwd=REPO_ROOT)
        return {system: [dict(np.load(os.path.join(tmp, f'{model}-seed{seed}.npz')))
                         for seed in range(seeds)] for system, model in zip(systems, models)}


def run_size(rows: int, systems: List[str], seeds: int, epochs: int, data_root: str,
             sim_seed: int) -> dict:
    """Every system on one data size: the project's seed by seed, then DeepCTR's (one process)."""
    data_dir = data.prepare(rows, sim_seed, data_root)
    test = shared.load(data_dir, 'test')
    bayes = bayes_aucs(data_dir, test)
    base = load_config().model
    predictions = {system: [] for system in systems}
    for seed in range(seeds):
        for system in systems:
            if system in PROJECT_SYSTEMS:
                start = time.time()
                config = dataclasses.replace(base, seed=seed, **PROJECT_SYSTEMS[system])
                predictions[system].append(train_project(config, data_dir, epochs))
                logging.info('%d rows, seed %d, %s: %.0f s', rows, seed, system,
                             time.time() - start)
    deepctr = [system for system in systems if system in DEEPCTR_SYSTEMS]
    if deepctr:
        start = time.time()
        predictions.update(train_deepctr(deepctr, base, seeds, data_dir, epochs))
        logging.info('%d rows, DeepCTR %s, %d seeds: %.0f s', rows, deepctr, seeds,
                     time.time() - start)
    results = {system: [scores(p, test, bayes) for p in runs]
               for system, runs in predictions.items()}
    for system, runs in results.items():
        logging.info('%d rows, %s: %s', rows, system, ', '.join(
            f'{task} AUC {np.mean([r[f"{task} AUC"] for r in runs]):.4f}' for task, *_ in TASKS))
    click = test[features.CLICK_LABEL]
    return {'rows': rows, 'train_rows': len(shared.load(data_dir, 'train')[features.CLICK_LABEL]),
            'test_rows': len(click), 'clicked_test_rows': int(click.sum()),
            'epochs': epochs, 'bayes': bayes, 'results': results}


def _mean_std(values: List[float], digits: int) -> str:
    text = f'{np.mean(values):.{digits}f}'
    return text + (f' ± {np.std(values):.{digits}f}' if len(values) > 1 else '')


def mean(size: dict, system: str, column: str) -> float:
    return float(np.mean([seed[column] for seed in size['results'][system]]))


def size_table(size: dict) -> List[str]:
    columns = [f'{task} AUC' for task, *_ in TASKS] + [f'{task} AUC / Bayes' for task, *_ in TASKS]
    columns += [f'{task} calibration' for task, *_ in TASKS[:3]] + ['examples/s']
    lines = [f'| system | {" | ".join(columns)} |', '|---' * (len(columns) + 1) + '|',
             '| Bayes (true probabilities) | ' + ' | '.join(
                 f'{size["bayes"][task]:.4f}' for task, *_ in TASKS) + ' |' + ' |' * (
                 len(columns) - len(TASKS))]
    for system, runs in size['results'].items():
        cells = [_mean_std([run[c] for run in runs], 0 if c == 'examples/s' else
                           3 if 'calibration' in c or 'Bayes' in c else 4) for c in columns]
        lines.append(f'| {system} | {" | ".join(cells)} |')
    return lines


def target_lines(main: dict, curve: List[dict]) -> List[str]:
    """Each target of issue 4 with the numbers that decide it: met or MISSED."""
    verdict = lambda ok: 'met' if ok else 'MISSED'  # noqa: E731
    lines = []
    deepctr = [s for s in main['results'] if s in DEEPCTR_SYSTEMS]
    if deepctr and MAIN in main['results']:
        for task, *_ in TASKS[:3]:
            column = f'{task} AUC'
            best = max(deepctr, key=lambda s: mean(main, s, column))
            ours, theirs = mean(main, MAIN, column), mean(main, best, column)
            lines.append(f'- {verdict(ours > theirs)}: {MAIN} beats the best DeepCTR model on '
                         f'{column}: {ours:.4f} vs {theirs:.4f} ({best}).')
        fastest = max(deepctr, key=lambda s: mean(main, s, 'examples/s'))
        ours, theirs = mean(main, MAIN, 'examples/s'), mean(main, fastest, 'examples/s')
        lines.append(f'- {verdict(ours >= theirs)}: {MAIN} trains at least as fast as every '
                     f'DeepCTR model: {ours:.0f} vs {theirs:.0f} examples/s ({fastest}).')
    if 'MMoE + naive' in main['results'] and MAIN in main['results']:
        column = 'CVR on all AUC'
        ours, naive = mean(main, MAIN, column), mean(main, 'MMoE + naive', column)
        lines.append(f'- {verdict(ours > naive)}: ESMM beats the naive loss on {column} '
                     f'(p_cvr against conversions on all impressions): {ours:.4f} vs {naive:.4f}.')
    if len(curve) > 1:
        first, last = curve[0], curve[-1]
        for task, *_ in TASKS[:3]:
            column = f'{task} AUC / Bayes'
            start, end = mean(first, MAIN, column), mean(last, MAIN, column)
            lines.append(f'- learning curve, {task}: the gap to Bayes is {1 - start:.3f} at '
                         f'{first["rows"]:,} rows and {1 - end:.3f} at {last["rows"]:,} rows: '
                         f'more data closed {end - start:.3f}; {1 - end:.3f} remains (model and '
                         'budget; an upper bound on what the model leaves).')
    return lines


def curve_table(curve: List[dict]) -> List[str]:
    lines = ['| rows | train rows | epochs | ' + ' | '.join(
        f'{task} AUC / Bayes' for task, *_ in TASKS) + ' | examples/s |',
        '|---' * (4 + len(TASKS)) + '|']
    for size in curve:
        runs = size['results'][MAIN]
        cells = [_mean_std([run[f'{task} AUC / Bayes'] for run in runs], 3)
                 for task, *_ in TASKS]
        lines.append(f'| {size["rows"]:,} | {size["train_rows"]:,} | {size["epochs"]} | '
                     + ' | '.join(cells) + f' | {_mean_std([r["examples/s"] for r in runs], 0)} |')
    return lines


def machine() -> str:
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), platform.processor())
    return f'{platform.node()}, {os.cpu_count()} CPU cores ({cpu}), {platform.platform()}'


def report(grid: List[dict], curve: List[dict], args, elapsed: float) -> str:
    config = load_config().model
    lines = [
        '# Quality benchmark: funnel simulator, project models and DeepCTR', '',
        f'Command: `{args.command}`  ',
        f'Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
        f'{elapsed / 60:.0f} min  ',
        f'Machine: {machine()} (shared with other work: examples/s are comparable within a '
        'run, not across machines)  ',
        f'Budget (every system): {args.seeds} seed(s) (mean ± std), batch size '
        f'{config.batch_size}, Adam lr {config.learning_rate}, embedding L2 '
        f'{config.embedding_l2}, no early stopping; epochs of the train split per data size: '
        + ', '.join(f'{rows:,} rows: {epochs}' for rows, epochs in sorted(
            {(s['rows'], s['epochs']) for s in grid + curve})) + '.', '',
        'Data: `python -m simulator` with its designed difficulty (Zipf-tailed user and item ids, '
        'user x item latent interactions, a conversion-only interaction, a missing feature); '
        'nothing was made easier for the benchmark. 80% of the rows train, 20% are held out '
        f'(split seed {data.SPLIT_SEED}); tf.Transform fits the project\'s preprocessing_fn on the '
        'train split and maps both; every system reads the same transformed arrays. '
        'Bayes = AUC of the simulator\'s true probabilities on the same held-out rows '
        '(for "CVR on all": the true p_cvr against conversions on all impressions). '
        '"CVR on clicked" scores p_cvr on clicked impressions only. DeepCTR\'s models predict '
        'click and conversion; their p_cvr is conversion / click.', '']
    grid = sorted(grid, key=lambda size: -size['rows'])  # the main comparison first
    curve = sorted([size for size in grid if MAIN in size['results']] + curve,
                   key=lambda size: size['rows'])
    for size in grid:
        lines += [f'## {size["rows"]:,} rows ({size["train_rows"]:,} train, '
                  f'{size["test_rows"]:,} held out, {size["clicked_test_rows"]:,} of them '
                  f'clicked; {size["epochs"]} epochs)', ''] + size_table(size) + ['']
    if curve:
        lines += [f'## Learning curve of {MAIN}', ''] + curve_table(curve) + ['']
    if grid:
        lines += [f'## Targets (issue 4), at {grid[0]["rows"]:,} rows', ''] + target_lines(
            grid[0], curve) + ['']
    return '\n'.join(lines)


def _rows_list(text: str) -> List[int]:
    return [int(float(value)) for value in text.split(',') if value]


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--grid-rows', default='1000000,100000',
                        help='data sizes for every system; the largest is the main comparison')
    parser.add_argument('--curve-rows', default='4000000',
                        help=f'extra data sizes for the learning curve of {MAIN} only')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--epochs', default=','.join(f'{r}:{e}' for r, e in DEFAULT_EPOCHS.items()),
                        help='rows:epochs,...; sizes not listed train one epoch')
    parser.add_argument('--systems', default=','.join(list(PROJECT_SYSTEMS) + list(
        DEEPCTR_SYSTEMS)), help='comma-separated system names')
    parser.add_argument('--sim-seed', type=int, default=0)
    parser.add_argument('--data-root', default=os.path.join(REPO_ROOT, 'data', 'bench'))
    parser.add_argument('--out', default=os.path.join(REPO_ROOT, 'bench', 'results', 'quality.md'))
    args = parser.parse_args(argv)
    args.command = 'python -m bench.quality ' + ' '.join(argv if argv is not None else sys.argv[1:])
    systems = [s for s in args.systems.split(',') if s]
    unknown = set(systems) - set(PROJECT_SYSTEMS) - set(DEEPCTR_SYSTEMS)
    if unknown:
        parser.error(f'unknown systems {sorted(unknown)}')
    if any(s in DEEPCTR_SYSTEMS for s in systems) and not os.path.exists(DEEPCTR_PYTHON):
        parser.error(f'{DEEPCTR_PYTHON} is missing: run `make bench-deepctr-venv` or leave the '
                     'DeepCTR systems out of --systems')
    epochs = {int(float(r)): int(e) for r, e in (p.split(':') for p in args.epochs.split(',') if p)}

    start, grid, curve = time.time(), [], []
    grid_rows = sorted(_rows_list(args.grid_rows), reverse=True)
    runs = [(rows, systems, grid) for rows in grid_rows]
    if MAIN in systems:  # the learning curve right after the main comparison
        runs[1:1] = [(rows, [MAIN], curve) for rows in _rows_list(args.curve_rows)]
    for rows, size_systems, sizes in runs:  # the report is rewritten after each data size
        sizes.append(run_size(rows, size_systems, args.seeds, epochs.get(rows, 1),
                              args.data_root, args.sim_seed))
        text = report(grid, curve, args, time.time() - start)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text)
    print(text)
    return text


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    for noisy in ('apache_beam', 'tensorflow', 'absl'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    main()
