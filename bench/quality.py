"""The quality benchmark: the project's model family and DeepCTR on the funnel simulator.

    make bench-quality     # or: python -m bench.quality [--grid-rows ...] [--seeds ...]

For each data size of the grid, every project configuration (trainer.train.build_compiled_model
with a ModelConfig) and every DeepCTR multitask model trains on the same transformed arrays
(bench/data.py) with the same budget (epochs of the train split, batch size), for each seed, one
system after the other. All are scored on the same held-out split: per-task AUC (sklearn) and its
ratio to the Bayes AUC of the true probabilities on exactly those rows, calibration (mean
prediction / mean label) and training examples/s. A learning curve of the project's MMoE + ESMM
adds larger data sizes. At the largest size, the transfer gain of each multi-task system over
its single-task baseline and, with --loss-weights, the Pareto front of click vs conversion AUC
(bench/tradeoffs.py). The markdown tables are printed and written to --out (the Pareto points
also as JSON, --pareto-json).

With --tune-trials N (`make bench-quality`: 10; default 0, off), the Tuner's search
(trainer/tuning.py: the pipeline's tuner_fn search, here on the benchmark's train and validation
arrays, model seed 0) runs at the main size first; its best settings train as the system TUNED
for every seed next to MMoE + ESMM's defaults, and the report compares them task by task against
the seed spread.

--architecture, --experts, --entity-experts, --loss, --weighting, --schedule,
--user-item-interaction, --cross-layers and --embedding-l2 define a custom project system next to
the named ones; a combination the configuration refuses stops the run
with its message.
"""

import argparse
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from sklearn.metrics import roc_auc_score

from bench import data, results_file, shared, tradeoffs
from pipeline.config import REPO_ROOT, load_config
from trainer import features
from trainer.config import (
    ARCHITECTURES,
    LOSSES,
    SCHEDULES,
    TASK_WEIGHTINGS,
    USER_ITEM_INTERACTIONS,
    ConfigError,
)
from trainer.search_space import TunerConfig

# Project systems: ModelConfig overrides (every architecture with ESMM, every loss with MMoE and
# with the single-task networks, the learnt task weightings). --architecture etc. add a custom one.
MAIN = 'MMoE + ESMM'
PROJECT_SYSTEMS = {
    MAIN: dict(architecture='mmoe', loss='esmm'),
    'shared-bottom + ESMM': dict(architecture='shared_bottom', loss='esmm'),
    'PLE + ESMM': dict(architecture='ple', loss='esmm'),
    'cross-stitch + ESMM': dict(architecture='cross_stitch', loss='esmm'),
    # 2 shared + 1 user + 1 item expert: as many experts as MMoE + ESMM's 4.
    'MMoE + entity experts + ESMM': dict(architecture='mmoe', loss='esmm', num_experts=2,
                                         entity_experts=1),
    'AITM': dict(architecture='aitm', loss='monotonic'),  # its loss: BCEs + calibrator
    'single-task + ESMM': dict(architecture='single_task', loss='esmm'),
    'single-task + monotonic': dict(architecture='single_task', loss='monotonic'),
    'single-task + naive': dict(architecture='single_task', loss='naive'),
    'MMoE + naive': dict(architecture='mmoe', loss='naive'),
    'MMoE + monotonic': dict(architecture='mmoe', loss='monotonic'),
    'MMoE + ESMM + uncertainty weights': dict(architecture='mmoe', loss='esmm',
                                              task_weighting='uncertainty'),
    'MMoE + ESMM + GradNorm': dict(architecture='mmoe', loss='esmm', task_weighting='gradnorm'),
    # The learned interactions (trainer/interactions.py), on MMoE + ESMM.
    'MMoE + ESMM + user x item': dict(architecture='mmoe', loss='esmm',
                                      user_item_interaction='product'),
    'MMoE + ESMM + cross': dict(architecture='mmoe', loss='esmm', cross_layers=2),
    'MMoE + ESMM + user x item + cross': dict(architecture='mmoe', loss='esmm',
                                              user_item_interaction='product', cross_layers=2),
}
# The default --systems: those of the committed bench/results/quality.md (its command has no
# --systems); the others are picked by name (make bench-tradeoffs).
DEFAULT_PROJECT_SYSTEMS = (MAIN, 'shared-bottom + ESMM', 'PLE + ESMM', 'single-task + ESMM',
                           'MMoE + naive', 'MMoE + monotonic',
                           'MMoE + ESMM + uncertainty weights')
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
SLICE_MIN_POSITIVES = 100  # slices whose calibration is judged against the slice band
CALIBRATION_TARGET = (0.95, 1.05)  # overall calibration of click and conversion
TUNED = f'{MAIN}, tuned'  # MAIN with the Tuner's best settings (--tune-trials)


