"""The pipeline's one typed configuration: paths, Beam, Transform, model and blessing settings.

The sections the Transform and Trainer read (vocabulary, model) are defined with the trainer, in
trainer/config.py; this module composes them with the pipeline's own. Any field can be
overridden from the environment, which is how the Makefile, the TFX CLI and Kubeflow pass
settings without editing code:

    FUNNEL_<FIELD>            top-level fields, e.g. FUNNEL_DATA_ROOT=/data/logs
    FUNNEL_<SECTION>_<FIELD>  section fields, e.g. FUNNEL_MODEL_TRAIN_STEPS=500

Tuples are comma-separated (FUNNEL_MODEL_EXPERT_UNITS=128,64); an empty value gives an empty
tuple. Unknown FUNNEL_* variables and values of the wrong type are errors, so a typo cannot be
silently ignored.
"""

import dataclasses
import functools
import os
import re
import typing
from typing import Mapping, Optional, Tuple

from trainer import features
from trainer.config import ENV_PREFIX, ConfigError, ModelConfig, VocabularyConfig, require
from trainer.search_space import TunerConfig

SPAN = '{SPAN}'  # TFX ExampleGen's span placeholder
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The blessing rule: an AUC floor per task, no regression vs baseline (the slices are the
    feature spec's)."""
    min_click_auc: float = 0.55        # p_click on all impressions
    min_conversion_auc: float = 0.55   # p_conversion on all impressions
    min_cvr_auc: float = 0.52          # p_cvr on clicked impressions
    max_auc_regression: float = 0.02   # candidate may lose at most this much AUC per task
    # Calibration (mean prediction / mean label) of p_click and p_conversion on all eval rows
    # must be compatible with this band for the model to be blessed: the interval of
    # calibration_interval_z standard deviations of the eval split's positive count around it
    # must reach into the band (pipeline/eval_metrics.py; 0: the calibration itself
    # must lie in the band). gate_calibration=False reports calibration without gating.
    gate_calibration: bool = True
    min_calibration: float = 0.9
    max_calibration: float = 1.1
    calibration_interval_z: float = 2.0
    # Equal-width buckets of TFMA's calibration plot over [0, 1]. Conversion probabilities are
    # mostly below 0.01, so the report's reliability diagrams need fine buckets to regroup.
    calibration_plot_buckets: int = 10_000
    # Enough data to train and judge, checked per split before the Transform
    # (components/anomalies_gate.py): every split needs at least min_class_rows rows of each
    # class (1 and 0) of each task (click, conversion, and cvr among clicked rows); the eval
    # split at least min_eval_positives clicks and conversions, below which an AUC is noise.
    # 0 turns a check off.
    min_class_rows: int = 1
    min_eval_positives: int = 10

    def validate(self):
        for name in ('min_click_auc', 'min_conversion_auc', 'min_cvr_auc'):
            require(0.0 <= getattr(self, name) <= 1.0, f'evaluation.{name}',
                    getattr(self, name), 'must be in [0, 1]')
        require(self.max_auc_regression >= 0, 'evaluation.max_auc_regression',
                self.max_auc_regression, 'must be >= 0')
        require(0 < self.min_calibration <= 1 <= self.max_calibration,
                'evaluation.min_calibration', (self.min_calibration, self.max_calibration),
                'and evaluation.max_calibration must satisfy 0 < min <= 1 <= max')
        require(self.calibration_interval_z >= 0, 'evaluation.calibration_interval_z',
                self.calibration_interval_z, 'must be >= 0')
        for name in ('min_class_rows', 'min_eval_positives'):
            require(getattr(self, name) >= 0, f'evaluation.{name}', getattr(self, name),
                    'must be >= 0')
        require(self.calibration_plot_buckets >= 1, 'evaluation.calibration_plot_buckets',
                self.calibration_plot_buckets, 'must be >= 1')


RUNNERS = ('direct', 'flink', 'spark')
ENVIRONMENT_TYPES = ('LOOPBACK', 'EXTERNAL', 'PROCESS', 'DOCKER')


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Which engine runs the Beam components (ExampleGen, StatisticsGen, Transform, Evaluator);
    pipeline/engines.py turns it into Beam's pipeline arguments for both runners (docs/scaling.md).
    """
    # 'direct': Beam's DirectRunner in this process (beam_pipeline_args set its mode); 'flink' /
    # 'spark': Beam's job server for that engine (a Java process started by Beam, JDK 17 and the
    # jar of `make jars` needed), the SDK workers as environment_type says.
    runner: str = 'direct'
    parallelism: int = 2               # flink: --parallelism; spark: local[N] (spark_master_url '')
    # '[local]': Flink's mini cluster inside the job server's JVM; host:port: a Flink cluster's
    # REST endpoint (its minor version must be the job server's, 1.19).
    flink_master: str = '[local]'
    spark_master_url: str = ''         # '': local[parallelism]; spark://host:7077: a Spark master
    job_server_jar: str = ''           # '': the pinned jar `make jars` puts in .cache/jars/
    # host:port of a Beam job server already running (e.g. in the Kubernetes cluster): the
    # PortableRunner submits there and no job server is started (the jar is not needed).
    job_endpoint: str = ''
    # LOOPBACK: the SDK workers run in the submitting process, which has the user module (a
    # cluster's task managers must reach it: one machine only). EXTERNAL: a worker pool at
    # environment_config (host:port) beside each task manager, from the pipeline's image.
    environment_type: str = 'LOOPBACK'
    environment_config: str = ''

    def validate(self):
        require(self.runner in RUNNERS, 'beam.runner', self.runner, f'must be one of {RUNNERS}')
        require(self.parallelism >= 1, 'beam.parallelism', self.parallelism, 'must be >= 1')
        require(self.environment_type in ENVIRONMENT_TYPES, 'beam.environment_type',
                self.environment_type, f'must be one of {ENVIRONMENT_TYPES}')
        require(self.environment_type in ('LOOPBACK', 'DOCKER') or bool(self.environment_config),
                'beam.environment_config', self.environment_config,
                f'must be set for environment_type {self.environment_type} (EXTERNAL: the '
                "worker pool's host:port; PROCESS: its command as JSON)")


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """Kubeflow Pipelines only (kubeflow/runner.py): the image, object-store paths, the
    distributed Beam runner and the Trainer's container resources."""
    image: str = 'gcr.io/your-project/funnel-mmoe:latest'  # built from kubeflow/Dockerfile
    output_root: str = 'gs://your-bucket/funnel'  # like output_root: pipeline root, pushed models
    data_root: str = 'gs://your-bucket/funnel/examples'  # default of the run parameter data_root
    # The Beam steps' arguments while beam.runner is 'direct'; with 'flink' or 'spark' the `beam`
    # section's arguments (a job server in the cluster: beam.job_endpoint) replace them.
    beam_pipeline_args: Tuple[str, ...] = (
        '--runner=DataflowRunner', '--project=your-project', '--region=us-central1',
        '--temp_location=gs://your-bucket/funnel/beam-tmp',
        '--sdk_container_image=gcr.io/your-project/funnel-mmoe:latest')
    trainer_gpus: int = 1
    trainer_accelerator: str = 'nvidia.com/gpu'  # KFP: the GPU's Kubernetes resource name
    trainer_cpu_limit: float = 8.0               # vCPUs
    trainer_memory_limit_gb: float = 32.0

    def validate(self):
        for name in ('image', 'output_root', 'data_root'):
            require(bool(getattr(self, name)), f'kubeflow.{name}', getattr(self, name),
                    'must not be empty')
        require(self.trainer_gpus >= 0, 'kubeflow.trainer_gpus', self.trainer_gpus,
                'must be >= 0')
        require(self.trainer_gpus == 0 or bool(self.trainer_accelerator),
                'kubeflow.trainer_accelerator', self.trainer_accelerator,
                'must name the GPU when trainer_gpus > 0')
        for name in ('trainer_cpu_limit', 'trainer_memory_limit_gb'):
            require(getattr(self, name) > 0, f'kubeflow.{name}', getattr(self, name),
                    'must be > 0')


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A local run's terminal and its one-at-a-time rule (pipeline/run_log.py, run_lock.py)."""
    # The terminal shows one line per component, progress, warnings, errors and the summary;
    # TFX's, Beam's and TensorFlow's full log goes to <output_root>/logs/<pipeline>/ (its path
    # is printed first). True shows the full log on the terminal as well.
    full_log_to_terminal: bool = False
    # A run of a pipeline that is already running (same name and output root) stops at once,
    # naming the running one; True makes it wait for the running one to finish instead.
    wait_for_running_run: bool = False


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything one pipeline run needs; paths are derived from output_root."""
    pipeline_name: str = 'funnel-mmoe'      # also the TF Serving model name
    data_root: str = os.path.join(REPO_ROOT, 'data', 'simulated', 'examples')
    # 'csv' (*.csv.gz read decompressed), 'parquet' or 'tfrecord' (gzipped tf.Examples)
    data_format: str = 'csv'
    # Which columns are ids, dense values and labels, and the Evaluator's slices (YAML).
    feature_spec_path: str = os.path.join(REPO_ROOT, 'simulator', 'feature_spec.yaml')
    # Daily data: the sub-folder of one span under data_root, e.g. 'span-{SPAN}' (TFX's {SPAN}
    # is a number). Empty: every file directly in data_root is one data set.
    span_folder: str = ''
    train_window_spans: int = 1        # with span_folder: train on the latest this many spans
    output_root: str = os.path.join(REPO_ROOT, 'outputs')
    schema_path: str = os.path.join(REPO_ROOT, 'schema', 'schema.pbtxt')
    # train:validation:eval split of the input by hash, 8:1:1. Validation: early stopping and
    # the calibration fit; eval: the Evaluator's blessing only, unseen by training.
    train_hash_buckets: int = 8
    validation_hash_buckets: int = 1
    eval_hash_buckets: int = 1
    # Beam arguments after those of the `beam` section (a later one wins). None by default:
    # Beam's in-process DirectRunner, one worker. With any Beam argument, each Beam component of
    # TFX first packages TFX as an sdist for remote workers (tfx/utils/dependency_utils.py),
    # which the in-process runner never uses (bench/README.md#where-the-time-goes).
    beam_pipeline_args: Tuple[str, ...] = ()
    enable_cache: bool = True
    beam: BeamConfig = BeamConfig()    # the Beam runner (direct, flink, spark)
    vocabulary: VocabularyConfig = VocabularyConfig()
    model: ModelConfig = ModelConfig()
    tuner: TunerConfig = TunerConfig()  # the optional Tuner's search (trainer/search_space.py)
    evaluation: EvaluationConfig = EvaluationConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()  # read by kubeflow/runner.py only
    run: RunConfig = RunConfig()  # local runs only (pipeline/local_runner.py)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_root, 'pipelines', self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_root, 'metadata', self.pipeline_name, 'metadata.db')

    @property
    def serving_model_dir(self) -> str:
        """Pushed models land in <serving_model_dir>/<version>/, where TF Serving watches."""
        return os.path.join(self.output_root, 'serving_model', self.pipeline_name)

    @property
    def report_path(self) -> str:
        """Where `make report` writes the HTML report of the latest evaluation."""
        return os.path.join(self.output_root, 'report', 'index.html')

    @property
    def log_dir(self) -> str:
        """The full log of each local run, one file per run (pipeline/run_log.py)."""
        return os.path.join(self.output_root, 'logs', self.pipeline_name)

    @property
    def temp_dir(self) -> str:
        """A local run's temporary files, removed when it ends (pipeline/temp_dir.py)."""
        return os.path.join(self.output_root, 'tmp', self.pipeline_name)

    @property
    def drift_baseline_dir(self) -> str:
        """Statistics of the last run that passed validation, the next run's drift baseline."""
        return os.path.join(self.output_root, 'drift_baseline', self.pipeline_name)

    @property
    def module_file(self) -> str:
        return os.path.join(REPO_ROOT, 'trainer', 'module.py')

    @functools.cached_property
    def feature_spec(self) -> features.FeatureSpec:
        """The parsed feature spec, read once per configuration; raises
        features.FeatureSpecError naming any problem."""
        return features.load_feature_spec(self.feature_spec_path)

    @property
    def transform_custom_config(self) -> dict:
        """What preprocessing_fn reads (trainer/preprocessing.py)."""
        return {'vocabulary': dataclasses.asdict(self.vocabulary),
                'features': self.feature_spec.to_dict()}

    @property
    def trainer_custom_config(self) -> dict:
        """What run_fn reads (trainer/train.py)."""
        return {'model': dataclasses.asdict(self.model), 'features': self.feature_spec.to_dict()}

    @property
    def tuner_custom_config(self) -> dict:
        """What tuner_fn reads (trainer/tuning.py): the Trainer's, and the search's settings."""
        return {**self.trainer_custom_config, 'tuner': dataclasses.asdict(self.tuner)}

    def validate(self) -> 'PipelineConfig':
        require(not self.span_folder or (SPAN in self.span_folder and '/' not in self.span_folder
                                         and '*' not in self.span_folder),
                'span_folder', self.span_folder,
                f"must be empty or one folder name holding {SPAN}, e.g. 'span-{SPAN}'")
        require(self.train_window_spans >= 1, 'train_window_spans', self.train_window_spans,
                'must be >= 1')
        require(self.train_window_spans == 1 or bool(self.span_folder), 'train_window_spans',
                self.train_window_spans, 'needs span_folder (daily data laid out by span)')
        require(self.data_format in ('csv', 'parquet', 'tfrecord'), 'data_format',
                self.data_format, "must be 'csv', 'parquet' or 'tfrecord'")
        require(re.fullmatch(r'[a-z0-9]+(-[a-z0-9]+)*', self.pipeline_name) is not None,
                'pipeline_name', self.pipeline_name,
                'must be lowercase letters, digits and single dashes (a Kubeflow name; it also '
                'names the TF Serving model)')
        for name in ('train_hash_buckets', 'validation_hash_buckets', 'eval_hash_buckets'):
            require(getattr(self, name) > 0, name, getattr(self, name), 'must be > 0')
        spec = self.feature_spec
        self.vocabulary.validate()
        self.model.validate()
        self.tuner.validate()
        if self.model.entity_experts or self.model.user_item_interaction != 'none':
            features.entity_inputs(spec.input_entities, spec.categorical_names + spec.dense_names,
                                   source=self.feature_spec_path)
        self.evaluation.validate()
        self.beam.validate()
        self.kubeflow.validate()
        return self


def _parse(text: str, field_type, env_name: str):
    """Parses one environment value into the field's declared type."""
    try:
        if field_type is bool:
            if text.lower() not in ('1', '0', 'true', 'false', 'yes', 'no'):
                raise ValueError('expected true/false')
            return text.lower() in ('1', 'true', 'yes')
        if typing.get_origin(field_type) is tuple:
            item_type = typing.get_args(field_type)[0]
            return tuple(item_type(item.strip()) for item in text.split(',') if item.strip())
        return field_type(text)
    except ValueError as e:
        raise ConfigError(f'Environment variable {env_name}={text!r} is not a valid '
                          f'{getattr(field_type, "__name__", field_type)}: {e}') from None


def _apply_env(config, env: Mapping[str, str], prefix: str, used: set):
    """Returns a copy of the dataclass `config` with fields replaced from `env`."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for field in dataclasses.fields(config):
        name = f'{prefix}{field.name.upper()}'
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            changes[field.name] = _apply_env(value, env, name + '_', used)
        elif name in env:
            changes[field.name] = _parse(env[name], hints[field.name], name)
            used.add(name)
    return dataclasses.replace(config, **changes)


def load_config(env: Optional[Mapping[str, str]] = None, **overrides) -> PipelineConfig:
    """Builds the validated configuration from defaults, `overrides` and FUNNEL_* variables."""
    env = os.environ if env is None else env
    used = set()
    config = _apply_env(PipelineConfig(**overrides), env, ENV_PREFIX, used)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in used)
    if unknown:
        raise ConfigError(f'Unknown configuration variable(s) {unknown}; the known fields are '
                          'listed in pipeline/config.py and trainer/config.py.')
    return config.validate()
