"""Reads runs' outputs back: the newest evaluation and pushed model in ML Metadata or those of one
run (by its run id), what a component made, the evaluation's metrics and calibration histograms
per model output and slice, and why a candidate was not blessed.

Shared by the run summary (pipeline/summary.py) and the HTML report (report/). Metrics are read
with tfma.load_metrics rather than tfma.load_eval_result, which also parses every plot.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.orchestration.metadata import sqlite_metadata_connection_config
from tfx.types import artifact_utils

from pipeline import eval_metrics

# The roles of a metric value: the candidate's, the baseline's, and candidate minus baseline.
CANDIDATE, BASELINE, DIFF = 'candidate', 'baseline', 'diff'

# {(model output, slice name): {role: {metric name: value}}}
MetricTable = Dict[Tuple[str, str], Dict[str, Dict[str, float]]]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A ModelEvaluation and whether its ModelBlessing blessed the model."""
    uri: str
    blessed: bool


def latest_artifact(store: metadata_store.MetadataStore,
                    type_name: str) -> Optional[metadata_store_pb2.Artifact]:
    return max(store.get_artifacts_by_type(type_name),
               key=lambda a: a.create_time_since_epoch, default=None)


def _evaluation(evaluation: Optional[metadata_store_pb2.Artifact],
                blessing: Optional[metadata_store_pb2.Artifact]) -> Optional[Evaluation]:
    if evaluation is None:
        return None
    return Evaluation(uri=evaluation.uri, blessed=bool(
        blessing and blessing.custom_properties['blessed'].int_value))


def _pushed_to(pushed: Optional[metadata_store_pb2.Artifact]) -> Optional[str]:
    """Where a PushedModel was pushed; None when its Pusher pushed nothing."""
    if pushed is None or not pushed.custom_properties['pushed'].int_value:
        return None
    return pushed.custom_properties['pushed_destination'].string_value


def latest_evaluation(store: metadata_store.MetadataStore) -> Optional[Evaluation]:
    return _evaluation(latest_artifact(store, 'ModelEvaluation'),
                       latest_artifact(store, 'ModelBlessing'))


def latest_pushed_model(store: metadata_store.MetadataStore) -> Optional[str]:
    """Where the latest Pusher run pushed its model; None when it pushed nothing."""
    return _pushed_to(latest_artifact(store, 'PushedModel'))


# --- One run's outputs: LocalDagRunner's pipeline_run context, named by its run id -------------

def run_ids(store: metadata_store.MetadataStore) -> List[str]:
    """The pipeline run ids in ML Metadata, oldest first."""
    return [context.name for context in sorted(store.get_contexts_by_type('pipeline_run'),
                                               key=lambda c: (c.create_time_since_epoch, c.id))]


def run_context(store: metadata_store.MetadataStore,
                run_id: Optional[str] = None) -> Optional[metadata_store_pb2.Context]:
    """The pipeline_run context of `run_id`; of the newest run when run_id is None."""
    if run_id is not None:
        return store.get_context_by_type_and_name('pipeline_run', run_id)
    return max(store.get_contexts_by_type('pipeline_run'),
               key=lambda c: (c.create_time_since_epoch, c.id), default=None)


def output_artifacts(store: metadata_store.MetadataStore,
                     executions: List[metadata_store_pb2.Execution]
                     ) -> Dict[str, metadata_store_pb2.Artifact]:
    """{artifact type name: the newest artifact of that type} among the executions' outputs
    (a cached execution's outputs are the artifacts it reused)."""
    events = store.get_events_by_execution_ids([e.id for e in executions])
    ids = sorted({event.artifact_id for event in events
                  if event.type == metadata_store_pb2.Event.OUTPUT})
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = {}
    for artifact in sorted(store.get_artifacts_by_id(ids) if ids else [],
                           key=lambda a: (a.create_time_since_epoch, a.id)):
        found[types[artifact.type_id]] = artifact
    return found


def run_evaluation(outputs: Dict[str, metadata_store_pb2.Artifact]
                   ) -> Optional[Evaluation]:
    return _evaluation(outputs.get('ModelEvaluation'), outputs.get('ModelBlessing'))


