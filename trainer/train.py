"""The Trainer's run_fn: read transformed examples, train the funnel model, export it."""

import logging
import math
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from trainer import (
    calibration,
    export,
    features,
    in_memory,
    keras_autograph,
    model,
    search_space,
    warm_start,
)
from trainer.config import ModelConfig, from_dict
from trainer.labels import split_labels

LOAD_BATCH_SIZE = 8192  # examples parsed per step when reading the train split into memory
SHUFFLE_BUFFER = 10_000  # streamed examples shuffled ahead of batching (as TFX's DataAccessor)
PROGRESS_SECONDS = 30  # a progress line at most this often while training
# Lines for the person running the pipeline: a local run's terminal shows the `funnel.*` loggers
# (pipeline/run_log.py); elsewhere they are log lines like any other.
PROGRESS = logging.getLogger('funnel.trainer')


def count_rows(file_pattern: List[str]) -> int:
    """The number of records in the gzipped TFRecord files (the Transform's, or ExampleGen's when
    the Transform does not materialize), counted a batch at a time (0.7 s for 240k rows; 6 s one
    record at a time)."""
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern), compression_type='GZIP')
    return int(records.batch(LOAD_BATCH_SIZE).reduce(
        np.int64(0), lambda count, batch: count + tf.shape(batch, out_type=tf.int64)[0]))


def planned_steps(config: ModelConfig, train_rows: int) -> int:
    """model.train_epochs passes over the train split's rows, at most model.train_steps
    batches, at least one."""
    epochs_steps = math.ceil(config.train_epochs * train_rows / config.batch_size)
    return max(1, min(config.train_steps, epochs_steps))


