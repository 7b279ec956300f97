"""A component that stops the run when the data breaks the schema or drifted from the last run.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream refuses to run on them,
and it never compares a run's statistics with an earlier run's (its executor calls
tfdv.validate_statistics without previous statistics, so the schema's drift comparators are
ignored). This gate fails its execution (and so the run, before Transform and training) with a
message naming each split, feature and reason when

- ExampleValidator found anomalies (types, domains, presence: the imported schema, named in
  the message; TFDV's lines give an offending value for type and range problems), or
- a feature with a `drift_comparator` in the schema moved further from the statistics of the
  last run that passed this gate than the comparator's threshold allows.

A run that passes copies its statistics to `baseline_dir` (beside the pushed models, so it
outlives per-run pipeline roots on Kubeflow), the next run's baseline. A run stopped for drift
does not become the baseline, so the same shifted data stops again until someone looks (and
edits the threshold, if the shift is real and intended). The baseline is a folder rather than
an artifact found by a Resolver because TFX 1.16's LatestArtifactStrategy fails when there is
no artifact yet (the first run) and Kubeflow V2 compiles no other resolver.
"""

import logging
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes per split
DRIFT_TYPES = frozenset({anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
                         anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH})


class DataAnomaliesError(RuntimeError):
    """The input data does not match the curated schema, or drifted from the last run."""


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list:
    """One human-readable line per anomalous feature (and for dataset-level anomalies)."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = '; '.join(f'{r.short_description}: {r.description}' for r in info.reason)
        lines.append(f'split {split!r}, feature {feature!r}: {reasons or info.description}')
    if anomalies.HasField('dataset_anomaly_info'):
        reasons = '; '.join(f'{r.short_description}: {r.description}'
                            for r in anomalies.dataset_anomaly_info.reason)
        lines.append(f'split {split!r}, whole dataset: {reasons}')
    return lines


def drift_anomalies(statistics, schema, previous_statistics) -> anomalies_pb2.Anomalies:
    """TFDV's drift comparators (the schema's `drift_comparator`s) of `statistics` against
    `previous_statistics`, without the schema anomalies ExampleValidator already reported."""
    found = tfdv.validate_statistics(statistics, schema,
                                     previous_statistics=previous_statistics)
    drift = anomalies_pb2.Anomalies()
    for feature, info in found.anomaly_info.items():
        reasons = [reason for reason in info.reason if reason.type in DRIFT_TYPES]
        if reasons:
            drift.anomaly_info[feature].reason.extend(reasons)
    return drift


def _baseline_file(baseline_dir: str, split: str) -> str:
    return os.path.join(baseline_dir, f'Split-{split}', stats_artifact_utils.BINARY_PB_BASENAME)


@tfx.dsl.components.component
def AnomaliesGate(
        anomalies: tfx.dsl.components.InputArtifact[
            tfx.types.standard_artifacts.ExampleAnomalies],
        statistics: tfx.dsl.components.InputArtifact[
            tfx.types.standard_artifacts.ExampleStatistics],
        schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
        baseline_dir: tfx.dsl.components.Parameter[str]) -> None:
    """Raises DataAnomaliesError on schema anomalies or on drift from the statistics in
    `baseline_dir`; else makes `statistics` the new baseline."""
    schema_file = io_utils.get_only_uri_in_dir(schema.uri)
    curated = io_utils.SchemaReader().read(schema_file)
    problems = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        with tf.io.gfile.GFile(path, 'rb') as f:  # local disk or object store
            problems += describe_anomalies(split, anomalies_pb2.Anomalies.FromString(f.read()))
        previous = _baseline_file(baseline_dir, split)
        if not tf.io.gfile.exists(previous):
            logging.info('No accepted statistics of split %r in %s yet: no drift check.',
                         split, baseline_dir)
            continue
        drift = drift_anomalies(stats_artifact_utils.load_statistics(statistics, split).proto(),
                                curated, tfdv.load_stats_binary(previous))
        problems += [f"{line} (against the last accepted run's statistics, {previous})"
                     for line in describe_anomalies(split, drift)]
    if problems:
        raise DataAnomaliesError(
            f'The input data does not match the schema {schema_file} or drifted from the last '
            'accepted run; the run stops before training. Fix the data, or update the schema '
            'if the change is intended:\n  ' + '\n  '.join(problems))
    io_utils.copy_dir(statistics.uri, baseline_dir)
    logging.info('Statistics %s accepted: the drift baseline of the next run (%s).',
                 statistics.uri, baseline_dir)