def run_pushed_model(outputs: Dict[str, metadata_store_pb2.Artifact]) -> Optional[str]:
    return _pushed_to(outputs.get('PushedModel'))


def split_rows(statistics: metadata_store_pb2.Artifact) -> Dict[str, int]:
    """{split: rows} of a StatisticsGen output, from its statistics."""
    rows = {}
    for split in artifact_utils.decode_split_names(
            statistics.properties['split_names'].string_value):
        path = os.path.join(statistics.uri, f'Split-{split}', 'FeatureStats.pb')
        with tf.io.gfile.GFile(path, 'rb') as f:
            stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        rows[split] = sum(dataset.num_examples for dataset in stats.datasets)
    return rows


def _node_executions(store: metadata_store.MetadataStore, pipeline_name: str,
                     component: str) -> List[metadata_store_pb2.Execution]:
    """Every execution of a component of the pipeline, oldest first."""
    node = store.get_context_by_type_and_name('node', f'{pipeline_name}.{component}')
    return sorted(store.get_executions_by_context(node.id) if node else [],
                  key=lambda e: (e.create_time_since_epoch, e.id))


def last_complete_seconds(metadata_path: str, pipeline_name: str,
                          component: str) -> Optional[float]:
    """How long the newest complete (not cached) execution of a component took; None if none."""
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(metadata_path))
    complete = [e for e in _node_executions(store, pipeline_name, component)
                if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
    if not complete:
        return None
    return (complete[-1].last_update_time_since_epoch
            - complete[-1].create_time_since_epoch) / 1000.0


def component_facts(metadata_path: str, pipeline_name: str, component: str) -> str:
    """What the newest execution of a component made, in a few words: cached or not, rows per
    split of statistics, blessed or not, pushed or not."""
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(metadata_path))
    executions = _node_executions(store, pipeline_name, component)
    if not executions:
        return ''
    execution = executions[-1]
    facts = []
    if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
        facts.append('cached')
    for type_name, artifact in output_artifacts(store, [execution]).items():
        if type_name == 'ExampleStatistics':
            facts.append('rows ' + ', '.join(f'{split} {rows:,}' for split, rows in
                                             split_rows(artifact).items()))
        elif type_name in ('ModelBlessing', 'InfraBlessing'):
            blessed = artifact.custom_properties['blessed'].int_value
            facts.append(('blessed' if blessed else 'NOT blessed')
                         + (' (serving contract)' if type_name == 'InfraBlessing' else ''))
        elif type_name == 'PushedModel':
            facts.append(f'pushed to {_pushed_to(artifact)}' if _pushed_to(artifact)
                         else 'nothing pushed')
    return ', '.join(facts)


def slice_name(slice_key) -> str:
    """TFMA's own name of a SliceKey proto: 'Overall', 'click:1', 'device:mobile'."""
    return tfma.slicer.stringify_slice_key(tfma.slicer.deserialize_slice_key(slice_key))


def model_locations(evaluation_uri: str) -> Dict[str, str]:
    """The SavedModel each model of the evaluation was loaded from, by role."""
    eval_config, _, _, locations = tfma.writers.eval_config_writer.load_eval_run(evaluation_uri)
    roles = {spec.name: BASELINE if spec.is_baseline else CANDIDATE
             for spec in eval_config.model_specs}
    return {roles[name]: path for name, path in locations.items()}


def _baseline_name(evaluation_uri: str) -> Optional[str]:
    eval_config, _, _, _ = tfma.writers.eval_config_writer.load_eval_run(evaluation_uri)
    return next((spec.name for spec in eval_config.model_specs if spec.is_baseline), None)


def _role(model_name: str, baseline: Optional[str], is_diff: bool = False) -> str:
    if is_diff:
        return DIFF
    return BASELINE if baseline is not None and model_name == baseline else CANDIDATE


