"""Prints what a run did, read back from ML Metadata and the Evaluator's output.

    python -m pipeline.summary [--truth data/.../truth/summary.json] [--run-id ID]

`make run` prints the summary of the run it started (pipeline/local_runner.py --summary); this
command shows the newest run's, or that of a run id.

Shows each component's state and duration, where the evaluation and the pushed model are, the
blessing decision, and per-task AUC next to the simulator's Bayes AUC (the best possible AUC of
each task, from the true probabilities) when a truth summary is given.
"""

import argparse
import json
import math
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


# What each model output's label counts, for the reason a metric is undefined.
POSITIVES = {features.P_CLICK: 'clicks', features.P_CONVERSION: 'conversions',
             features.P_CVR: 'conversions'}


def missing_class(metrics: Dict[str, float], output: str) -> Optional[str]:
    """'no clicks', 'no conversions', 'no negatives' or 'no rows' when AUC and calibration of
    `output` are undefined on a slice with these metrics (AUC needs both classes, calibration
    some positives); None when they are defined."""
    count = metrics.get('example_count', 0)
    positives = round(metrics.get('mean_label', 0) * count) if count else 0
    if not count:
        return 'no rows'
    if not positives:
        return f'no {POSITIVES[output]}'
    return 'no negatives' if positives == count else None


def undefined_reason(metrics: Dict[str, float], output: str, slice_name: str) -> Optional[str]:
    """missing_class with the rows it is about: 'no conversions in the eval split'."""
    missing = missing_class(metrics, output)
    if missing is None:
        return None
    rows = 'the eval split' if slice_name == OVERALL else f"the eval split's {slice_name} rows"
    return f'{missing} in {rows}'


def component_times(store: metadata_store.MetadataStore,
                    run: Optional[metadata_store_pb2.Context]) -> List[Dict]:
    """State and wall time of every component execution of the run."""
    if run is None:
        return []
    node_type_id = store.get_context_type('node').id
    rows = []
    for execution in sorted(store.get_executions_by_context(run.id),
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
    """Candidate metrics of each task on the slice it is judged on, the baseline's AUC, and why
    AUC and calibration are undefined where they are ('undefined')."""
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
        reason = undefined_reason(candidate, output, slice_name)
        if reason:
            aucs[task]['undefined'] = reason
    return aucs


def slice_calibration(evaluation_uri: str, click_column: str) -> List[Dict]:
    """Per slice, the candidate's calibration and positives of p_click and p_conversion; on the
    clicked slice (click = 1) only p_cvr's, the one question that slice answers (the blessing
    gates the overall slice only: a small slice's ratio is mostly noise). A calibration that is
    undefined is None, with missing_class's reason in '<task> undefined'."""
    table = run_outputs.load_metric_table(evaluation_uri)
    clicked = judged_tasks(click_column)[-1][2]
    rows = []
    for slice_name in sorted({name for _, name in table}, key=lambda n: (n != OVERALL, n)):
        row = {'slice': slice_name}
        outputs = ((('cvr', features.P_CVR),) if slice_name == clicked else
                   (('click', features.P_CLICK), ('conversion', features.P_CONVERSION)))
        for task, output in outputs:
            metrics = table.get((output, slice_name), {}).get(run_outputs.CANDIDATE, {})
            missing = missing_class(metrics, output)
            row[task] = None if missing else metrics.get('calibration')
            row[f'{task} positives'] = (round(metrics['mean_label'] * metrics['example_count'])
                                        if metrics.get('example_count') else 0)
            if missing:
                row[f'{task} undefined'] = missing
        rows.append(row)
    return rows


def summarize(config: config_lib.PipelineConfig, truth_path: Optional[str] = None,
              run_id: Optional[str] = None) -> Dict:
    """The summary of run `run_id` (the newest run when None) of the configured pipeline."""
    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(config.metadata_path))
    run = run_outputs.run_context(store, run_id)
    if run_id is not None and run is None:
        raise ValueError(f'No run {run_id!r} in {config.metadata_path}.')
    executions = store.get_executions_by_context(run.id) if run else []
    outputs = run_outputs.output_artifacts(store, executions) if executions else {}
    evaluation = run_outputs.run_evaluation(outputs)
    click_column = config.feature_spec.click_label
    summary = {
        'run_id': run.name if run else None,
        'components': component_times(store, run),
        'evaluation_uri': evaluation.uri if evaluation else None,
        'blessed': bool(evaluation and evaluation.blessed),
        'pushed_to': run_outputs.run_pushed_model(outputs),
        'tasks': task_aucs(evaluation.uri, click_column) if evaluation else {},
        'blessing_failures': (run_outputs.blessing_failures(evaluation.uri)
                              if evaluation else []),
        'calibration_band': [row for row in (run_outputs.blessing_thresholds(evaluation.uri)
                                             if evaluation else [])
                             if row[1].startswith('calibration')],
        'slice_calibration': (slice_calibration(evaluation.uri, click_column)
                              if evaluation else []),
    }
    if truth_path:
        with open(truth_path) as f:
            bayes = json.load(f)['bayes_auc']
        for task, _, _, bayes_key in judged_tasks(click_column):
            summary['tasks'].setdefault(task, {})['bayes_auc'] = bayes[bayes_key]
    return summary


