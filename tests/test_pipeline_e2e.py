"""The whole pipeline, for real (LocalDagRunner, Beam, SQLite MLMD), on a few thousand rows.

Two runs share one output folder: the first trains and pushes; the second, unchanged, must
reuse the cached steps and evaluate against the model the first one blessed. The HTML report
is made from the second run's evaluation.
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from conftest import RAW_LABELS, assert_report_shows, run_pipeline
from pipeline import run_outputs, summary
from pipeline.config import EvaluationConfig, ModelConfig, load_config
from report import build
from simulator.funnel import simulate, write_dataset
from trainer import features
from trainer.features import RAW_SIGNATURE
from trainer.warmup import serialize_example

pytestmark = pytest.mark.slow

ROWS = 20_000
EXPECTED_COMPONENTS = {'CsvExampleGen', 'StatisticsGen', 'schema_importer', 'ExampleValidator',
                       'AnomaliesGate', 'Transform', 'Trainer', 'ServingContractCheck',
                       'latest_blessed_model_resolver', 'Evaluator', 'Pusher'}


@pytest.fixture(scope='module')
def pipeline_config(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e')
    write_dataset(root / 'data', rows=ROWS, seed=1)
    return load_config(
        env={}, data_root=str(root / 'data' / 'examples'), output_root=str(root / 'outputs'),
        model=ModelConfig(train_steps=200, steps_per_validation=100, eval_steps=5,
                          batch_size=256),
        # A few dozen conversions in the eval split: judge the mechanics, not CVR quality.
        evaluation=EvaluationConfig(min_conversion_auc=0.0, min_cvr_auc=0.0))


def _run(config):
    run_pipeline(config)
    return summary.summarize(config)


@pytest.fixture(scope='module')
def first_run(pipeline_config):
    return _run(pipeline_config)


@pytest.fixture(scope='module')
def second_run(pipeline_config, first_run):
    return _run(pipeline_config)


def _pushed_versions(config):
    return sorted(os.listdir(config.serving_model_dir))


def test_every_component_succeeds(first_run):
    states = {row['component']: row['state'] for row in first_run['components']}
    assert set(states) == EXPECTED_COMPONENTS
    assert set(states.values()) == {'COMPLETE'}


def test_blessed_model_is_pushed_to_a_versioned_directory(pipeline_config, first_run):
    assert first_run['blessed']
    versions = _pushed_versions(pipeline_config)
    assert len(versions) == 1 and versions[0].isdigit()
    assert os.path.isfile(os.path.join(pipeline_config.serving_model_dir, versions[0],
                                       'saved_model.pb'))
    assert first_run['pushed_to'] == os.path.join(pipeline_config.serving_model_dir, versions[0])


def test_evaluation_has_every_task_on_every_slice(first_run):
    slices = dict(tfma.load_eval_result(first_run['evaluation_uri']).slicing_metrics)
    assert () in slices and (('click', 1),) in slices
    assert {key[0][0] for key in slices if key} >= {'device', 'ad_position', 'click'}
    for slice_key, metrics in slices.items():
        for output in features.OUTPUTS:
            assert {'auc', 'log_loss', 'calibration', 'example_count'} <= set(metrics[output][''])
    assert first_run['tasks']['click']['auc'] > 0.6


def test_pushed_model_serves_both_signatures(pipeline_config, first_run):
    model = tf.saved_model.load(first_run['pushed_to'])
    examples, _ = simulate(64, seed=99)  # fresh rows: ids the model may never have seen
    raw = examples.drop(columns=list(RAW_LABELS))

    serialized = [serialize_example(row) for row in raw.to_dict('records')]
    from_examples = model.signatures['serving_default'](examples=tf.constant(serialized))
    from_raw = model.signatures[RAW_SIGNATURE](**{
        name: tf.constant(raw[name].to_numpy(
            dtype=np.float32 if raw[name].dtype == float else None))
        for name in raw.columns})

    for outputs in (from_examples, from_raw):
        assert set(outputs) == set(features.OUTPUTS)
        p_click, p_conversion = outputs['p_click'].numpy(), outputs['p_conversion'].numpy()
        for name in features.OUTPUTS:
            values = outputs[name].numpy()
            assert values.shape == (64,) and np.all((values >= 0) & (values <= 1))
        assert np.all(p_conversion <= p_click)
    for name in features.OUTPUTS:
        np.testing.assert_allclose(from_examples[name], from_raw[name], rtol=1e-5)


def test_unchanged_rerun_reuses_cache_and_compares_with_baseline(second_run):
    states = {row['component']: row['state'] for row in second_run['components']}
    for cached in ('CsvExampleGen', 'StatisticsGen', 'Transform', 'Trainer'):
        assert states[cached] == 'CACHED', states
    assert states['Evaluator'] == 'COMPLETE'
    # The same model against itself: the baseline's AUC is the candidate's.
    click = second_run['tasks']['click']
    assert click['baseline_auc'] == pytest.approx(click['auc'], abs=1e-6)


def test_report_of_the_rerun_compares_with_the_baseline(pipeline_config, second_run, tmp_path):
    path = build.build_report(pipeline_config, str(tmp_path / 'report' / 'index.html'),
                              bench_results=str(tmp_path / 'no-bench-results'))
    with open(path) as f:
        html = f.read()
    assert_report_shows(html, run_outputs.load_metric_table(second_run['evaluation_uri']))
    assert second_run['evaluation_uri'] in html and second_run['pushed_to'] in html
    assert '>BLESSED<' in html and 'Failed thresholds' not in html
    # The same model against itself: every AUC difference is zero.
    deltas = re.findall(r'<td class="(?:worse|better|)">([^<]*)</td>', html)
    assert len(deltas) >= len(features.OUTPUTS) and set(deltas) <= {'+0.0000', '-0.0000'}
