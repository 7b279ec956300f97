"""Prints what the latest run did, read back from ML Metadata and the Evaluator's output.

    python -m pipeline.summary [--truth data/.../truth/summary.json]

Shows each component's state and duration, where the evaluation and the pushed model are, the
blessing decision, and per-task AUC next to the simulator's Bayes AUC (the best possible AUC of
each task, from the true probabilities) when a truth summary is given.
"""

import argparse
import json
import sys
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from pipeline import config as config_lib
from trainer import features

# (task, model output, judged on clicked impressions only, key of the simulator's Bayes AUC)
TASKS = (('click', features.P_CLICK, False, 'click'),
         ('conversion', features.P_CONVERSION, False, 'conversion'),
         ('cvr (clicked)', features.P_CVR, True, 'cvr'))


def _latest(artifacts: List[metadata_store_pb2.Artifact]):
    return max(artifacts, key=lambda a: a.create_time_since_epoch, default=None)


def component_times(store: metadata_store.MetadataStore) -> List[Dict]:
    """State and wall time of every component execution of the latest pipeline run."""
    runs = store.get_contexts_by_type('pipeline_run')
    if not runs:
        return []
    latest_run = max(runs, key=lambda c: c.create_time_since_epoch)
    node_type_id = store.get_context_type('node').id
    rows = []
    for execution in sorted(store.get_executions_by_context(latest_run.id),
                            key=lambda e: e.create_time_since_epoch):
        nodes = [c.name.split('.', 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == node_type_id]
        rows.append({
            'component': nodes[0] if nodes else execution.type,
            'state': metadata_store_pb2.Execution.State.Name(execution.last_known_state),
            'seconds': (execution.last_update_time_since_epoch
                        - execution.create_time_since_epoch) / 1000.0,
        })
    return rows


def task_aucs(evaluation_uri: str, click_column: str) -> Dict[str, Dict[str, float]]:
    """Candidate metrics of each task on the slice it is judged on, and the baseline's AUC.

    `click_column` is the raw click label, whose value 1 is the clicked slice.
    """
    by_slice = dict(tfma.load_eval_result(evaluation_uri).slicing_metrics)  # the candidate's
    aucs = {}
    for task, output, clicked_only, _ in TASKS:
        slice_key = ((click_column, 1),) if clicked_only else ()
        metrics = by_slice.get(slice_key, {}).get(output, {}).get('', {})
        aucs[task] = {name: metrics[name]['doubleValue']
                      for name in ('auc', 'auc_diff', 'example_count', 'calibration')
                      if name in metrics}
        if 'auc_diff' in aucs[task]:
            aucs[task]['baseline_auc'] = aucs[task]['auc'] - aucs[task].pop('auc_diff')
    return aucs


def _slice_name(slice_key) -> str:
    return ', '.join(f'{key.column} = {getattr(key, key.WhichOneof("kind"))}'
                     for key in slice_key.single_slice_keys) or 'overall'


def blessing_failures(evaluation_uri: str) -> List[str]:
    """Why the candidate was not blessed: each failed threshold with its slice and value."""
    result = tfma.load_validation_result(evaluation_uri)
    return [f'{failure.metric_key.output_name} {failure.metric_key.name}'
            f'{" change vs baseline" if failure.metric_key.is_diff else ""}'
            f' = {failure.metric_value.double_value.value:.4f} on slice '
            f'{_slice_name(slice_.slice_key)}'
            for slice_ in result.metric_validations_per_slice for failure in slice_.failures]


def summarize(config: config_lib.PipelineConfig, truth_path: Optional[str] = None) -> Dict:
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(config.metadata_path))
    evaluation = _latest(store.get_artifacts_by_type('ModelEvaluation'))
    blessing = _latest(store.get_artifacts_by_type('ModelBlessing'))
    pushed = _latest(store.get_artifacts_by_type('PushedModel'))
    summary = {
        'components': component_times(store),
        'evaluation_uri': evaluation.uri if evaluation else None,
        'blessed': bool(blessing and blessing.custom_properties['blessed'].int_value),
        'pushed_to': (pushed.custom_properties['pushed_destination'].string_value
                      if pushed and pushed.custom_properties['pushed'].int_value else None),
        'tasks': (task_aucs(evaluation.uri, config.feature_spec().click_label)
                  if evaluation else {}),
        'blessing_failures': blessing_failures(evaluation.uri) if evaluation else [],
    }
    if truth_path:
        with open(truth_path) as f:
            bayes = json.load(f)['bayes_auc']
        for task, _, _, bayes_key in TASKS:
            summary['tasks'].setdefault(task, {})['bayes_auc'] = bayes[bayes_key]
    return summary


def format_summary(summary: Dict) -> str:
    lines = ['', 'Components of the latest run:']
    lines += [f"  {row['component']:<32} {row['state']:<9} {row['seconds']:8.1f} s"
              for row in summary['components']]
    lines += ['', f"Evaluation: {summary['evaluation_uri']}",
              f"Blessed: {summary['blessed']}"]
    lines += [f'  failed: {failure}' for failure in summary['blessing_failures']]
    lines += [
              f"Pushed model: {summary['pushed_to'] or 'nothing pushed by the latest Pusher run'}",
              '', '| task | AUC | baseline AUC | Bayes AUC | AUC / Bayes | calibration | examples |',
              '|---|---|---|---|---|---|---|']
    for task, m in summary['tasks'].items():
        auc, bayes = m.get('auc'), m.get('bayes_auc')
        ratio = f'{auc / bayes:.3f}' if auc is not None and bayes else '-'
        lines.append(f"| {task} | {_fmt(auc)} | {_fmt(m.get('baseline_auc'))} | {_fmt(bayes)} | {ratio} | "
                     f"{_fmt(m.get('calibration'))} | {int(m.get('example_count', 0))} |")
    return '\n'.join(lines)


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.4f}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--truth', help="the simulator's truth/summary.json, for Bayes AUCs")
    args = parser.parse_args(argv)
    print(format_summary(summarize(config_lib.load_config(), args.truth)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