def format_summary(summary: Dict, components: bool = True) -> str:
    """The summary as text; without the components' table when `components` is False (the run
    printed a line per component as it went)."""
    lines = ['']
    if components:
        lines += [f"Components of run {summary['run_id']}:"]
        lines += [f"  {row['component']:<32} {row['state']:<9} {row['seconds']:8.1f} s"
                  for row in summary['components']]
        lines += ['']
    lines += [f"Evaluation: {summary['evaluation_uri'] or 'none in this run'}",
              f"Blessed: {summary['blessed']}"]
    lines += [f'  failed: {failure}' for failure in summary['blessing_failures']]
    lines += [f"Pushed model: {summary['pushed_to'] or 'nothing pushed by this run'}"]
    if not summary['tasks']:
        return '\n'.join(lines)
    lines += ['', '| task | AUC | baseline AUC | Bayes AUC | AUC / Bayes | calibration | '
              'interval | examples |', '|---|---|---|---|---|---|---|---|']
    for task, m in summary['tasks'].items():
        defined = 'undefined' not in m
        auc, bayes = m.get('auc') if defined else None, m.get('bayes_auc')
        ratio = f'{auc / bayes:.3f}' if auc is not None and bayes else '-'
        lines.append(f"| {task} | {_fmt(auc, defined)} | {_fmt(m.get('baseline_auc'), defined)} "
                     f"| {_fmt(bayes)} | {ratio} | {_fmt(m.get('calibration'), defined)} | "
                     f"{_interval(m) if defined else 'n/a'} | {int(m.get('example_count', 0))} |")
    lines += [f"n/a for {task}: {m['undefined']} (AUC needs both classes, calibration some "
              'positives)' for task, m in summary['tasks'].items() if 'undefined' in m]
    lines += ['', 'Calibration (mean prediction / mean label) per slice; blessing needs '
              + ', '.join(f'{output} {metric} {threshold} on {slice_}'
                          for output, metric, slice_, threshold in summary['calibration_band']),
              '| slice | click | clicks | conversion | conversions |', '|---|---|---|---|---|']
    for row in summary['slice_calibration']:
        if 'cvr' in row:  # the clicked slice: p_cvr on clicked rows only
            lines.append(f"| {row['slice']}: p_cvr on clicked rows | | | "
                         f"{_calibration(row, 'cvr')} | {row['cvr positives']} |")
        else:
            lines.append(f"| {row['slice']} | {_calibration(row, 'click')} | "
                         f"{row['click positives']} | {_calibration(row, 'conversion')} | "
                         f"{row['conversion positives']} |")
    return '\n'.join(lines)


def _calibration(row: Dict, task: str) -> str:
    """A slice's calibration of a task, or 'n/a' with the reason in short."""
    if f'{task} undefined' in row:
        return f"n/a ({row[f'{task} undefined']})"
    return _fmt(row[task])


def _interval(metrics: Dict) -> str:
    """The calibration's sampling interval the blessing gates on (pipeline/eval_metrics.py),
    or '-' for a task without one."""
    if 'calibration_lower_bound' not in metrics:
        return '-'
    return (f"{_fmt(metrics['calibration_lower_bound'])}-"
            f"{_fmt(metrics.get('calibration_upper_bound'))}")


def _fmt(value, defined: bool = True) -> str:
    if not defined:
        return 'n/a'
    if value is None or math.isnan(value):
        return '-'
    return f'{value:.4f}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--truth', help="the simulator's truth/summary.json, for Bayes AUCs")
    parser.add_argument('--run-id', help='the run to summarize (default: the newest)')
    args = parser.parse_args(argv)
    print(format_summary(summarize(config_lib.load_config(), args.truth, args.run_id)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