def load_metric_table(evaluation_uri: str) -> MetricTable:
    """Every scalar metric of the evaluation, by model output, slice and role."""
    baseline = _baseline_name(evaluation_uri)
    table: MetricTable = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        name_of_slice = slice_name(metrics.slice_key)
        for item in metrics.metric_keys_and_values:
            if item.value.WhichOneof('type') != 'double_value':
                continue
            values = table.setdefault((item.key.output_name, name_of_slice), {}).setdefault(
                _role(item.key.model_name, baseline, item.key.is_diff), {})
            if item.key.name in values:
                raise ValueError(
                    f'{evaluation_uri}: two metrics named {item.key.name!r} for output '
                    f"{item.key.output_name!r} on slice {name_of_slice}; was the model's own "
                    'compiled metrics evaluated as well (options.include_default_metrics)?')
            values[item.key.name] = item.value.double_value.value
    return table


def load_calibration_histograms(evaluation_uri: str) -> Dict[Tuple[str, str, str], np.ndarray]:
    """TFMA's calibration plot data: {(output, slice, role): array [buckets, 3]} of the
    non-empty buckets, in order of prediction, with columns example count, sum of labels and
    sum of predictions."""
    baseline = _baseline_name(evaluation_uri)
    histograms = {}
    for plots in tfma.load_plots(evaluation_uri):
        name_of_slice = slice_name(plots.slice_key)
        for item in plots.plot_keys_and_values:
            if not item.value.HasField('calibration_histogram_buckets'):
                continue
            buckets = [(b.num_weighted_examples.value, b.total_weighted_label.value,
                        b.total_weighted_refined_prediction.value)
                       for b in item.value.calibration_histogram_buckets.buckets
                       if b.num_weighted_examples.value > 0]
            role = _role(item.key.model_name, baseline)
            histograms[(item.key.output_name, name_of_slice, role)] = (
                np.array(buckets, dtype=np.float64).reshape(-1, 3))
    return histograms


def describe_threshold(threshold) -> str:
    """A MetricThreshold proto in words: '>= 0.55; change vs baseline >= -0.02'."""
    parts = []
    value, change = threshold.value_threshold, threshold.change_threshold
    if value.HasField('lower_bound'):
        parts.append(f'>= {value.lower_bound.value:g}')
    if value.HasField('upper_bound'):
        parts.append(f'<= {value.upper_bound.value:g}')
    sign = '>=' if change.direction == tfma.MetricDirection.HIGHER_IS_BETTER else '<='
    if change.HasField('absolute'):
        parts.append(f'change vs baseline {sign} {change.absolute.value:g}')
    if change.HasField('relative'):
        parts.append(f'relative change vs baseline {sign} {change.relative.value:g}')
    return '; '.join(parts)


def _slicing_spec_name(spec) -> str:
    """A SlicingSpec named like the slices it matches ('Overall', 'click:1', 'device:*')."""
    return tfma.slicer.stringify_slice_key(
        tuple(sorted(spec.feature_values.items())) + tuple((key, '*') for key in spec.feature_keys))


def blessing_thresholds(evaluation_uri: str) -> List[Tuple[str, str, str, str]]:
    """The blessing rule the evaluation applied: (output, metric, slice, threshold) rows; the
    metric is named as in its config, else by its class."""
    eval_config, _, _, _ = tfma.writers.eval_config_writer.load_eval_run(evaluation_uri)
    rows = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            per_slice = [(_slicing_spec_name(slicing), item.threshold)
                         for item in metric.per_slice_thresholds for slicing in item.slicing_specs]
            if metric.HasField('threshold'):
                per_slice.append(('every slice', metric.threshold))
            name = json.loads(metric.config or '{}').get('name',
                                                         eval_metrics.tfma_class_name(metric))
            rows += [(output, name, slice_, describe_threshold(threshold))
                     for output in spec.output_names for slice_, threshold in per_slice]
    return rows


def blessing_failures(evaluation_uri: str) -> List[str]:
    """Why the candidate was not blessed: each failed threshold with its slice and value."""
    result = tfma.load_validation_result(evaluation_uri)
    return [f'{failure.metric_key.output_name} {failure.metric_key.name}'
            f'{" change vs baseline" if failure.metric_key.is_diff else ""}'
            f' = {failure.metric_value.double_value.value:.4f} on slice '
            f'{slice_name(slice_.slice_key)} (threshold: '
            f'{describe_threshold(failure.metric_threshold)})'
            for slice_ in result.metric_validations_per_slice for failure in slice_.failures]
