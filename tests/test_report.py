"""The HTML report and the Evaluator-output reader, on a real TFMA evaluation of a tiny model.

TFMA runs once (Beam DirectRunner) on the untrained model of conftest's tiny Transform run, with
that same model as baseline and a click AUC floor no untrained model reaches, so the evaluation
has baseline metrics, diffs, calibration plots and a failed threshold, as a real NOT BLESSED run.
400 rows hold about one conversion: the conversion floors are off, as in the e2e test.
"""

import base64
import io
import re

import numpy as np
import pytest
from conftest import SPEC, assert_report_shows

from pipeline import eval_metrics, run_outputs, summary
from pipeline.config import EvaluationConfig
from report import build, page, plots
from trainer import features

CLICKED = summary.judged_tasks(SPEC.click_label)[-1][2]  # the slice click = 1

ROWS = 400


@pytest.fixture(scope='module')
def tiny_evaluation(exported_model_dir, tmp_path_factory) -> str:
    """The output folder of tfma.run_model_analysis with candidate and baseline models, as the
    TFX Evaluator configures them."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    from pipeline.eval_config import make_eval_config
    from simulator.funnel import simulate
    from trainer.warmup import serialize_example

    root = tmp_path_factory.mktemp('tiny_evaluation')
    examples, _ = simulate(ROWS, seed=3)
    data = str(root / 'examples.tfrecord')
    with tf.io.TFRecordWriter(data) as writer:
        for row in examples.to_dict('records'):
            writer.write(serialize_example(row))
    eval_config = tfma.utils.update_eval_config_with_defaults(
        make_eval_config(EvaluationConfig(min_click_auc=0.99, min_conversion_auc=0.0,
                                          min_cvr_auc=0.0, calibration_plot_buckets=1000,
                                          min_calibration=0.5, max_calibration=2), SPEC),
        has_baseline=True)
    models = [tfma.default_eval_shared_model(
        eval_saved_model_path=exported_model_dir, model_name=spec.name, eval_config=eval_config)
        for spec in eval_config.model_specs]
    output = str(root / 'evaluation')
    tfma.run_model_analysis(eval_shared_model=models, eval_config=eval_config,
                            data_location=data, output_path=output)
    return output


@pytest.fixture(scope='module')
def metric_table(tiny_evaluation):
    return run_outputs.load_metric_table(tiny_evaluation)


def test_metric_table_has_every_output_slice_and_role(metric_table):
    slices = build.ordered_slices(metric_table)
    assert slices[0] == summary.OVERALL and CLICKED in slices
    assert {s.split(':')[0] for s in slices[1:]} == {'click', 'device', 'ad_position'}
    for output in features.OUTPUTS:
        for name in slices:
            roles = metric_table[(output, name)]
            assert {'auc', 'log_loss', 'calibration', 'example_count'} <= set(
                roles[run_outputs.CANDIDATE])
            # The baseline is the same model: same values, zero differences.
            assert roles[run_outputs.BASELINE]['log_loss'] == pytest.approx(
                roles[run_outputs.CANDIDATE]['log_loss'])
            assert roles[run_outputs.DIFF]['log_loss'] == pytest.approx(0.0, abs=1e-9)
    assert metric_table[(features.P_CLICK, summary.OVERALL)][run_outputs.CANDIDATE][
        'example_count'] == ROWS


def test_calibration_histograms_add_up_to_the_metrics(tiny_evaluation, metric_table):
    histograms = run_outputs.load_calibration_histograms(tiny_evaluation)
    for (output, name, role), histogram in histograms.items():
        metrics = metric_table[(output, name)][role]
        examples, labels, predictions = histogram.sum(axis=0)
        assert examples == pytest.approx(metrics['example_count'])
        assert labels / examples == pytest.approx(metrics['mean_label'], rel=1e-6)
        assert predictions / examples == pytest.approx(metrics['mean_prediction'], rel=1e-4)
    assert {key[2] for key in histograms} == {run_outputs.CANDIDATE, run_outputs.BASELINE}


def test_blessing_failures_and_thresholds_come_from_the_evaluation(tiny_evaluation):
    failures = run_outputs.blessing_failures(tiny_evaluation)
    assert failures[0].startswith('p_click auc = ')
    assert failures[0].endswith('on slice Overall (threshold: >= 0.99)')
    # No conversion in the 400 rows, where the untrained model expects P of them: the lower end
    # of the calibration's interval, sqrt(P) / z, lies above the band (pipeline/eval_metrics.py).
    overall = run_outputs.load_metric_table(tiny_evaluation)[
        (features.P_CONVERSION, summary.OVERALL)][run_outputs.CANDIDATE]
    lower, _ = eval_metrics.bounds(overall['mean_prediction'] * overall['example_count'], 0.0,
                                   EvaluationConfig().calibration_interval_z)
    assert lower > 2
    assert (f'p_conversion calibration_lower_bound = {lower:.4f} on slice Overall '
            '(threshold: <= 2)') in failures
    assert run_outputs.blessing_thresholds(tiny_evaluation) == [
        (features.P_CLICK, 'AUC', summary.OVERALL, '>= 0.99; change vs baseline >= -0.02'),
        (features.P_CLICK, 'calibration_lower_bound', summary.OVERALL, '<= 2'),
        (features.P_CLICK, 'calibration_upper_bound', summary.OVERALL, '>= 0.5'),
        (features.P_CONVERSION, 'AUC', summary.OVERALL, '>= 0; change vs baseline >= -0.02'),
        (features.P_CONVERSION, 'calibration_lower_bound', summary.OVERALL, '<= 2'),
        (features.P_CONVERSION, 'calibration_upper_bound', summary.OVERALL, '>= 0.5'),
        (features.P_CVR, 'AUC', CLICKED, '>= 0; change vs baseline >= -0.02')]


def test_summary_says_na_and_why_where_auc_and_calibration_are_undefined(tiny_evaluation,
                                                                          metric_table):
    """No conversion in the 400 rows (as in a small export's eval split): TFMA reports AUC 0 and
    the calibration is a division by zero; the summary prints n/a with the reason instead, and
    the numbers where both classes are present."""
    tasks = summary.task_aucs(tiny_evaluation, SPEC.click_label)
    assert metric_table[(features.P_CONVERSION, summary.OVERALL)][run_outputs.CANDIDATE][
        'auc'] == 0.0  # what TFMA reports
    assert 'undefined' not in tasks['click']
    assert tasks['conversion']['undefined'] == 'no conversions in the eval split'
    assert tasks['cvr (clicked)']['undefined'] == (
        f"no conversions in the eval split's {CLICKED} rows")
    text = summary.format_summary({
        'run_id': 'r', 'components': [], 'evaluation_uri': tiny_evaluation, 'blessed': False,
        'pushed_to': None, 'tasks': tasks, 'blessing_failures': [], 'calibration_band': [],
        'slice_calibration': summary.slice_calibration(tiny_evaluation, SPEC.click_label)})
    rows = {line.split(' | ')[0][2:]: line for line in text.splitlines()
            if line.startswith('| ') and not line.startswith('| task')}
    click_auc = tasks['click']['auc']
    assert rows['click'].startswith(f'| click | {click_auc:.4f} |')
    assert rows['conversion'].startswith('| conversion | n/a | n/a |')
    assert 'n/a for conversion: no conversions in the eval split' in text
    assert 'nan' not in text and '| 0.0000 |' not in text
    # The clicked slice shows p_cvr on clicked rows only; other slices p_click and p_conversion.
    clicked = rows[f'{CLICKED}: p_cvr on clicked rows']
    clicks = round(metric_table[(features.P_CLICK, CLICKED)][run_outputs.CANDIDATE][
        'example_count'])
    assert clicked == f'| {CLICKED}: p_cvr on clicked rows | | | n/a (no conversions) | 0 |'
    assert clicks > 0
    for name, row in rows.items():
        if ':' in name and name.split(':')[0] != 'click':
            click = metric_table[(features.P_CLICK, name)][run_outputs.CANDIDATE]
            has_clicks = 0 < click['mean_label'] < 1
            assert (f"{click['calibration']:.4f}" in row) == has_clicks, row
            assert row.endswith('| n/a (no conversions) | 0 |'), row


@pytest.mark.parametrize('metrics, missing', [
    ({'example_count': 10.0, 'mean_label': 0.3}, None),
    ({'example_count': 10.0, 'mean_label': 0.0}, 'no clicks'),
    ({'example_count': 10.0, 'mean_label': 1.0}, 'no negatives'),
    ({'example_count': 0.0, 'mean_label': float('nan')}, 'no rows'),
    ({}, 'no rows'),
])
def test_missing_class(metrics, missing):
    assert summary.missing_class(metrics, features.P_CLICK) == missing


def test_reliability_points_regroup_buckets_into_equal_count_bins():
    # 100 buckets of 10 examples each, prediction = 0.01 * bucket, labels = half the examples.
    histogram = np.column_stack([np.full(100, 10.0), np.full(100, 5.0),
                                 10 * 0.01 * np.arange(100)])
    points = plots.reliability_points(histogram, num_bins=4)
    np.testing.assert_allclose(points[:, 2], [250, 250, 250, 250])
    np.testing.assert_allclose(points[:, 1], 0.5)
    np.testing.assert_allclose(points[:, 0], [0.12, 0.37, 0.62, 0.87])
    # Fewer buckets than bins: no empty bins.
    assert plots.reliability_points(histogram[:2], num_bins=10).shape == (2, 3)


def test_report_page_shows_every_task_slice_and_the_decision(tiny_evaluation, metric_table,
                                                             tmp_path):
    bench = tmp_path / 'bench'
    bench.mkdir()
    (bench / 'quality.md').write_text('# Quality\n\n| system | click AUC |\n|---|---|\n'
                                      '| mmoe | 0.7113 |\n')
    html = page.render(build.build_context(
        tiny_evaluation, blessed=False, pushed_to=None, pipeline_name='funnel-mmoe',
        bench_results=str(bench), click_column=SPEC.click_label))

    assert_report_shows(html, metric_table)
    assert 'NOT BLESSED' in html
    assert 'p_click auc = ' in html and '(threshold: &gt;= 0.99)' in html
    assert 'baseline AUC' in html
    assert '<td>mmoe</td>' in html and '<td>0.7113</td>' in html  # the benchmark table
    assert 'Pareto front' not in html  # no pareto.json: no plot (the PNG count above holds)


def test_report_plots_the_pareto_front_when_the_benchmark_wrote_it(tiny_evaluation, tmp_path):
    """With bench/results/pareto.json (bench/quality.py --loss-weights), the benchmark section
    shows its plot, a valid PNG, and says which command made the points; the page builds
    without any markdown table too."""
    from PIL import Image

    from bench import tradeoffs

    aucs = {('MMoE + ESMM', '1:1'): (0.682, 0.783), ('MMoE + ESMM', '4:1'): (0.690, 0.760),
            ('single-task + ESMM', '1:1'): (0.683, 0.803), ('PLE + ESMM', '1:1'): (0.680, 0.790)}
    front = tradeoffs.non_dominated(list(aucs.values()))
    points = [{'system': system, 'weights': weights, 'seeds': 1, 'click_auc': click,
               'conversion_auc': conversion, 'pareto': on_front}
              for ((system, weights), (click, conversion)), on_front in zip(aucs.items(), front)]
    assert front == [False, True, True, False]
    tradeoffs.write_pareto_json(str(tmp_path / build.PARETO_JSON), points, {
        'command': 'python -m bench.quality --loss-weights 4:1,1:1', 'rows': 100000})
    html = page.render(build.build_context(
        tiny_evaluation, blessed=False, pushed_to=None, pipeline_name='funnel-mmoe',
        bench_results=str(tmp_path), click_column=SPEC.click_label))

    section = html.split('<h3 id="pareto">', 1)[1]
    assert 'python -m bench.quality --loss-weights 4:1,1:1' in section and '100,000 rows' in section
    data = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="Pareto front">',
                     section).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.verify()
    assert image.format == 'PNG' and min(image.size) > 300


def test_metric_cells():
    assert page.metric(0.71234) == '0.7123'
    assert page.metric(-0.001, signed=True) == '-0.0010'
    assert page.metric(float('nan')) == page.metric(None) == '-'
    assert page.count(10211.0) == '10,211'


def test_report_without_a_run_says_so_and_creates_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv('FUNNEL_OUTPUT_ROOT', str(tmp_path / 'outputs'))
    assert build.main([]) == 2
    assert 'run the pipeline (make run) before making the report' in caplog.text
    assert not (tmp_path / 'outputs').exists()