def task_rows(test: Dict[str, np.ndarray], clicked_only: bool) -> np.ndarray:
    return test[features.CLICK_LABEL] == 1 if clicked_only else np.ones_like(
        test[features.CLICK_LABEL], bool)


def scores(predictions: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
           bayes: Dict[str, float]) -> Dict[str, float]:
    """AUC, AUC / Bayes AUC and calibration of each task on the held-out rows (and before the
    calibration maps, for the project's systems); the calibration furthest from 1 over the
    slices with at least SLICE_MIN_POSITIVES positives."""
    result = {}
    for task, label, output, clicked_only in TASKS:
        rows = task_rows(test, clicked_only)
        y, p = test[label][rows], predictions[output][rows]
        result[f'{task} AUC'] = roc_auc_score(y, p)
        result[f'{task} AUC / Bayes'] = result[f'{task} AUC'] / bayes[task]
        result[f'{task} calibration'] = p.mean() / y.mean()
        if f'uncalibrated {output}' in predictions:
            result[f'{task} calibration before'] = (
                predictions[f'uncalibrated {output}'][rows].mean() / y.mean())
    for task, label, output, _ in TASKS[:2]:
        ratios = [predictions[output][rows].mean() / test[label][rows].mean()
                  for rows in slice_rows(test) if test[label][rows].sum() >= SLICE_MIN_POSITIVES]
        result[f'{task} worst slice calibration'] = max(ratios, key=lambda r: abs(r - 1),
                                                        default=float('nan'))
    result['examples/s'] = float(predictions['examples_per_s'])
    return result


def slice_rows(test: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Row masks of every value of the feature spec's slice columns (the Evaluator's slices)."""
    return [test[column] == value for column in load_config().feature_spec.slices
            for value in np.unique(test[column])]


def bayes_aucs(data_dir: str, test: Dict[str, np.ndarray]) -> Dict[str, float]:
    """The AUC of the simulator's true probabilities on exactly the held-out rows."""
    truth = shared.load(data_dir, 'truth')
    return {task: roc_auc_score(test[label][task_rows(test, clicked)], truth[output][
        task_rows(test, clicked)]) for task, label, output, clicked in TASKS}


