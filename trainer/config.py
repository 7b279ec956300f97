"""The trainer's settings: the vocabularies (Transform), the model, its training loop and losses.

They are defined here, next to the code that reads them, so that the module file the Transform
and Trainer run (and TFX's cache key, a hash of trainer/) covers every setting that changes
training. pipeline/config.py composes them into the pipeline's configuration and reads their
FUNNEL_VOCABULARY_* / FUNNEL_MODEL_* overrides; the components pass them on as JSON
(dataclasses.asdict) and the Transform and Trainer rebuild them with from_dict.
"""

import dataclasses
from typing import Mapping, Tuple

ENV_PREFIX = 'FUNNEL_'  # FUNNEL_<SECTION>_<FIELD> overrides a setting (pipeline/config.py)


class ConfigError(ValueError):
    """A setting is malformed; the message names it and says how to fix it."""


def env_name(dotted: str) -> str:
    """The environment variable of a setting: 'model.batch_size' -> FUNNEL_MODEL_BATCH_SIZE."""
    return ENV_PREFIX + dotted.replace('.', '_').upper()


def require(ok: bool, name: str, value, why: str):
    """Raises ConfigError naming the setting `name` (dotted), its value and the rule it breaks."""
    if not ok:
        raise ConfigError(f'Configuration {name}={value!r} {why} (set it with {env_name(name)} '
                          'or change its default in pipeline/config.py or trainer/config.py).')


