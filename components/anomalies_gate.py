"""A component that stops the run when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream refuses to run on them.
This gate fails its execution (and so the run, before Transform and training) with a message
naming each split, feature and reason, so bad data never reaches a pushed model.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

ANOMALIES_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes per split


class DataAnomaliesError(RuntimeError):
    """The input data does not match the curated schema."""


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


@tfx.dsl.components.component
def AnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataAnomaliesError if any split of `anomalies` holds an anomaly."""
    problems = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        with tf.io.gfile.GFile(path, 'rb') as f:  # local disk or object store
            problems += describe_anomalies(split, anomalies_pb2.Anomalies.FromString(f.read()))
    if problems:
        raise DataAnomaliesError(
            'The input data does not match schema/schema.pbtxt; the run stops before training. '
            'Fix the data, or update the schema if the change is intended:\n  '
            + '\n  '.join(problems))
