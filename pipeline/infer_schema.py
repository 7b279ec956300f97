"""Infers a first schema for your own impression logs, with the rules a curated schema has.

    make schema DATA=/path/to/logs SPEC=/path/to/spec.yaml NAME=...  (writes SCHEMA, see README)
    python -m pipeline.local_runner --infer-schema                    (reads the FUNNEL_* settings)

The files (the latest span with daily data) go through the input check and the decoding the
pipeline's ExampleGen uses (components/example_gen.py: byte-order mark dropped, labels as
integers, a blank cell an empty value list); TFDV computes their statistics and infers the
schema as SchemaGen does, so the schema accepts the data it was inferred from. Then the feature
spec's rules and the protective rules of a curated schema are applied:

- labels in {0, 1}, always present and absent at serving time; id columns always present,
  unless the spec says `blank: oov` (then they may miss: an unknown id); a dense column without
  blanks must stay complete, one with blanks may miss values (imputed);
- no closed lists of string values (TFDV infers them from the sample it sees: tomorrow's new ids
  would stop the run; the model maps unseen ids to OOV buckets);
- dense columns: a value range from the observed one with a margin (see `value_range`), no
  NaN or infinity; drift comparators on every spec column against the last accepted run
  (components/anomalies_gate.py), so a sign error or a change of units stops at the gate.

The schema is written to `schema_path`, whose folder the pipeline imports, so it must hold
nothing else. Loosen a rule by editing that file (README, "Your own impression logs").
"""

import logging
import math
import os
import tempfile
import time

import apache_beam as beam
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx_bsl.public import tfxio

from components.example_gen import CsvToExample
from components.parquet_batches import ParquetToSerializedExamples
from pipeline import config as config_lib
from pipeline import inputs
from trainer import features

SERVING, TRAINING = 'SERVING', 'TRAINING'


# Drift thresholds of the inferred comparators (the curated schema's): far above the distance
# between two independent samples of the simulator, far below a change of units.
PROGRESS = logging.getLogger('funnel.schema')  # lines for the terminal (pipeline/run_log.py)
DENSE_DRIFT_JSD = 0.3       # Jensen-Shannon divergence, dense and integer columns
CATEGORICAL_DRIFT_LINF = 0.1  # L-infinity distance of the value shares, string columns


def _statistics(files: list, data_format: str,
                labels) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of the tf.Examples ExampleGen makes of `files` (CSV, Parquet: its
    decoding; TFRecord: the records as they are)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'statistics.pb')
        with beam.Pipeline() as pipeline:
            if data_format == 'csv':
                records = pipeline | CsvToExample(files, labels)
            elif data_format == 'parquet':
                records = pipeline | ParquetToSerializedExamples(files, labels)
            else:
                records = pipeline | beam.Create(files) | beam.io.ReadAllFromTFRecord()
            _ = (records
                 | tfxio.TFExampleBeamRecord(physical_format='inmem',
                                             telemetry_descriptors=['infer_schema']).BeamSource()
                 | tfdv.GenerateStatistics(tfdv.StatsOptions())
                 | tfdv.WriteStatisticsToBinaryFile(path))
        return tfdv.load_stats_binary(path)


def value_range(low: float, high: float):
    """The accepted range of a dense column whose values were in [low, high]: [0, 1] for a
    share or rate; for other non-negative columns 0 up to ten times the maximum (a sign error
    or a change of units by 100 stops; a heavy tail's larger maximum on a bigger file does
    not); columns with negative values get ten times their largest magnitude on both sides."""
    if low >= 0:
        return 0.0, (1.0 if high <= 1 else 10.0 * high)
    magnitude = 10.0 * max(abs(low), abs(high))
    return -magnitude, magnitude


def _may_miss(feature: schema_pb2.Feature) -> None:
    """At most one value, possibly none (what TFDV's 'Feature shape dropped' is about)."""
    feature.ClearField('shape')
    feature.value_count.Clear()
    feature.value_count.max = 1