def train_project(config, data_dir: str, epochs: int) -> Dict[str, np.ndarray]:
    """Trains the project's model of `config` on the train arrays; predicts the held-out split."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer.calibration import Rows, fit_calibration
    from trainer.in_memory import epoch_batches
    from trainer.labels import split_labels
    from trainer.train import build_compiled_model

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(os.path.join(data_dir, 'transform_fn'))
    spec = load_config().feature_spec
    model = build_compiled_model(config, tft_output, spec)
    batches = epoch_batches(shared.load(data_dir, 'train'), config.batch_size,
                                   config.seed).map(split_labels)
    examples_per_s = shared.fit(model, batches, epochs, config.batch_size)
    test = shared.load(data_dir, 'test')
    outputs = {name: value.reshape(-1) for name, value in shared.predict(model, test).items()}
    uncalibrated = {f'uncalibrated {name}': value for name, value in outputs.items()}
    if config.calibration:  # as the pipeline's Trainer does: slopes from the validation split,
        # means overall and per slice value from the training and validation splits together
        # (trainer/calibration.py)
        slices = spec.slices if config.calibrate_slices else ()

        def rows(split: str) -> Rows:
            arrays = shared.load(data_dir, split)
            return Rows({name: value.reshape(-1)
                         for name, value in shared.predict(model, arrays).items()},
                        {name: arrays[name] for name in features.LABELS},
                        {name: arrays[name] for name in slices})

        calibrator = fit_calibration(rows('validation'), rows('train'), {
            name: tft_output.num_buckets_for_transformed_feature(name) for name in slices})
        outputs = {name: np.asarray(value).reshape(-1) for name, value in calibrator(
            outputs, {name: test[name] for name in slices}).items()}
    return {**outputs, **uncalibrated, 'examples_per_s': examples_per_s}


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


def run_project(system: str, changes: dict, data_dir: str, epochs: int, rows: int,
                test: Dict[str, np.ndarray], bayes: Dict[str, float]) -> Dict[str, float]:
    """One project system trained with the default ModelConfig and `changes`; its scores."""
    start = time.time()
    config = _config(changes)
    result = scores(train_project(config, data_dir, epochs), test, bayes)
    logging.info('%d rows, %s (%s): %.0f s, click AUC %.4f, conversion AUC %.4f', rows, system,
                 ', '.join(f'{k}={v}' for k, v in changes.items()), time.time() - start,
                 result['click AUC'], result['conversion AUC'])
    return result


def tuned_changes(data_dir: str, settings) -> Tuple[Dict[str, object], float]:
    """The search of trainer/tuning.py on the train and validation arrays, from MAIN's
    settings with seed 0: the settings its best trial changes, and its wall time."""
    import tensorflow_transform as tft

    from trainer import calibration, search_space, tuning
    from trainer.in_memory import epoch_batches
    from trainer.labels import split_labels
    from trainer.train import build_compiled_model

    start = time.time()
    tft_output = tft.TFTransformOutput(os.path.join(data_dir, 'transform_fn'))
    spec = load_config().feature_spec
    base = _config({**PROJECT_SYSTEMS[MAIN], 'seed': 0})
    sample, validation = ({name: values[:rows] for name, values in shared.load(
        data_dir, split).items()} for split, rows in (('train', settings.sample_rows),
                                                      ('validation', settings.validation_rows)))

    def validation_rows(model):
        return calibration.Rows({name: value.reshape(-1) for name, value in
                                 shared.predict(model, validation).items()},
                                {name: validation[name] for name in features.LABELS}, {})

    with tempfile.TemporaryDirectory() as tmp:
        tuner = tuning.FunnelTuner(
            base, settings, build_model=lambda c: build_compiled_model(c, tft_output, spec),
            train_batches=lambda c: epoch_batches(sample, c.batch_size, c.seed).repeat().map(
                split_labels),
            validation_rows=validation_rows, directory=tmp)
        tuner.search()
        best = search_space.apply(base, tuner.get_best_hyperparameters()[0].values)
    changes = {field.name: getattr(best, field.name) for field in dataclasses.fields(best)
               if getattr(best, field.name) != getattr(base, field.name)}
    logging.info('%d-trial search: %.0f s, best changes %s', settings.max_trials,
                 time.time() - start, changes)
    return changes, time.time() - start


def run_size(rows: int, systems: List[str], project: Mapping[str, dict], seeds: int,
             epochs: int, data_root: str, sim_seed: int,
             loss_weights: Optional[Mapping[str, Tuple[float, float]]] = None,
             sweep_seeds: int = 1, tune=None) -> dict:
    """Every system on one data size: the project's seed by seed, then DeepCTR's (one process);
    then, with `loss_weights`, each project system with static task weights again at each weight
    setting (tradeoffs.parse_weights) for `sweep_seeds` seeds. `project`: system -> ModelConfig
    changes. With `tune` (a TunerConfig), the search first, and its best settings as TUNED."""
    data_dir = data.prepare(rows, sim_seed, data_root)
    tuning = None
    if tune:
        changes, seconds = tuned_changes(data_dir, tune)
        tuning = {'changes': changes, 'seconds': seconds, 'trials': tune.max_trials,
                  'sample_rows': tune.sample_rows, 'trial_epochs': tune.trial_epochs}
        project = {**project, TUNED: {**PROJECT_SYSTEMS[MAIN], **changes}}
        systems = [*systems, TUNED]
    test = shared.load(data_dir, 'test')
    bayes = bayes_aucs(data_dir, test)
    truth = {**shared.load(data_dir, 'truth'), 'examples_per_s': float('nan')}
    base = load_config().model
    results = {system: [] for system in systems}
    for seed in range(seeds):
        for system in systems:
            if system in project:
                results[system].append(run_project(system, {**project[system], 'seed': seed},
                                                   data_dir, epochs, rows, test, bayes))
    deepctr = [system for system in systems if system in DEEPCTR_SYSTEMS]
    if deepctr:
        start = time.time()
        results.update({system: [scores(p, test, bayes) for p in runs] for system, runs in
                        train_deepctr(deepctr, base, seeds, data_dir, epochs).items()})
        logging.info('%d rows, DeepCTR %s, %d seeds: %.0f s', rows, deepctr, seeds,
                     time.time() - start)
    sweep = {}
    for system in (s for s in systems if s in project and loss_weights):
        if _config(project[system]).task_weighting == 'static':
            sweep[system] = {
                label: [run_project(system, {**project[system], 'seed': seed,
                                             'click_loss_weight': click,
                                             'conversion_loss_weight': conversion},
                                    data_dir, epochs, rows, test, bayes)
                        for seed in range(sweep_seeds)]
                for label, (click, conversion) in loss_weights.items()
                if label != tradeoffs.EQUAL_WEIGHTS}  # equal weights: the runs above
    for system, runs in results.items():
        logging.info('%d rows, %s: %s', rows, system, ', '.join(
            f'{task} AUC {np.mean([r[f"{task} AUC"] for r in runs]):.4f}' for task, *_ in TASKS))
    click = test[features.CLICK_LABEL]
    return {'rows': rows, 'train_rows': len(shared.load(data_dir, 'train')[features.CLICK_LABEL]),
            'test_rows': len(click), 'clicked_test_rows': int(click.sum()),
            'epochs': epochs, 'bayes': bayes, 'bayes_scores': scores(truth, test, bayes),
            'results': results, 'sweep': sweep,
            'sweep_seeds': sweep_seeds, 'tuning': tuning}


def _config(changes: Mapping[str, object]):
    """The validated ModelConfig of a project system; ConfigError names a bad combination."""
    config = dataclasses.replace(load_config().model, **changes)
    config.validate()
    return config


def single_task_baselines(project: Mapping[str, dict]) -> Dict[str, str]:
    """Multi-task system -> the single-task system of the same loss (AITM's loss is the
    monotonic one, trainer/losses.py), among `project`; systems without one are left out."""
    def loss(changes):
        config = _config(changes)
        return 'monotonic' if config.architecture == 'aitm' else config.loss

    single = {}
    for system, changes in project.items():
        if _config(changes).architecture == 'single_task':
            single.setdefault(loss(changes), system)
    return {system: single[loss(changes)] for system, changes in project.items()
            if _config(changes).architecture != 'single_task' and loss(changes) in single}


def learnt_weights(project: Mapping[str, dict]) -> Dict[str, str]:
    """System -> how it weights its tasks, for the systems that learn their task weights."""
    return {system: f'learnt ({config.task_weighting})' for system, config in (
        (system, _config(changes)) for system, changes in project.items())
        if config.task_weighting != 'static'}


def _mean_std(values: List[float], digits: int) -> str:
    text = f'{np.mean(values):.{digits}f}'
    return text + (f' ± {np.std(values):.{digits}f}' if len(values) > 1 else '')


def mean(size: dict, system: str, column: str) -> float:
    return float(np.mean([seed[column] for seed in size['results'][system]]))


def size_table(size: dict) -> List[str]:
    columns = [f'{task} AUC' for task, *_ in TASKS] + [f'{task} AUC / Bayes' for task, *_ in TASKS]
    columns += [f'{task} calibration' for task, *_ in TASKS[:3]]
    columns += [f'{task} worst slice calibration' for task, *_ in TASKS[:2]] + ['examples/s']
    truth = size.get('bayes_scores', {})
    lines = [f'| system | {" | ".join(columns)} |', '|---' * (len(columns) + 1) + '|',
             '| Bayes (true probabilities) | ' + ' | '.join(
                 f'{size["bayes"][task]:.4f}' for task, *_ in TASKS) + ' |' + ' |' * len(TASKS)
             + ''.join(f' {truth[c]:.3f} |' if c in truth else ' |'
                       for c in columns[2 * len(TASKS):-1]) + ' |']
    for system, runs in size['results'].items():
        cells = [_mean_std([run[c] for run in runs], 0 if c == 'examples/s' else
                           3 if 'calibration' in c or 'Bayes' in c else 4) for c in columns]
        lines.append(f'| {system} | {" | ".join(cells)} |')
    return lines


def calibration_table(size: dict) -> List[str]:
    """Calibration of click and conversion per seed: before -> after the calibration maps
    (project systems), overall and on the worst slice with enough positives."""
    lines = ['| system | seed | click | conversion | click, worst slice | '
             'conversion, worst slice |', '|---|---|---|---|---|---|']
    for system, runs in size['results'].items():
        for seed, run in enumerate(runs):
            overall = [(f'{run[f"{task} calibration before"]:.3f} -> ' if
                        f'{task} calibration before' in run else '')
                       + f'{run[f"{task} calibration"]:.3f}' for task in ('click', 'conversion')]
            worst = [f'{run[f"{task} worst slice calibration"]:.3f}'
                     for task in ('click', 'conversion')]
            lines.append(f'| {system} | {seed} | {" | ".join(overall + worst)} |')
    return lines


def target_lines(main: dict, curve: List[dict]) -> List[str]:
    """Each target of the benchmark (the quality and the calibration targets the project set
    itself) with the numbers that decide it: met or MISSED."""
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
    if deepctr and MAIN in main['results']:  # AUC / Bayes 0.01 above the best DeepCTR model
        for task, *_ in TASKS[:3]:
            column = f'{task} AUC / Bayes'
            best = max(deepctr, key=lambda s: mean(main, s, column))
            ours, theirs = mean(main, MAIN, column), mean(main, best, column)
            lines.append(f'- {verdict(ours >= theirs + 0.01)}: {MAIN} is at least 0.01 above '
                         f'the best DeepCTR model on {column}: {ours:.3f} vs {theirs:.3f} '
                         f'({best}).')
    if MAIN in main['results']:
        low, high = CALIBRATION_TARGET
        for task in ('click', 'conversion'):
            values = [run[f'{task} calibration'] for run in main['results'][MAIN]]
            worst = [run[f'{task} worst slice calibration'] for run in main['results'][MAIN]]
            lines.append(f'- {verdict(all(low <= v <= high for v in values))}: {MAIN} {task} '
                         f'calibration within {low}-{high} on every seed: '
                         + ', '.join(f'{v:.3f}' for v in values) + '.')
            lines.append(f'- {verdict(all(0.9 <= v <= 1.1 for v in worst))}: {MAIN} {task} '
                         'calibration within 0.9-1.1 on every slice with at least '
                         f'{SLICE_MIN_POSITIVES} positives, every seed (worst slice per seed): '
                         + ', '.join(f'{v:.3f}' for v in worst) + '.')
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


def tuning_lines(size: dict) -> List[str]:
    """The search's best settings against the defaults, and per task whether they beat the
    defaults beyond seed noise (mean difference above twice the larger seed std)."""
    tuning = size.get('tuning')
    if not tuning or TUNED not in size['results']:
        return []
    base = load_config().model
    lines = [f'## The Tuner\'s search, at {size["rows"]:,} rows', '',
             f'{tuning["trials"]} trials (trainer/tuning.py: the configured settings, 3 random, '
             f'then Bayesian), each on {min(tuning["sample_rows"], size["train_rows"]):,} '
             f'train rows for '
             f'{tuning["trial_epochs"]} epoch(s), scored by the mean validation AUC of click, '
             f'conversion and CVR; {tuning["seconds"] / 60:.1f} min. Best trial against the '
             'defaults:', '', '| setting | default | tuned |', '|---|---|---|']
    lines += [f'| {name} | {getattr(base, name)} | {value} |'
              for name, value in tuning['changes'].items()] or ['| (none: the defaults won) | | |']
    lines += ['', f'{TUNED} against {MAIN}, every seed:', '']
    seeds = len(size['results'][TUNED])
    for task, *_ in TASKS[:3]:
        column = f'{task} AUC / Bayes'
        tuned = [run[column] for run in size['results'][TUNED]]
        default = [run[column] for run in size['results'][MAIN]]
        noise = 2 * max(np.std(tuned), np.std(default))
        diff = np.mean(tuned) - np.mean(default)
        verdict = ('one seed: seed noise unknown' if seeds < 2 else
                   'beyond seed noise' if abs(diff) > noise else 'within seed noise')
        lines.append(f'- {column}: {np.mean(tuned):.4f} vs {np.mean(default):.4f}, difference '
                     f'{diff:+.4f} ({verdict}; per seed tuned ' + ', '.join(
                         f'{v:.4f}' for v in tuned) + ', defaults ' + ', '.join(
                         f'{v:.4f}' for v in default) + ').')
    return lines + ['']


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


def report(grid: List[dict], curve: List[dict], args, elapsed: float) -> str:
    config = load_config().model
    lines = [
        '# Quality benchmark: funnel simulator, project models and DeepCTR', '',
        f'Command: `{args.command}`  ',
        f'Date: {results_file.utc_now()}, '
        f'{elapsed / 60:.0f} min  ',
        f'Machine: {results_file.machine()} (shared with other work: examples/s are comparable '
        'within a run, not across machines)  ',
        f'Budget (every system): {args.seeds} seed(s) (mean ± std), batch size '
        f'{config.batch_size}, Adam lr {config.learning_rate}, embedding L2 '
        f'{config.embedding_l2}, no early stopping; epochs of the train split per data size: '
        + ', '.join(f'{rows:,} rows: {epochs}' for rows, epochs in sorted(
            {(s['rows'], s['epochs']) for s in grid + curve})) + '.', '',
        'Data: `python -m simulator` with its designed difficulty (Zipf-tailed user and item ids, '
        'user x item latent interactions, a conversion-only interaction, a missing feature); '
        'nothing was made easier for the benchmark. 70% of the rows train, 10% are the validation '
        "split (the project's calibration slopes are fitted on it; nothing trains on it), 20% are "
        f"held out (split seed {data.SPLIT_SEED}); tf.Transform fits the project's "
        'preprocessing_fn on the train split and maps all three; every system reads the same '
        'transformed arrays. '
        "Bayes = AUC of the simulator's true probabilities on the same held-out rows "
        '(for "CVR on all": the true p_cvr against conversions on all impressions). '
        '"CVR on clicked" scores p_cvr on clicked impressions only. DeepCTR\'s models predict '
        'click and conversion; their p_cvr is conversion / click.', '']
    grid = sorted(grid, key=lambda size: -size['rows'])  # the main comparison first
    curve = sorted([size for size in grid if MAIN in size['results']] + curve,
                   key=lambda size: size['rows'])
    for size in grid:
        lines += [f'## {size["rows"]:,} rows ({size["train_rows"]:,} train, '
                  f'{size["test_rows"]:,} held out, {size["clicked_test_rows"]:,} of them '
                  f'clicked; {size["epochs"]} epochs)', ''] + size_table(size) + [
            '', f'Calibration per seed (mean prediction / mean label; project systems: before '
            f'-> after the calibration maps: slopes from the validation split, means from the '
            f'train and validation splits, as in the Trainer; worst slice: the '
            f'device or ad_position slice with at least {SLICE_MIN_POSITIVES} positives '
            'furthest from 1). The Bayes row above is the noise floor: the true probabilities '
            'on the same rows.', ''] + calibration_table(size) + ['']
    if curve:
        lines += [f'## Learning curve of {MAIN}', ''] + curve_table(curve) + ['']
    targets = target_lines(grid[0], curve) if grid else []
    if targets:
        lines += [f'## Targets, at {grid[0]["rows"]:,} rows', ''] + targets + [
            '']
    if grid:
        lines += tuning_lines(grid[0]) + tradeoff_lines(grid[0], args)
    return '\n'.join(lines)


def pareto_points(size: dict, args) -> List[dict]:
    """The Pareto points of a size with a weight sweep (none without)."""
    if not size['sweep']:
        return []
    return tradeoffs.pareto_points(size, learnt_weights(args.project), size['sweep_seeds'])


def tradeoff_lines(size: dict, args) -> List[str]:
    """The transfer gain and (with a weight sweep) the Pareto front of the main data size."""
    lines = []
    baselines = single_task_baselines(args.project)
    gains = tradeoffs.transfer_gains(size['results'], baselines)
    if gains:
        lines += [f'## Transfer gain at {size["rows"]:,} rows', '',
                  'AUC of each multi-task system minus that of the single-task system with the '
                  'same loss (two networks sharing no parameter), paired by seed (same data, '
                  'budget and seed), mean ± std over the seeds. With ESMM and the monotonic loss '
                  'the conversion loss still reaches the click network of the single-task '
                  'system (through p_click * p_cvr, or the calibrator), so the gain is what '
                  'sharing parameters adds to the coupling of the loss.', ''
                  ] + tradeoffs.transfer_table(gains, baselines) + ['']
    points = pareto_points(size, args)
    if points:
        lines += [f'## Pareto front of click AUC vs conversion AUC at {size["rows"]:,} rows', '',
                  'Each system at equal task weights (its learnt weights for uncertainty and '
                  'GradNorm) and, with static weights, at the click : conversion loss-weight '
                  f'ratios {", ".join(args.loss_weights)} (the two weights scaled to sum to 2); '
                  f'mean over {size["sweep_seeds"]} seed(s). On the front: no other point is at '
                  'least as good on both tasks and better on one. The points are in '
                  f'`{os.path.basename(args.pareto_json)}` beside this file; the HTML report '
                  'plots them.', ''] + tradeoffs.pareto_table(points) + ['']
    return lines


def _rows_list(text: str) -> List[int]:
    return [int(float(value)) for value in text.split(',') if value]


def custom_system(args) -> Dict[str, dict]:
    """The system that --architecture, --experts, --entity-experts, --loss, --weighting and
    --schedule define, as {name: ModelConfig changes} (empty when none is given); raises
    ConfigError (the configuration's own message) for a combination that cannot work."""
    changes = {field: value for field, value in (
        ('architecture', args.architecture), ('loss', args.loss),
        ('task_weighting', args.weighting), ('schedule', args.schedule),
        ('entity_experts', args.entity_experts),
        ('user_item_interaction', args.user_item_interaction),
        ('cross_layers', args.cross_layers), ('embedding_l2', args.embedding_l2))
        if value is not None}
    if args.experts is not None:
        architecture = changes.get('architecture', 'mmoe')
        if architecture not in ('mmoe', 'ple'):
            raise ConfigError(f'--experts {args.experts}: architecture {architecture!r} has no '
                              "experts (it sets mmoe's experts or ple's shared experts)")
        changes['num_experts' if architecture == 'mmoe' else 'shared_experts'] = args.experts
    if not changes:
        return {}
    config = _config(changes)
    if config.entity_experts:
        spec = load_config().feature_spec
        features.entity_inputs(spec.input_entities, spec.categorical_names + spec.dense_names,
                               source=load_config().feature_spec_path)
    n = config.entity_experts
    name = ', '.join([f'custom: {config.architecture} + {config.loss}']
                     + [f'{args.experts} experts'] * (args.experts is not None)
                     + [f'{n} user + {n} item experts'] * (n > 0)
                     + [f'{config.task_weighting} weights'] * (config.task_weighting != 'static')
                     + [f'{config.schedule} schedule'] * (config.schedule != 'joint')
                     + [f'user x item {config.user_item_interaction}'] * (
                         args.user_item_interaction is not None)
                     + [f'{config.cross_layers} cross layers'] * (args.cross_layers is not None)
                     + [f'embedding L2 {config.embedding_l2:g}'] * (args.embedding_l2 is not None))
    return {name: changes}


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--grid-rows', default='1000000,100000',
                        help='data sizes for every system; the largest is the main comparison')
    parser.add_argument('--curve-rows', default='4000000',
                        help=f'extra data sizes for the learning curve of {MAIN} only')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--epochs', default=','.join(f'{r}:{e}' for r, e in DEFAULT_EPOCHS.items()),
                        help='rows:epochs,...; sizes not listed train one epoch')
    parser.add_argument('--systems', default=','.join(DEFAULT_PROJECT_SYSTEMS + tuple(
        DEEPCTR_SYSTEMS)), help='comma-separated system names, of: ' + ', '.join(
        list(PROJECT_SYSTEMS) + list(DEEPCTR_SYSTEMS)))
    custom = parser.add_argument_group(
        'a custom project system, run next to --systems (with --systems "": alone)')
    custom.add_argument('--architecture', choices=ARCHITECTURES)
    custom.add_argument('--experts', type=int, help="mmoe's experts or ple's shared experts")
    custom.add_argument('--entity-experts', type=int,
                        help='mmoe: user-side and item-side experts per side')
    custom.add_argument('--loss', choices=LOSSES)
    custom.add_argument('--weighting', choices=TASK_WEIGHTINGS)
    custom.add_argument('--schedule', choices=SCHEDULES)
    custom.add_argument('--user-item-interaction', choices=USER_ITEM_INTERACTIONS)
    custom.add_argument('--cross-layers', type=int, help='DCN-v2 cross layers')
    custom.add_argument('--embedding-l2', type=float)
    parser.add_argument('--loss-weights', default='',
                        help='click:conversion loss-weight ratios to sweep for the Pareto front, '
                        'e.g. 4:1,2:1,1:1,1:2,1:4 (default: no sweep, no front)')
    parser.add_argument('--sweep-seeds', type=int, default=1,
                        help='seeds per weight setting of the sweep (the first of --seeds)')
    parser.add_argument('--tune-trials', type=int, default=0,
                        help=f"trials of the Tuner's search at the main size, {TUNED} with its "
                        'best settings (0: no search)')
    parser.add_argument('--tune-sample-rows', type=int, default=100_000,
                        help='train rows each trial trains on (trainer/search_space.py)')
    parser.add_argument('--sim-seed', type=int, default=0)
    parser.add_argument('--data-root', default=os.path.join(REPO_ROOT, 'data', 'bench'))
    parser.add_argument('--out', default=os.path.join(REPO_ROOT, 'bench', 'results', 'quality.md'))
    parser.add_argument('--pareto-json', help='where the Pareto points go (default: pareto.json '
                        'beside --out)')
    args = parser.parse_args(argv)
    args.command = 'python -m bench.quality ' + shlex.join(
        argv if argv is not None else sys.argv[1:])
    args.pareto_json = args.pareto_json or os.path.join(
        os.path.dirname(os.path.abspath(args.out)), 'pareto.json')
    systems = [s for s in args.systems.split(',') if s]
    unknown = set(systems) - set(PROJECT_SYSTEMS) - set(DEEPCTR_SYSTEMS)
    if unknown:
        parser.error(f'unknown systems {sorted(unknown)}')
    try:
        custom_systems = custom_system(args)
        args.loss_weights = tradeoffs.parse_weights(args.loss_weights)
    except ValueError as e:  # ConfigError, FeatureSpecError, a malformed ratio
        parser.error(str(e))
    if not 1 <= args.sweep_seeds <= args.seeds:
        parser.error(f'--sweep-seeds {args.sweep_seeds} must be between 1 and --seeds')
    systems += list(custom_systems)
    args.project = {s: PROJECT_SYSTEMS[s] for s in systems if s in PROJECT_SYSTEMS}
    args.project.update(custom_systems)
    if any(s in DEEPCTR_SYSTEMS for s in systems) and not os.path.exists(DEEPCTR_PYTHON):
        parser.error(f'{DEEPCTR_PYTHON} is missing: run `make bench-deepctr-venv` or leave the '
                     'DeepCTR systems out of --systems')
    epochs = {int(float(r)): int(e) for r, e in (p.split(':') for p in args.epochs.split(',') if p)}

    tune = TunerConfig(enabled=True, max_trials=args.tune_trials,
                       sample_rows=args.tune_sample_rows) if args.tune_trials else None
    start, grid, curve = time.time(), [], []
    grid_rows = sorted(_rows_list(args.grid_rows), reverse=True)
    runs = [(rows, systems, grid) for rows in grid_rows]
    if MAIN in systems:  # the learning curve right after the main comparison
        runs[1:1] = [(rows, [MAIN], curve) for rows in _rows_list(args.curve_rows)]
    for i, (rows, size_systems, sizes) in enumerate(runs):  # the report is rewritten after each
        sizes.append(run_size(rows, size_systems, args.project, args.seeds, epochs.get(rows, 1),
                              args.data_root, args.sim_seed,
                              loss_weights=args.loss_weights if i == 0 else None,
                              sweep_seeds=args.sweep_seeds,
                              tune=tune if i == 0 and MAIN in size_systems else None))
        text = report(grid, curve, args, time.time() - start)
        results_file.write(args.out, text)
        if i == 0 and pareto_points(grid[0], args):  # the sweep runs at the main size only
            tradeoffs.write_pareto_json(args.pareto_json, pareto_points(grid[0], args), {
                'command': args.command, 'rows': rows, 'epochs': grid[0]['epochs'],
                'seeds': args.sweep_seeds, 'date': results_file.utc_now()})
    print(text)
    return text


if __name__ == '__main__':
    results_file.configure_logging()
    main()
