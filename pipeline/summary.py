"""Prints what the latest run did, read back from ML Metadata and the Evaluator's output.

    python -m pipeline.summary [--truth data/.../truth/summary.json]

Shows each component's state and duration, where the evaluation and the pushed model are, the
blessing decision, and per-task AUC next to the simulator's Bayes AUC (the best possible AUC of
each task, from the true probabilities) when a truth summary is given.
"""

import argparse
import json
import sys
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from pipeline import config as config_lib
from pipeline import run_outputs
from trainer import features

OVERALL = tfma.slicer.stringify_slice_key(())


def judged_tasks(click_column: str) -> Tuple[Tuple[str, str, str, str], ...]:
    """(task, model output, slice it is judged on, key of the simulator's Bayes AUC) per task;
    `click_column` is the raw click label (the feature spec's), whose value 1 is the clicked
    slice."""
    clicked = tfma.slicer.stringify_slice_key(((click_column, 1),))
    return (('click', features.P_CLICK, OVERALL, 'click'),
            ('conversion', features.P_CONVERSION, OVERALL, 'conversion'),
            ('cvr (clicked)', features.P_CVR, clicked, 'cvr'))


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
    """Candidate metrics of each task on the slice it is judged on, and the baseline's AUC."""
    table = run_outputs.load_metric_table(evaluation_uri)
    aucs = {}
    for task, output, slice_name, _ in judged_tasks(click_column):
        metrics = table.get((output, slice_name), {})
        candidate = metrics.get(run_outputs.CANDIDATE, {})
        aucs[task] = {name: candidate[name] for name in (
            'auc', 'example_count', 'calibration', 'calibration_lower_bound',
            'calibration_upper_bound') if name in candidate}
        if 'auc' in metrics.get(run_outputs.BASELINE, {}):
            aucs[task]['baseline_auc'] = metrics[run_outputs.BASELINE]['auc']
    return aucs


def slice_calibration(evaluation_uri: str) -> List[Dict]:
    """Per slice, the candidate's calibration and positives of p_click and p_conversion (the
    blessing gates the overall slice only: a small slice's ratio is mostly noise)."""
    table = run_outputs.load_metric_table(evaluation_uri)
    rows = []
    for slice_name in sorted({name for _, name in table}, key=lambda n: (n != OVERALL, n)):
        row = {'slice': slice_name}
        for task, output in (('click', features.P_CLICK), ('conversion', features.P_CONVERSION)):
            metrics = table.get((output, slice_name), {}).get(run_outputs.CANDIDATE, {})
            row[task] = metrics.get('calibration')
            row[f'{task} positives'] = metrics.get('mean_label', 0) * metrics.get(
                'example_count', 0)
        rows.append(row)
    return rows


def summarize(config: config_lib.PipelineConfig, truth_path: Optional[str] = None) -> Dict:
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(config.metadata_path))
    evaluation = run_outputs.latest_evaluation(store)
    click_column = config.feature_spec.click_label
    summary = {
        'components': component_times(store),
        'evaluation_uri': evaluation.uri if evaluation else None,
        'blessed': bool(evaluation and evaluation.blessed),
        'pushed_to': run_outputs.latest_pushed_model(store),
        'tasks': task_aucs(evaluation.uri, click_column) if evaluation else {},
        'blessing_failures': (run_outputs.blessing_failures(evaluation.uri)
                              if evaluation else []),
        'calibration_band': [row for row in (run_outputs.blessing_thresholds(evaluation.uri)
                                             if evaluation else [])
                             if row[1].startswith('calibration')],
        'slice_calibration': slice_calibration(evaluation.uri) if evaluation else [],
    }
    if truth_path:
        with open(truth_path) as f:
            bayes = json.load(f)['bayes_auc']
        for task, _, _, bayes_key in judged_tasks(click_column):
            summary['tasks'].setdefault(task, {})['bayes_auc'] = bayes[bayes_key]
    return summary


def format_summary(summary: Dict) -> str:
    lines = ['', 'Components of the latest run:']
    lines += [f"  {row['component']:<32} {row['state']:<9} {row['seconds']:8.1f} s"
              for row in summary['components']]
    lines += ['', f"Evaluation: {summary['evaluation_uri']}",
              f"Blessed: {summary['blessed']}"]
    lines += [f'  failed: {failure}' for failure in summary['blessing_failures']]
    lines += [f"Pushed model: {summary['pushed_to'] or 'nothing pushed by the latest Pusher run'}",
              '',
              '| task | AUC | baseline AUC | Bayes AUC | AUC / Bayes | calibration | interval | '
              'examples |', '|---|---|---|---|---|---|---|---|']
    for task, m in summary['tasks'].items():
        auc, bayes = m.get('auc'), m.get('bayes_auc')
        ratio = f'{auc / bayes:.3f}' if auc is not None and bayes else '-'
        lines.append(f"| {task} | {_fmt(auc)} | {_fmt(m.get('baseline_auc'))} | {_fmt(bayes)} | "
                     f"{ratio} | {_fmt(m.get('calibration'))} | {_interval(m)} | "
                     f"{int(m.get('example_count', 0))} |")
    lines += ['', 'Calibration (mean prediction / mean label) per slice; blessing needs '
              + ', '.join(f'{output} {metric} {threshold} on {slice_}'
                          for output, metric, slice_, threshold in summary['calibration_band']),
              '| slice | click | clicks | conversion | conversions |', '|---|---|---|---|---|']
    lines += [f"| {row['slice']} | {_fmt(row['click'])} | {row['click positives']:.0f} | "
              f"{_fmt(row['conversion'])} | {row['conversion positives']:.0f} |"
              for row in summary['slice_calibration']]
    return '\n'.join(lines)


def _interval(metrics: Dict) -> str:
    """The calibration's sampling interval the blessing gates on (pipeline/eval_metrics.py),
    or '-' for a task without one."""
    if 'calibration_lower_bound' not in metrics:
        return '-'
    return (f"{_fmt(metrics['calibration_lower_bound'])}-"
            f"{_fmt(metrics.get('calibration_upper_bound'))}")


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