def protective_rules(schema: schema_pb2.Schema, statistics, spec: features.FeatureSpec):
    """Value ranges and drift comparators for the spec's columns (module docstring)."""
    by_name = {feature.name: feature for feature in schema.feature}
    stats = {f.path.step[0]: f for f in statistics.datasets[0].features}
    for name in spec.dense_names:
        feature, numbers = by_name[name], stats[name].num_stats
        low, high = value_range(numbers.min, numbers.max)
        if feature.type == schema_pb2.INT:
            feature.int_domain.min, feature.int_domain.max = math.floor(low), math.ceil(high)
        else:
            feature.float_domain.min, feature.float_domain.max = low, high
            feature.float_domain.disallow_nan = feature.float_domain.disallow_inf = True
        if numbers.common_stats.min_num_values == 0:  # blank cells: may miss
            _may_miss(feature)
    for name in (*spec.dense_names, *spec.categorical_names):
        feature = by_name[name]
        if feature.type == schema_pb2.BYTES:
            feature.drift_comparator.infinity_norm.threshold = CATEGORICAL_DRIFT_LINF
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = DENSE_DRIFT_JSD
    return schema


def apply_feature_spec(schema: schema_pb2.Schema, spec: features.FeatureSpec,
                       source: str) -> schema_pb2.Schema:
    """The spec's rules on an inferred schema; raises FeatureSpecError for a column the data
    (`source`) does not have."""
    by_name = {feature.name: feature for feature in schema.feature}
    missing = [name for name in spec.columns if name not in by_name]
    if missing:
        raise features.FeatureSpecError(
            f'Column(s) {missing} of the feature spec are not in the data {source} (which has '
            f'{sorted(by_name)}).')
    schema.ClearField('default_environment')
    schema.default_environment.extend([TRAINING, SERVING])
    for name in spec.raw_labels.values():
        label = by_name[name]
        label.ClearField('domain_info')
        label.int_domain.min, label.int_domain.max = 0, 1
        label.presence.min_fraction = 1.0
        label.not_in_environment.append(SERVING)
    for column in spec.categorical:
        if column.blank == features.BLANK_OOV:  # a blank is an unknown id: may miss
            by_name[column.name].ClearField('presence')
            _may_miss(by_name[column.name])
        else:
            by_name[column.name].presence.min_fraction = 1.0
    # Closed lists of string values, inferred from one sample: tomorrow's new ids or timestamps
    # are not anomalies (the model's ids go to OOV buckets).
    for feature in schema.feature:
        if feature.HasField('domain'):
            feature.ClearField('domain_info')
    schema.ClearField('string_domain')
    return schema


def infer_schema(config: config_lib.PipelineConfig) -> schema_pb2.Schema:
    """Input check -> ExampleGen's decoding -> statistics -> schema -> spec and protective
    rules -> written to config.schema_path."""
    spec = config.feature_spec
    folder = config.data_root
    if config.span_folder:
        folder = list(inputs.find_spans(config.data_root, config.span_folder).values())[-1]
    files = inputs.check_input_files(folder, config.data_format, spec.label_columns,
                                     spec.dense_names, spec.blank_ids)
    schema_dir = os.path.dirname(config.schema_path)
    others = [name for name in (tf.io.gfile.listdir(schema_dir)
                                if tf.io.gfile.isdir(schema_dir) else [])
              if name != os.path.basename(config.schema_path)]
    if others:
        raise inputs.InputDataError(
            f'The schema folder {schema_dir} holds other files too ({others}); the pipeline '
            'imports the whole folder, so give the schema a folder of its own.')
    start = time.time()
    PROGRESS.info('Computing statistics of %d file(s) in %s ...', len(files), folder)
    statistics = _statistics(files, config.data_format, spec.label_columns)
    schema = apply_feature_spec(tfdv.infer_schema(statistics, infer_feature_shape=True), spec,
                                folder)
    protective_rules(schema, statistics, spec)
    tf.io.gfile.makedirs(schema_dir)
    tfdv.write_schema_text(schema, config.schema_path)
    PROGRESS.info('Wrote the schema of %d columns to %s in %.1f s: value ranges and drift '
                 'thresholds of the spec\'s columns included. Review it (README, "Your own '
                 'impression logs") before the first run.', len(schema.feature),
                 config.schema_path, time.time() - start)
    return schema