class ProgressLog(tf.keras.callbacks.Callback):
    """Logs the steps done, the time so far and an estimate of the time left, every
    PROGRESS_SECONDS. The estimate is the pace since the first step (which traces the graph and
    takes far longer than the others) and assumes every planned step runs: early stopping may
    end sooner."""

    def __init__(self, total_steps: int, every_seconds: float = PROGRESS_SECONDS):
        super().__init__()
        self._supports_tf_logs = True  # the logs stay tensors: no step waits on a conversion
        self.total, self.every = total_steps, every_seconds
        self.done, self.start, self.first, self.last = 0, 0.0, 0.0, 0.0

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        now = time.time()
        if self.done == 1:
            self.first = self.last = now
        elif now - self.last >= self.every and self.done < self.total:
            self.last = now
            left = (now - self.first) / (self.done - 1) * (self.total - self.done)
            PROGRESS.info(f'Trainer: step {self.done:,} of {self.total:,} '
                          f'({100 * self.done // self.total}%), {now - self.start:.0f} s so far, '
                          f'about {left:.0f} s left.')


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over all GPUs when there are several, the default strategy otherwise."""
    gpus = tf.config.list_logical_devices('GPU')
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class RawExamplesOutput(tft.TFTransformOutput):
    """The Transform's output when it wrote no transformed examples (model.materialize_transform
    false): the files the Trainer and Tuner read are ExampleGen's raw tf.Examples, which
    parsed_batches transforms with this graph."""


def transform_output(transform_dir: str, config: ModelConfig) -> tft.TFTransformOutput:
    """The Transform's output, telling parsed_batches whether the examples it reads are already
    transformed (model.materialize_transform) or raw."""
    return (tft.TFTransformOutput if config.materialize_transform else RawExamplesOutput)(
        transform_dir)


def parsed_batches(file_pattern: List[str], tft_output: tft.TFTransformOutput, batch_size: int,
                   seed: Optional[int] = None, max_rows: Optional[int] = None) -> tf.data.Dataset:
    """Batches of transformed features from gzipped tf.Examples: those the Transform writes, or,
    for a RawExamplesOutput, ExampleGen's raw ones transformed batch by batch with the transform
    graph. Endless and shuffled when `seed` is given, else one pass in file order; of the first
    `max_rows` examples only, if given (the Tuner's sample).

    Each batch is parsed (and transformed) as a whole, several batches at a time, so it uses
    every core (the streaming input's speed against the in-memory ceiling:
    bench/results/speed.md).
    """
    if isinstance(tft_output, RawExamplesOutput):
        keras_autograph.leave_keras_2_unconverted()  # the transform layer is a Keras 2 model
        spec, transform = tft_output.raw_feature_spec(), tft_output.transform_features_layer()
    else:
        spec, transform = tft_output.transformed_feature_spec(), None

    def parse(batch):
        parsed = tf.io.parse_example(batch, spec)
        return transform(parsed) if transform else parsed

    records = tf.data.TFRecordDataset(tf.io.gfile.glob(file_pattern), compression_type='GZIP')
    if max_rows:
        records = records.take(max_rows)
    if seed is not None:
        records = records.repeat().shuffle(SHUFFLE_BUFFER, seed=seed)
    return (records.batch(batch_size)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def input_fn(file_pattern: List[str], tft_output: tft.TFTransformOutput, batch_size: int,
             seed: int, max_rows: Optional[int] = None) -> tf.data.Dataset:
    """Endless, shuffled batches of (transformed features, labels per output, sample weights
    per output), parsed from the files as they are read (the first `max_rows` examples only,
    if given)."""
    return parsed_batches(file_pattern, tft_output, batch_size, seed, max_rows).map(
        split_labels, num_parallel_calls=tf.data.AUTOTUNE)


def train_input(file_pattern: List[str], tft_output: tft.TFTransformOutput,
                config: ModelConfig) -> tf.data.Dataset:
    """input_fn's batches, streamed from the files; from memory when config.in_memory_max_rows
    is set and the split has at most that many rows (trainer/in_memory.py)."""
    columns = (load_columns(file_pattern, tft_output, config.in_memory_max_rows)
               if config.in_memory_max_rows else None)
    if columns is None:
        return input_fn(file_pattern, tft_output, config.batch_size, config.seed)
    return memory_batches(columns, config)


def memory_batches(columns: Dict[str, np.ndarray], config: ModelConfig) -> tf.data.Dataset:
    """input_fn's endless batches, gathered from columns already in memory."""
    return (in_memory.epoch_batches(columns, config.batch_size, config.seed).repeat()
            .map(split_labels, num_parallel_calls=tf.data.AUTOTUNE))


def load_columns(file_pattern: List[str], tft_output: tft.TFTransformOutput,
                 max_rows: int) -> Optional[Dict[str, np.ndarray]]:
    """The transformed examples, read once, as one array per column; None (nothing kept) as
    soon as there are more than `max_rows`, or if a column is not one value per row."""
    spec = tft_output.transformed_feature_spec()
    if not all(isinstance(f, tf.io.FixedLenFeature) and not f.shape for f in spec.values()):
        logging.info('A transformed column is not one value per row: training streams the files.')
        return None
    start = time.time()
    dataset = parsed_batches(file_pattern, tft_output, LOAD_BATCH_SIZE).take(
        max_rows // LOAD_BATCH_SIZE + 1)
    parts, rows = {}, 0
    for batch in dataset.as_numpy_iterator():
        rows += len(next(iter(batch.values())))
        if rows > max_rows:
            logging.info('The train split has more than %d rows (model.in_memory_max_rows): '
                         'training streams it from the files.', max_rows)
            return None
        for name, values in batch.items():
            parts.setdefault(name, []).append(values)
    columns = {name: np.concatenate(values) for name, values in parts.items()}
    logging.info('Read the %d train examples into memory (%.0f MB) in %.1f s.', rows,
                 sum(values.nbytes for values in columns.values()) / 2**20, time.time() - start)
    return columns


def predict_split(funnel_model: tf.keras.Model, file_pattern: List[str],
                  tft_output: tft.TFTransformOutput, slices: Tuple[str, ...],
                  max_rows: Optional[int] = None) -> calibration.Rows:
    """The model's outputs, the labels and the `slices` columns' ids on every row of a split
    (or its first `max_rows`), read once in order: LOAD_BATCH_SIZE rows per call of one traced
    forward pass (an eager call per training batch cost more than the arithmetic)."""
    forward = tf.function(lambda batch: funnel_model(batch, training=False),
                          reduce_retracing=True)
    columns = {}
    for batch in parsed_batches(file_pattern, tft_output, LOAD_BATCH_SIZE, max_rows=max_rows):
        labels = {name: batch.pop(name) for name in features.LABELS}
        outputs = forward(batch)
        for name, value in [*outputs.items(), *labels.items(), *((n, batch[n]) for n in slices)]:
            columns.setdefault(name, []).append(value.numpy().reshape(-1))
    columns = {name: np.concatenate(parts) for name, parts in columns.items()}
    return calibration.Rows({name: columns[name] for name in outputs},
                            {name: columns[name] for name in features.LABELS},
                            {name: columns[name] for name in slices})


def fit_calibration(funnel_model: tf.keras.Model, fn_args: tfx.components.FnArgs,
                    tft_output: tft.TFTransformOutput, config: ModelConfig,
                    spec: features.FeatureSpec
                    ) -> Tuple[calibration.FunnelCalibration, Dict, Dict, Dict]:
    """The calibration maps fitted on the validation split, their means on the training and
    validation splits together (trainer/calibration.py); with the validation split's outputs
    before and after them and its labels."""
    start = time.time()
    slices = spec.slices if config.calibrate_slices else ()
    validation, train = (predict_split(funnel_model, files, tft_output, slices)
                         for files in (fn_args.eval_files, fn_args.train_files))
    fitted = calibration.fit_calibration(validation, train, {
        name: tft_output.num_buckets_for_transformed_feature(name) for name in slices})
    calibrated = fitted(validation.predictions, validation.slices)
    ratios = [calibration.mean_ratios(p, validation.labels)
              for p in (validation.predictions, calibrated)]
    logging.info('Calibration fitted on %d validation rows (means on %d training and validation '
                 'rows) in %.1f s, (slope, bias, slice biases) %s; on the validation split, mean '
                 'prediction / mean label before: %s, after: %s.',
                 len(validation.labels[features.CLICK_LABEL]),
                 len(validation.labels[features.CLICK_LABEL])
                 + len(train.labels[features.CLICK_LABEL]),
                 time.time() - start, fitted.parameters(), *ratios)
    return fitted, validation.predictions, calibrated, validation.labels


def model_inputs(tft_output: tft.TFTransformOutput,
                 spec: features.FeatureSpec) -> Tuple[Dict[str, int], List[str]]:
    """Vocabulary sizes of the categorical inputs and names of the float inputs."""
    vocab_sizes = {name: tft_output.num_buckets_for_transformed_feature(name)
                   for name in spec.categorical_names}
    transformed = tft_output.transformed_feature_spec()
    dense = sorted(name for name, feature in transformed.items()
                   if feature.dtype == tf.float32 and name not in features.LABELS)
    return vocab_sizes, dense


def build_compiled_model(config: ModelConfig, tft_output: tft.TFTransformOutput,
                         spec: features.FeatureSpec) -> tf.keras.Model:
    vocab_sizes, dense = model_inputs(tft_output, spec)
    return model.compile_model(model.build_model(config, vocab_sizes, dense, spec.embedding_dims,
                                                 spec.input_entities), config)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point (see trainer/module.py)."""
    config = from_dict(ModelConfig, fn_args.custom_config['model'])
    if fn_args.hyperparameters:  # the Tuner's best trial (pipeline/graph.py), over the settings
        config = search_space.apply(config, fn_args.hyperparameters['values'])
        logging.info("Model settings with the Tuner's best hyperparameters: %s", config)
    spec = features.FeatureSpec.from_dict(fn_args.custom_config['features'])
    tf.keras.utils.set_random_seed(config.seed)
    tft_output = transform_output(fn_args.transform_output, config)
    train_data = train_input(fn_args.train_files, tft_output, config)
    # fn_args.eval_files: the validation split (pipeline/graph.py), never the Evaluator's.
    eval_data = input_fn(fn_args.eval_files, tft_output, config.batch_size, config.seed)

    strategy = distribution_strategy()
    logging.info('Training with %s over %d replica(s).', type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    with strategy.scope():
        funnel_model = build_compiled_model(config, tft_output, spec)
        if config.warm_start:
            warm_start.from_base_model(funnel_model, fn_args.base_model, tft_output)

    start = time.time()
    train_rows = count_rows(fn_args.train_files)
    steps = planned_steps(config, train_rows)
    validations = max(1, steps // config.steps_per_validation)
    steps_per_validation = steps // validations
    total = validations * steps_per_validation
    PROGRESS.info(f'Trainer: {train_rows:,} train rows (counted in {time.time() - start:.1f} s); '
                  f'{total:,} steps of {config.batch_size:,} rows '
                  f'({total * config.batch_size / max(train_rows, 1):.1f} epochs; '
                  f'model.train_epochs {config.train_epochs:g}, at most model.train_steps '
                  f'{config.train_steps:,}).')
    start, progress = time.time(), ProgressLog(total)
    history = funnel_model.fit(
        train_data, epochs=validations, steps_per_epoch=steps_per_validation,
        validation_data=eval_data, validation_steps=config.eval_steps, verbose=2,
        callbacks=[
            tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch'),
            tf.keras.callbacks.EarlyStopping(monitor='val_loss',
                                             patience=config.early_stopping_patience,
                                             restore_best_weights=True),
            progress,
        ])
    elapsed = time.time() - start
    steps = len(history.epoch) * steps_per_validation
    PROGRESS.info(f'Trainer: trained {steps:,} steps of {config.batch_size:,} rows in '
                  f'{elapsed:.1f} s ({steps * config.batch_size / elapsed:.0f} rows/s incl. '
                  f'validation; the first step, which traces the model, '
                  f'{progress.first - progress.start:.1f} s)'
                  f"{'' if steps == total else ', stopped early'}.")
    start = time.time()
    fitted, before, after, labels = (fit_calibration(funnel_model, fn_args, tft_output, config,
                                                     spec)
                                     if config.calibration else (None,) * 4)
    calibrated = time.time()
    export.export_serving_model(funnel_model, tft_output, fn_args.serving_model_dir, spec,
                                fitted)
    if fitted is not None:
        calibration.write_histograms(fn_args.serving_model_dir, before, after, labels)
    PROGRESS.info(f'Trainer: calibration {calibrated - start:.1f} s, export '
                  f'{time.time() - calibrated:.1f} s.')
