"""Renders the latest evaluation into one self-contained HTML page (what `make report` calls).

    python -m report.build [--output outputs/report/index.html] [--bench-results bench/results]

The page holds the blessing decision (with the failed thresholds when not blessed), per task and
slice the candidate's AUC / log loss / calibration next to the baseline's, reliability diagrams
from TFMA's calibration plots (and the Trainer's before / after calibration diagrams of the
validation split, shipped in the model), an AUC-by-slice chart and the benchmark tables and
Pareto front, if any.
"""

import argparse
import datetime
import glob
import json
import logging
import math
import os
import sys
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from ml_metadata import metadata_store
from tfx.orchestration.metadata import sqlite_metadata_connection_config

from pipeline import config as config_lib
from pipeline import run_log, run_outputs, summary
from report import page, plots
from trainer import features
from trainer.calibration import HISTOGRAMS_FILE

DEFAULT_BENCH_RESULTS = os.path.join(config_lib.REPO_ROOT, 'bench', 'results')
PARETO_JSON = 'pareto.json'  # written by bench/quality.py --loss-weights beside its tables


def ordered_slices(table: run_outputs.MetricTable) -> List[str]:
    """Every slice of the evaluation, the overall one first."""
    return sorted({name for _, name in table}, key=lambda name: (name != summary.OVERALL, name))


def auc_is_defined(metrics: Dict[str, float]) -> bool:
    """AUC needs both classes; TFMA reports 0 on a slice without positives."""
    return 0.0 < metrics.get('mean_label', 0.0) < 1.0


def task_rows(table: run_outputs.MetricTable, output: str, judged_on: str,
              slices: List[str]) -> List[Dict]:
    """One row per slice of an output's metrics: candidate, baseline and their difference."""
    rows = []
    for name in slices:
        metrics = table.get((output, name), {})
        candidate = metrics.get(run_outputs.CANDIDATE, {})
        positives = (round(candidate['mean_label'] * candidate['example_count'])
                     if {'mean_label', 'example_count'} <= set(candidate) else None)
        rows.append({'slice': name, 'judged': name == judged_on, 'positives': positives,
                     'auc_defined': auc_is_defined(candidate), 'candidate': candidate,
                     'baseline': metrics.get(run_outputs.BASELINE, {}),
                     'diff': metrics.get(run_outputs.DIFF, {})})
    return rows


def _aucs(tasks: List[Dict], role: str) -> Dict[str, List[float]]:
    return {task['output']: [row[role].get('auc', math.nan) if row['auc_defined'] else math.nan
                             for row in task['rows']] for task in tasks}


def build_context(evaluation_uri: str, blessed: bool, pushed_to: Optional[str],
                  pipeline_name: str, bench_results: str, click_column: str) -> Dict:
    """Everything the page shows about one evaluation; `click_column` is the raw click label
    (the feature spec's)."""
    table = run_outputs.load_metric_table(evaluation_uri)
    histograms = run_outputs.load_calibration_histograms(evaluation_uri)
    slices = ordered_slices(table)
    has_baseline = any(run_outputs.BASELINE in roles for roles in table.values())
    fitted = calibration_histograms(
        run_outputs.model_locations(evaluation_uri).get(run_outputs.CANDIDATE))
    tasks = []
    for task, output, judged_on, _ in summary.judged_tasks(click_column):
        curves = {role: histograms[(output, judged_on, role)]
                  for role in (run_outputs.CANDIDATE, run_outputs.BASELINE)
                  if (output, judged_on, role) in histograms}
        fit = fitted.get(output)
        tasks.append({
            'name': task, 'output': output, 'judged_on': judged_on,
            'rows': task_rows(table, output, judged_on, slices),
            'calibration_png': plots.png_data_uri(
                plots.reliability_diagram(curves, f'{output} on {judged_on}')) if curves else None,
            'calibration_fit_png': plots.png_data_uri(plots.reliability_diagram(
                {'after': fit['after'], 'before': fit['before']},
                f'{output}: validation split, before / after calibration')) if fit else None,
        })
    auc_chart = plots.auc_by_slice(_aucs(tasks, 'candidate'), slices,
                                   _aucs(tasks, 'baseline') if has_baseline else None)
    return {
        'generated': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'pipeline_name': pipeline_name,
        'evaluation_uri': evaluation_uri,
        'models': run_outputs.model_locations(evaluation_uri),
        'blessed': blessed,
        'failures': run_outputs.blessing_failures(evaluation_uri),
        'thresholds': run_outputs.blessing_thresholds(evaluation_uri),
        'pushed_to': pushed_to,
        'has_baseline': has_baseline,
        'tasks': tasks,
        'auc_chart_png': plots.png_data_uri(auc_chart),
        'bench_results': bench_results,
        'bench_tables': [(os.path.basename(path), page.markdown_file(path))
                         for path in sorted(glob.glob(os.path.join(bench_results, '*.md')))],
        'pareto': pareto_plot(bench_results),
    }


def calibration_histograms(model_dir: Optional[str]) -> Dict[str, Dict[str, np.ndarray]]:
    """The Trainer's before/after reliability data of the validation split, shipped in the
    candidate model (trainer/calibration.py); empty for a model trained without calibration."""
    path = os.path.join(model_dir or '', HISTOGRAMS_FILE)
    if not model_dir or not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return {output: {stage: np.array(rows).reshape(-1, 3) for stage, rows in stages.items()}
                for output, stages in json.load(f).items()}


def pareto_plot(bench_results: str) -> Optional[Dict]:
    """The benchmark's Pareto front (pareto.json, bench/tradeoffs.py) as a PNG data URI with
    what made it, or None when the benchmark has not written one."""
    path = os.path.join(bench_results, PARETO_JSON)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        found = json.load(f)
    return {'png': plots.png_data_uri(plots.pareto_front(found['points'])), 'file': path,
            'command': found.get('command'), 'rows': found.get('rows')}


def build_report(config: config_lib.PipelineConfig, output_path: str,
                 bench_results: str = DEFAULT_BENCH_RESULTS) -> str:
    """Writes the report of the latest evaluation in ML Metadata to output_path."""
    evaluation = None
    if os.path.isfile(config.metadata_path):  # opening a missing store would create it
        store = metadata_store.MetadataStore(
            sqlite_metadata_connection_config(config.metadata_path))
        evaluation = run_outputs.latest_evaluation(store)
    if evaluation is None:
        raise FileNotFoundError(f'No evaluation in {config.metadata_path}: run the pipeline '
                                '(make run) before making the report.')
    pushed = run_outputs.latest_pushed_model(store)
    html = page.render(build_context(evaluation.uri, evaluation.blessed, pushed,
                                     config.pipeline_name, bench_results,
                                     config.feature_spec.click_label))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, 'w') as f:
        f.write(html)
    return output_path


def main(argv: Optional[List[str]] = None) -> int:
    run_log.configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', help='the HTML file to write (default: '
                        '<output_root>/report/index.html, i.e. outputs/report/index.html)')
    parser.add_argument('--bench-results', default=DEFAULT_BENCH_RESULTS,
                        help='folder of benchmark tables (*.md) to include (default: %(default)s)')
    args = parser.parse_args(argv)
    try:
        config = config_lib.load_config()
        path = build_report(config, args.output or config.report_path, args.bench_results)
    except (config_lib.ConfigError, features.FeatureSpecError, FileNotFoundError) as e:
        logging.error('%s', e)
        return 2
    logging.info('Report of %s written to %s', config.pipeline_name, os.path.abspath(path))
    return 0


if __name__ == '__main__':
    sys.exit(main())
