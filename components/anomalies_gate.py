"""A component that stops the run when the data breaks the schema or drifted from the last run.

TFX 1.16's ExampleValidator only records anomalies; nothing downstream refuses to run on them,
and it never compares a run's statistics with an earlier run's (its executor calls
tfdv.validate_statistics without previous statistics, so the schema's drift comparators are
ignored). This gate fails its execution (and so the run, before Transform and training) with a
message naming each split, feature and reason when

- ExampleValidator found anomalies (types, domains, presence: the imported schema, named in
  the message; TFDV's lines give an offending value for type and range problems), or
- a feature with a `drift_comparator` in the schema moved further from the statistics of the
  last run that passed this gate than the comparator's threshold allows, or
- a split holds too few rows of a label's class to train or judge a task (label_class_counts:
  one class only in a split, or too few positives in the eval split for an AUC that is not
  noise), counted from StatisticsGen's statistics of each split: the Trainer and the Evaluator
  would otherwise meet it after minutes of work, or report an AUC of 0 or a NaN calibration.

A run that passes copies its statistics to `baseline_dir` (beside the pushed models, so it
outlives per-run pipeline roots on Kubeflow), the next run's baseline. A run stopped for drift
does not become the baseline, so the same shifted data stops again until someone looks (and
edits the threshold, if the shift is real and intended). The baseline is a folder rather than
an artifact found by a Resolver because TFX 1.16's LatestArtifactStrategy fails when there is
no artifact yet (the first run) and Kubeflow V2 compiles no other resolver.
"""

import logging
import os
from typing import Dict, List, Tuple

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


# TFDV's reasons said in the project's words where TFDV's are obscure: blank cells in a column
# the schema requires in every row ("Feature shape dropped", "Column dropped").
BLANKS = anomalies_pb2.AnomalyInfo.INVALID_FEATURE_SHAPE
PLAIN_REASONS = {
    BLANKS: 'Blank cells: some rows have no value, but the schema requires one in every row',
    anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT: 'Present in too few rows',
}
BLANKS_FIX = ('For an id column whose blank means an unknown id, declare `blank: oov` for it in '
              'the feature spec and infer the schema again (`make schema`); for a dense column, '
              'replace its `shape` by `value_count { max: 1 }` in the schema; otherwise fill '
              'the blanks upstream.')


def _reason(reason) -> str:
    if reason.type == BLANKS:
        return PLAIN_REASONS[BLANKS]
    return f'{PLAIN_REASONS.get(reason.type, reason.short_description)}: {reason.description}'


def describe_anomalies(split: str, anomalies: anomalies_pb2.Anomalies) -> list:
    """One human-readable line per anomalous feature (and for dataset-level anomalies)."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = '; '.join(map(_reason, info.reason))
        if any(reason.type == BLANKS for reason in info.reason):
            reasons += f'. {BLANKS_FIX}'
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


def label_class_counts(statistics, labels: Tuple[str, str]) -> Dict[str, Tuple[int, int]]:
    """{task: (rows with 1, rows with 0)} for click, conversion and cvr (conversions among
    clicked rows) in one split's statistics (a DatasetFeatureStatisticsList, labels 0 / 1 as
    the input check and the schema require)."""
    dataset = statistics.datasets[0]
    ones = {}
    for name in labels:
        feature = next(f for f in dataset.features if f.path.step == [name])
        ones[name] = (feature.num_stats.common_stats.num_non_missing
                      - feature.num_stats.num_zeros)
    click, conversion = labels
    rows = dataset.num_examples
    return {click: (ones[click], rows - ones[click]),
            conversion: (ones[conversion], rows - ones[conversion]),
            f'{conversion} among {click} = 1 (cvr)': (ones[conversion],
                                                      ones[click] - ones[conversion])}


def label_count_problems(counts: Dict[str, Dict[str, Tuple[int, int]]], eval_split: str,
                         min_class_rows: int, min_eval_positives: int) -> List[str]:
    """One line per split and task with fewer than `min_class_rows` rows of a class (0 or 1),
    or, in `eval_split`, fewer than `min_eval_positives` positives of click or conversion
    (not cvr, whose positives are the conversions). `counts` is {split: label_class_counts}."""
    problems = []
    for split, tasks in counts.items():
        for index, (task, (ones, zeros)) in enumerate(tasks.items()):
            needed = max(min_class_rows, min_eval_positives
                         if split == eval_split and index < 2 else 0)
            if ones < needed or zeros < min_class_rows:
                problems.append(f'split {split!r}, {task}: {ones} row(s) with 1, {zeros} with 0 '
                                f'(needs at least {needed} with 1 and {min_class_rows} with 0)')
    return problems


def _baseline_file(baseline_dir: str, split: str) -> str:
    return os.path.join(baseline_dir, f'Split-{split}', stats_artifact_utils.BINARY_PB_BASENAME)


@tfx.dsl.components.component
def AnomaliesGate(
        anomalies: tfx.dsl.components.InputArtifact[
            tfx.types.standard_artifacts.ExampleAnomalies],
        statistics: tfx.dsl.components.InputArtifact[
            tfx.types.standard_artifacts.ExampleStatistics],
        schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
        baseline_dir: tfx.dsl.components.Parameter[str],
        labels: tfx.dsl.components.Parameter[str],
        eval_split: tfx.dsl.components.Parameter[str],
        min_class_rows: tfx.dsl.components.Parameter[int],
        min_eval_positives: tfx.dsl.components.Parameter[int]) -> None:
    """Raises DataAnomaliesError on schema anomalies, on drift from the statistics in
    `baseline_dir` or on too few rows of a class of the `labels` ('click,conversion' columns);
    else makes `statistics` the new baseline."""
    schema_file = io_utils.get_only_uri_in_dir(schema.uri)
    curated = io_utils.SchemaReader().read(schema_file)
    problems = []
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    for split in splits:
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
    counts = {split: label_class_counts(
        stats_artifact_utils.load_statistics(statistics, split).proto(),
        tuple(labels.split(','))) for split in splits}
    too_few = label_count_problems(counts, eval_split, min_class_rows, min_eval_positives)
    if too_few:
        raise DataAnomaliesError(
            "Too few rows of a label's class to train or to judge a task; the run stops before "
            'training:\n  ' + '\n  '.join(too_few) + '\nRows with 1 / with 0 per split: '
            + '; '.join(f'{split}: ' + ', '.join(f'{task} {ones} / {zeros}'
                                                 for task, (ones, zeros) in tasks.items())
                        for split, tasks in counts.items())
            + '.\nAdd data (more days, a larger sample), check the export for a filter or join '
            'that lost one class, or, to run anyway, lower FUNNEL_EVALUATION_MIN_CLASS_ROWS '
            'or FUNNEL_EVALUATION_MIN_EVAL_POSITIVES (pipeline/config.py).')
    io_utils.copy_dir(statistics.uri, baseline_dir)
    logging.info('Statistics %s accepted: the drift baseline of the next run (%s).',
                 statistics.uri, baseline_dir)
