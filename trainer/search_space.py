"""What the Tuner searches (trainer/tuning.py), in one place: the ranges of the model settings
and the search's own budget.

Each searched value is a ModelConfig field (trainer/config.py), or `expert_width`, which sets
expert_units to (width, width // 2), the default's shape. A trial's values replace the
configured ones (`apply`); settings not searched keep their configured value. The ranges bracket
the defaults (learning rate 2e-3, batch 1024, 4 experts of (64, 32), embeddings up to 16,
no dropout, embedding L2 1e-4, equal loss weights) so the defaults themselves are a point of
the space.
"""

import dataclasses

from trainer.config import ModelConfig, require

EXPERT_WIDTH = 'expert_width'  # searched: expert_units = (width, width // 2)


def hyperparameters(config: ModelConfig):
    """The search space (keras_tuner.HyperParameters), with `config`'s values as its defaults
    (the search's first trial): a configured value outside a range widens it, or joins the
    choices."""
    # Imported here: pipeline/config.py reads TunerConfig below before anything imports
    # TensorFlow (pipeline/arguments.py checks a run's settings in a second).
    import keras_tuner

    hp = keras_tuner.HyperParameters()

    def choice(name, values, default):
        hp.Choice(name, sorted({*values, default}), default=default)

    def span(name, low, high, default, **kwargs):
        hp.Float(name, min(low, default), max(high, default), default=default, **kwargs)

    span('learning_rate', 5e-4, 1e-2, config.learning_rate, sampling='log')
    choice('batch_size', [256, 512, 1024, 2048], config.batch_size)
    hp.Int('num_experts', min(2, config.num_experts), max(8, config.num_experts),
           default=config.num_experts)
    choice(EXPERT_WIDTH, [32, 64, 128], config.expert_units[0])
    choice('max_embedding_dim', [8, 16, 32], config.max_embedding_dim)
    choice('dropout', [0.0, 0.1, 0.2, 0.3], config.dropout)
    span('embedding_l2', 1e-6, 1e-3, max(config.embedding_l2, 1e-6), sampling='log')
    # Only the ratio matters to the ranking (Adam rescales the gradient): click's weight stays.
    span('conversion_loss_weight', 0.5, 4.0, config.conversion_loss_weight, sampling='log')
    return hp


def apply(config: ModelConfig, values: dict) -> ModelConfig:
    """`config` with the searched `values` (a trial's or the best's) in place of its own;
    KerasTuner's bookkeeping entries ('tuner/...') are ignored."""
    values = {name: value for name, value in values.items() if not name.startswith('tuner/')}
    if EXPERT_WIDTH in values:
        width = int(values.pop(EXPERT_WIDTH))
        values['expert_units'] = (width, width // 2)
    unknown = sorted(set(values) - {field.name for field in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ValueError(f'Hyperparameters {unknown} are not model settings (trainer/config.py); '
                         'the best hyperparameters come from another search space: rerun the '
                         'Tuner with this trainer.')
    tuned = dataclasses.replace(config, **values)
    tuned.validate()
    return tuned


@dataclasses.dataclass(frozen=True)
class TunerConfig:
    """The Tuner component (off by default; `make tune` or FUNNEL_TUNER_ENABLED=true).

    Bayesian optimisation (KerasTuner's Gaussian process) over `hyperparameters()`: every trial
    trains a fresh model on the first `sample_rows` rows of the train split for
    `trial_epochs` passes (the same examples for every batch size), then scores the mean
    validation AUC of click, conversion and CVR on at most `validation_rows` rows of the
    validation split (never the Evaluator's eval split). The best trial's values feed the
    Trainer, which then trains as configured (train_steps, early stopping, calibration)."""
    enabled: bool = False
    max_trials: int = 10               # the trial budget (the first 3 are random)
    sample_rows: int = 100_000
    trial_epochs: int = 2
    validation_rows: int = 50_000

    def validate(self):
        for name in ('max_trials', 'sample_rows', 'trial_epochs', 'validation_rows'):
            require(getattr(self, name) > 0, f'tuner.{name}', getattr(self, name), 'must be > 0')
