"""The Tuner's tuner_fn: KerasTuner's Bayesian search over trainer/search_space.py.

Each trial trains the funnel model with the trial's settings on a sample of the train split and
scores it on the validation split (trainer/search_space.py, TunerConfig). The objective is the
mean of three validation AUCs: p_click and p_conversion on all rows, p_cvr on clicked rows
(sklearn's roc_auc_score on the model's raw outputs; the Trainer's calibration, fitted after
training, does not change a ranking).

The trials run in FunnelTuner.run_trial rather than through keras_tuner.Tuner, whose fit and
callbacks are Keras 3's while TFX 1.16 trains tf_keras models (docs/design.md#keras); the search
loop, the oracle and the best hyperparameters TFX writes are KerasTuner's own.
"""

import logging
import os
import time
from typing import Callable, Dict

import keras_tuner
import numpy as np
import tensorflow as tf
from keras_tuner.engine import base_tuner
from sklearn.metrics import roc_auc_score
from tfx import v1 as tfx

from trainer import calibration, features, search_space, train
from trainer.config import ModelConfig, from_dict

OBJECTIVE = 'val_mean_auc'
INITIAL_RANDOM_TRIALS = 3  # after the configured settings' trial, before the Gaussian process
# The scored tasks: (name, output, scored on clicked rows only).
TASKS = (('click', features.P_CLICK, False), ('conversion', features.P_CONVERSION, False),
         ('cvr', features.P_CVR, True))


def validation_aucs(rows: calibration.Rows) -> Dict[str, float]:
    """The AUC of every task on `rows` and their mean, the objective. A task whose rows hold
    one class only (no conversion among few validation rows) has no AUC and is left out."""
    click = rows.labels[features.CLICK_LABEL] == 1
    aucs = {}
    for task, output, clicked_only in TASKS:
        mask = click if clicked_only else np.ones_like(click)
        labels = rows.labels[features.OUTPUT_LABELS[output]][mask]
        if len(np.unique(labels)) < 2:
            logging.warning('No AUC of %s: its %d validation rows hold one class only; the '
                            'objective leaves it out (raise tuner.validation_rows).', task,
                            len(labels))
            continue
        aucs[f'val_{task}_auc'] = float(roc_auc_score(labels, rows.predictions[output][mask]))
    if not aucs:
        raise ValueError('The validation split has no clicks (or no non-clicks): no task has an '
                         'AUC to tune for. Tune on more rows (tuner.validation_rows) or data.')
    aucs[OBJECTIVE] = float(np.mean(list(aucs.values())))
    return aucs


class ConfiguredFirstOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation whose first trial is the configured settings (the space's
    defaults): every search scores its baseline on the same budget."""

    def populate_space(self, trial_id):
        if not self.trials:
            return {'status': keras_tuner.engine.trial.TrialStatus.RUNNING,
                    'values': self.hyperparameters.copy().values}
        return super().populate_space(trial_id)


class FunnelTuner(base_tuner.BaseTuner):
    """Trains and scores one model per trial with the functions it is given, so the pipeline
    (files) and bench/quality.py (arrays) run the same search."""

    def __init__(self, config: ModelConfig, settings: search_space.TunerConfig,
                 build_model: Callable[[ModelConfig], tf.keras.Model],
                 train_batches: Callable[[ModelConfig], tf.data.Dataset],
                 validation_rows: Callable[[tf.keras.Model], calibration.Rows],
                 directory: str):
        self.config, self.settings = config, settings
        self.build_model, self.train_batches = build_model, train_batches
        self.validation_rows = validation_rows
        oracle = ConfiguredFirstOracle(
            objective=keras_tuner.Objective(OBJECTIVE, 'max'), max_trials=settings.max_trials,
            num_initial_points=1 + INITIAL_RANDOM_TRIALS,
            hyperparameters=search_space.hyperparameters(config), seed=config.seed)
        super().__init__(oracle, directory=directory, project_name='funnel', overwrite=True)

    def run_trial(self, trial, *args, **kwargs) -> Dict[str, float]:
        start = time.time()
        config = search_space.apply(self.config, trial.hyperparameters.values)
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(config.seed)
        model = self.build_model(config)
        steps = max(1, self.settings.sample_rows * self.settings.trial_epochs
                    // config.batch_size)
        model.fit(self.train_batches(config), epochs=1, steps_per_epoch=steps, verbose=0)
        aucs = validation_aucs(self.validation_rows(model))
        logging.info('Trial %s: %s; %d steps of %d in %.0f s.', trial.trial_id,
                     ', '.join(f'{k} {v:.4f}' for k, v in aucs.items()), steps,
                     config.batch_size, time.time() - start)
        return aucs


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """TFX Tuner entry point (see trainer/module.py): fn_args.train_files is the train split,
    fn_args.eval_files the validation split (pipeline/graph.py)."""
    config = from_dict(ModelConfig, fn_args.custom_config['model'])
    settings = from_dict(search_space.TunerConfig, fn_args.custom_config['tuner'])
    spec = features.FeatureSpec.from_dict(fn_args.custom_config['features'])
    tft_output = train.transform_output(fn_args.transform_graph_path, config)
    slices = ()  # the objective is ranking: no calibration slices needed

    tuner = FunnelTuner(
        config, settings,
        build_model=lambda c: train.build_compiled_model(c, tft_output, spec),
        train_batches=lambda c: train.input_fn(fn_args.train_files, tft_output, c.batch_size,
                                               c.seed, max_rows=settings.sample_rows),
        validation_rows=lambda model: train.predict_split(
            model, fn_args.eval_files, tft_output, slices, max_rows=settings.validation_rows),
        directory=os.path.join(fn_args.working_dir or '.', 'keras_tuner'))
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={})