def from_dict(cls, values: Mapping[str, object]):
    """Rebuilds a settings section from its JSON form (as passed in a component's custom_config)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class VocabularyConfig:
    """How categorical ids become vocabulary ids (tft.compute_and_apply_vocabulary)."""
    top_k: int = 100_000               # keep at most this many ids per feature
    frequency_threshold: int = 3       # rarer ids share the OOV buckets
    num_oov_buckets: int = 10          # hashed buckets for rare and never-seen ids

    def validate(self):
        require(self.top_k > 0, 'vocabulary.top_k', self.top_k, 'must be > 0')
        require(self.frequency_threshold >= 1, 'vocabulary.frequency_threshold',
                self.frequency_threshold, 'must be >= 1')
        require(self.num_oov_buckets >= 1, 'vocabulary.num_oov_buckets', self.num_oov_buckets,
                'must be >= 1 so that unseen ids are safe at serving time')


# Allowed values of ModelConfig's choices (trainer/model.py and trainer/losses.py describe them).
ARCHITECTURES = ('mmoe', 'shared_bottom', 'ple', 'single_task', 'cross_stitch', 'aitm')
LOSSES = ('esmm', 'naive', 'monotonic')
TASK_WEIGHTINGS = ('static', 'uncertainty', 'gradnorm')
SCHEDULES = ('joint', 'alternating', 'curriculum')
USER_ITEM_INTERACTIONS = ('none', 'product')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The multi-task model: its architecture, training loop, losses and calibration."""
    # Architecture (trainer/model.py builds it; one module per family: mmoe.py, ple.py, ...).
    architecture: str = 'mmoe'         # one of ARCHITECTURES
    num_experts: int = 4               # mmoe: shared experts
    entity_experts: int = 0            # mmoe: experts per entity (user, item) that see only
    #                                    that side's features (the spec's `entity` marks); 0: none
    ple_levels: int = 2                # ple: extraction levels (1 level is CGC)
    experts_per_task: int = 1          # ple: task-specific experts per task and level
    shared_experts: int = 2            # ple: shared experts per level
    expert_units: Tuple[int, ...] = (64, 32)  # every expert, the shared and single-task bottoms,
    #                                          the cross-stitch columns and AITM's task layers
    tower_units: Tuple[int, ...] = (32,)
    gate_temperature: float = 1.0      # < 1 sharpens the gates' softmax, > 1 flattens it
    max_embedding_dim: int = 16        # embedding dim = min(this, 6 * vocab_size ** 0.25)
    dense_projection_dim: int = 16     # learnt linear projection of the dense features
    embedding_l2: float = 1e-4         # L2 penalty on embeddings: rare ids overfit without it
    dropout: float = 0.0
    # Learned interactions before the body, for every architecture (trainer/interactions.py).
    user_item_interaction: str = 'none'  # one of USER_ITEM_INTERACTIONS: 'product' multiplies
    #                                      the user side's and the item side's projections
    interaction_dim: int = 16          # 'product': width of each side's projection
    cross_layers: int = 0              # DCN-v2 cross layers over all input features; 0: none

    # Training loop (trainer/train.py).
    learning_rate: float = 2e-3
    batch_size: int = 1024
    # Training length follows the data: train_epochs passes over the train split, at most
    # train_steps batches (trainer/train.py, planned_steps). The default 300k-row run (240k train
    # rows: 7 epochs are 1,641 batches) trains the 1,500 steps of the cap; 160 train rows train
    # 2 batches, not 1,500.
    train_epochs: float = 7.0
    train_steps: int = 1500
    eval_steps: int = 50               # batches of the validation split per validation
    steps_per_validation: int = 250    # early stopping checks the validation loss this often
    early_stopping_patience: int = 2   # validations without improvement before stopping
    warm_start: bool = False           # start from the latest blessed model where it fits
    # 0 (default): stream the transformed train split from its files, parsed batch by batch as
    # training goes (the faster input on CPU: bench/results/speed.md). N > 0: read a split of at
    # most N rows into memory first (65 bytes a row with the simulator's columns) and shuffle all
    # of it every epoch, e.g. for time-ordered logs or a GPU that outpaces the parse.
    in_memory_max_rows: int = 0
    # False (default): the Transform only analyses (TFX's materialize=False) and the Trainer and
    # Tuner read ExampleGen's raw examples, applying the transform graph to each batch as they
    # read it (trainer/train.py, parsed_batches): one pass over the data and one copy of it less.
    # True: the Transform writes the transformed train and validation examples and the Trainer
    # and Tuner read them. `make bench` compares them (bench/speed.py, part 5; the figures in
    # bench/results/speed.md and speed_10k.md): the default is the faster at 1M rows.
    materialize_transform: bool = False
    seed: int = 42

    # Losses (trainer/losses.py), task weighting (task_weighting.py), schedules (schedules.py).
    loss: str = 'esmm'                 # one of LOSSES
    monotonic_penalty_weight: float = 1.0  # loss 'monotonic' and AITM's calibrator: weight of
    #                                        the funnel-order penalty
    task_weighting: str = 'static'     # one of TASK_WEIGHTINGS; 'static' uses the weights below
    click_loss_weight: float = 1.0
    conversion_loss_weight: float = 1.0
    gradnorm_alpha: float = 1.5        # gradnorm: how strongly slow tasks are pushed (paper: 1.5)
    schedule: str = 'joint'            # one of SCHEDULES: which task losses train each step
    curriculum_click_steps: int = 250  # curriculum: steps on the click loss alone, then the
    curriculum_ramp_steps: int = 250   # conversion loss's weight rises linearly to 1 over these

    # Fit a calibration of p_click and p_cvr on the validation split after training and ship it
    # in the SavedModel (trainer/calibration.py); with a bias per value of each of the feature
    # spec's slice columns unless calibrate_slices is false.
    calibration: bool = True
    calibrate_slices: bool = True

    def validate(self):
        for name, allowed in (('architecture', ARCHITECTURES), ('loss', LOSSES),
                              ('task_weighting', TASK_WEIGHTINGS), ('schedule', SCHEDULES),
                              ('user_item_interaction', USER_ITEM_INTERACTIONS)):
            require(getattr(self, name) in allowed, f'model.{name}', getattr(self, name),
                    'must be one of ' + ', '.join(map(repr, allowed)))
        require(self.architecture != 'aitm' or self.loss != 'naive', 'model.loss', self.loss,
                "cannot train AITM, which predicts p_conversion directly (p_cvr is a ratio); "
                "use 'esmm' or 'monotonic', which are the same for AITM")
        require(self.task_weighting != 'gradnorm' or self.architecture != 'single_task',
                'model.task_weighting', self.task_weighting,
                "needs a layer the tasks share; architecture 'single_task' has none")
        require(self.schedule == 'joint' or self.task_weighting == 'static', 'model.schedule',
                self.schedule, f"needs task_weighting 'static': task_weighting "
                f"{self.task_weighting!r} learns its task weights from every task's loss at "
                "every step")
        require(self.entity_experts >= 0, 'model.entity_experts', self.entity_experts,
                'must be >= 0')
        require(self.entity_experts == 0 or self.architecture == 'mmoe', 'model.entity_experts',
                self.entity_experts, f"needs architecture 'mmoe' (not {self.architecture!r}): "
                'the entity-specific experts sit next to its shared experts')
        for name in ('num_experts', 'ple_levels', 'experts_per_task', 'shared_experts',
                     'max_embedding_dim', 'dense_projection_dim', 'batch_size',
                     'train_steps', 'eval_steps', 'steps_per_validation', 'interaction_dim',
                     'early_stopping_patience', 'curriculum_ramp_steps'):
            require(getattr(self, name) > 0, f'model.{name}', getattr(self, name), 'must be > 0')
        for name in ('expert_units', 'tower_units'):
            units = getattr(self, name)
            require(len(units) > 0 and all(u > 0 for u in units), f'model.{name}', units,
                    'must be a non-empty list of positive layer widths')
        require(self.cross_layers >= 0, 'model.cross_layers', self.cross_layers, 'must be >= 0')
        require(self.gate_temperature > 0, 'model.gate_temperature', self.gate_temperature,
                'must be > 0')
        require(0.0 <= self.dropout < 1.0, 'model.dropout', self.dropout, 'must be in [0, 1)')
        require(self.embedding_l2 >= 0, 'model.embedding_l2', self.embedding_l2, 'must be >= 0')
        require(self.in_memory_max_rows >= 0, 'model.in_memory_max_rows',
                self.in_memory_max_rows, 'must be >= 0')
        require(self.learning_rate > 0, 'model.learning_rate', self.learning_rate, 'must be > 0')
        require(self.train_epochs > 0, 'model.train_epochs', self.train_epochs, 'must be > 0')
        require(0 <= self.seed < 2**32, 'model.seed', self.seed, 'must be in [0, 2**32)')
        for name in ('click_loss_weight', 'conversion_loss_weight', 'monotonic_penalty_weight',
                     'gradnorm_alpha', 'curriculum_click_steps'):
            require(getattr(self, name) >= 0, f'model.{name}', getattr(self, name),
                    'must be >= 0')
