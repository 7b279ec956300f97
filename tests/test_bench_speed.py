"""The performance benchmark's parts (bench/speed.py, bench/plain_script.py): the plain script
does the Transform's work (same z-scores, vocabulary and OOV buckets), peak memory is measured
over a child process, and the targets are judged from the figures."""

import math
import sys

import numpy as np
import pytest
from conftest import SPEC, VOCABULARY

from bench import plain_script, speed
from trainer import features
from trainer.config import VocabularyConfig


def _fitted(frame):
    vocabulary = VocabularyConfig(**VOCABULARY)
    frame = frame.astype({name: str for name in SPEC.categorical_names})
    fitted = plain_script.fit_preprocessing(frame, SPEC, vocabulary)
    return frame, fitted, vocabulary


def test_plain_script_preprocessing_matches_the_transform(transform_run):
    """On the tiny real Transform's train rows: same z-scores and missing indicators, the same
    vocabularies, and the same rows in and out of them."""
    frame, fitted, vocabulary = _fitted(transform_run.train_df)
    arrays = plain_script.apply_preprocessing(frame, fitted, SPEC, vocabulary.num_oov_buckets)
    transformed = {name: np.array([row[name] for row in transform_run.train_rows])
                   for name in transform_run.train_rows[0]}
    for name in SPEC.dense_names:
        np.testing.assert_allclose(arrays[name], transformed[name], atol=1e-5, err_msg=name)
    missing = features.missing_indicator_name('item_hist_ctr')
    np.testing.assert_array_equal(arrays[missing], transformed[missing])
    for name in SPEC.categorical_names:
        # TFT keeps one placeholder entry when no id reaches the threshold (item_id here).
        tft_vocabulary = {value.decode() for value in
                          transform_run.tft_output.vocabulary_by_name(name)} & set(frame[name])
        assert set(fitted[name]) == tft_vocabulary, name
        np.testing.assert_array_equal(arrays[name] < len(fitted[name]),
                                      frame[name].isin(tft_vocabulary), err_msg=name)
        np.testing.assert_array_equal(
            frame[name].isin(tft_vocabulary),
            transformed[name] < transform_run.tft_output.vocabulary_size_by_name(name),
            err_msg=name)
    np.testing.assert_array_equal(arrays[features.CLICK_LABEL], transformed[features.CLICK_LABEL])


def test_unseen_and_rare_ids_fall_in_the_oov_buckets(transform_run):
    frame, fitted, vocabulary = _fitted(transform_run.train_df)
    probe = transform_run.probe_df.astype({name: str for name in SPEC.categorical_names})
    ids = plain_script.apply_preprocessing(probe, fitted, SPEC, vocabulary.num_oov_buckets)
    size = len(fitted['user_id'])
    users = dict(zip(probe['user_id'], ids['user_id']))
    assert users['u_hot'] < size and users['u_warm'] < size
    for user in ('u_rare', 'u_never_seen'):  # below the frequency threshold, and unseen
        assert size <= users[user] < size + vocabulary.num_oov_buckets, user


def test_train_steps_cover_the_epochs_of_the_train_split():
    assert speed.train_steps(100_000, 2, 1024) == math.ceil(80_000 * 2 / 1024) == 157
    assert speed.train_steps(10, 1, 1024) == 1


def test_peak_memory_is_measured_over_the_child(tmp_path):
    hold = ('import time; block = bytearray(400 * 2**20); '
            'block[::4096] = b"x" * len(block[::4096]); time.sleep(1.5)')
    result = speed.timed_process([sys.executable, '-c', hold], {}, str(tmp_path / 'log'))
    assert result['peak_gb'] >= 0.38 and result['seconds'] >= 1.5


def test_a_failing_step_names_its_log_and_shows_its_end(tmp_path):
    fail = [sys.executable, '-c', 'print("the cause"); raise SystemExit(3)']
    with pytest.raises(RuntimeError, match='(?s)exit 3.*log.*the cause'):
        speed.timed_process(fail, {}, str(tmp_path / 'log'))
    run = speed.timed_process(fail, {}, str(tmp_path / 'log'), check=False)
    assert run['exit'] == 3 and 'the cause' in run['log_tail']


def test_a_failed_beam_variant_is_reported_with_what_it_completed():
    size = {'rows': 1000, 'pipeline': {'components': {'CsvExampleGen': 10.0, 'Transform': 20.0}}}
    variants = {'portable': {'components': {'CsvExampleGen': 5.0}, 'peak_gb': 1.0, 'exit': -6,
                             'log_tail': 'a line\nFatal Python error: Aborted\n'}}
    lines = speed.beam_table(size, variants)
    assert '| CsvExampleGen | portable | 200 | 2.00 |' in lines
    assert not any('| Transform | portable' in line for line in lines)
    assert ('portable: the process ended with exit -6 (the components it completed are in the '
            'table); the last line of its log: `Fatal Python error: Aborted`.') in lines


def _size(rows, pipeline_seconds, script_seconds, peak_gb):
    return {'rows': rows, 'pipeline': {'seconds': pipeline_seconds, 'peak_gb': peak_gb},
            'script': {'seconds': script_seconds}}


@pytest.mark.parametrize('pipeline_seconds, verdict', [(390, 'met'), (410, 'MISSED')])
def test_targets_are_judged_from_the_figures(pipeline_seconds, verdict):
    sizes = [_size(100_000, 100, 50, 2.0), _size(1_000_000, pipeline_seconds, 100, 9.0)]
    sizes[-1]['pipeline']['components'] = {'Trainer': 70.0, 'Evaluator': 71.0}
    throughput = {speed.CEILING: 100_000.0, speed.TRAINER_INPUT: 89_000.0}
    serving = {64: {'signature p50': 3.0, 'bare model p50': 2.0}}
    sizes[-1]['pipeline']['auc'] = AUCS
    other = {'seconds': 300.0, 'components': {'Trainer': 60.0}, 'auc': AUCS}
    lines = speed.target_lines(sizes, throughput, serving, other)
    assert lines[0].startswith(f'- {verdict}: pipeline at 1,000,000 rows within 4x')
    assert lines[1].startswith('- MISSED: peak memory under 8 GB: 9.00 GB')
    assert lines[2] == '- MISSED: Evaluator no slower than the Trainer: 71 s vs 70 s.'
    assert lines[3].startswith('- met: wall time grows no faster than linearly')
    assert lines[4].startswith('- MISSED: Trainer input pipeline at least 0.9')
    assert '0.89' in lines[4]
    assert lines[5].startswith('- met: serving signature at batch 64 within 2x')
    assert '1.50x' in lines[5]
    assert lines[6].startswith('- MISSED: the default materialize_transform=false is the faster '
                               'at 1,000,000 rows')


AUCS = {'click': 0.72, 'conversion': 0.83, 'cvr (clicked)': 0.76}


@pytest.mark.parametrize('trainer_seconds, click_auc, verdict', [
    (130.0, 0.7185, 'met'),     # the other setting slower, AUCs within the seed noise
    (130.0, 0.7100, 'MISSED'),  # slower, but the default's click AUC 0.01 higher: beyond it
    (10.0, 0.72, 'MISSED'),     # the other setting faster
])
def test_the_default_materialize_setting_must_be_the_faster_with_the_same_aucs(
        trainer_seconds, click_auc, verdict):
    """Part 5 judges the default model.materialize_transform (false) against the other run."""
    assert speed.DEFAULT_MATERIALIZE is False
    assert speed.OTHER_MATERIALIZE == {'FUNNEL_MODEL_MATERIALIZE_TRANSFORM': 'true'}
    size = {'rows': 1_000_000, 'pipeline': {'seconds': 250.0, 'peak_gb': 2.0,
                                            'auc': {**AUCS, 'click': click_auc},
                                            'components': {'Transform': 40.0, 'Trainer': 70.0}}}
    other = {'seconds': 300.0, 'peak_gb': 1.5, 'auc': AUCS,
             'components': {'Transform': 90.0, 'Trainer': trainer_seconds}}
    line = speed.materialize_target_line(size, other)
    assert line.startswith(f'- {verdict}: the default materialize_transform=false is the faster '
                           'at 1,000,000 rows'), line
    assert (f'Transform + Trainer 110 s vs {90 + trainer_seconds:.0f} s with '
            f'materialize_transform=true ({(90 + trainer_seconds) / 110:.2f}x), end to end 250 s '
            'vs 300 s') in line
    assert f'click {click_auc - 0.72:+.4f}, conversion +0.0000' in line
    assert speed.materialize_table(size, other)[2:] == [
        f'| materialize_transform=false (default) | 40.0 | 70.0 | 110.0 | 250 | 2.00 | '
        f'{click_auc:.4f} / 0.8300 / 0.7600 |',
        f'| materialize_transform=true | 90.0 | {trainer_seconds:.1f} | '
        f'{90 + trainer_seconds:.1f} | 300 | 1.50 | 0.7200 / 0.8300 / 0.7600 |']


def test_stock_tfx_targets_and_table_name_each_component():
    """Stock TFX beside the pipeline: the end-to-end speed-up at the largest size that ran
    both, and the components slower than their counterpart named."""
    size = _size(1_000_000, 300, 100, 2.0)
    size['pipeline']['components'] = {'CsvExampleGen': 40.0, 'SchemaImporter': 0.1,
                                      'Transform': 90.0, 'AnomaliesGate': 2.0}
    size['stock'] = {'seconds': 650.0, 'peak_gb': 3.0, 'components': {
        'CsvExampleGen': 120.0, 'ImportSchemaGen': 0.1, 'Transform': 80.0}}
    assert speed.stock_target_lines([size]) == [
        '- met: pipeline at 1,000,000 rows at least 2x faster than stock TFX end to end: 2.17x.',
        '- MISSED: each component no slower than its stock TFX counterpart: slower: Transform '
        '90 s vs 80 s.']
    assert speed.stock_table([size])[2:] == [
        '| 1,000,000 | CsvExampleGen | 40.0 | 120.0 | 3.00 |',
        '| 1,000,000 | AnomaliesGate | 2.0 | - | - |',
        '| 1,000,000 | Transform | 90.0 | 80.0 | 0.89 |',
        '| 1,000,000 | whole run (process wall, peak GB 2.0 / 3.0) | 300 | 650 | 2.17 |']
    assert speed.stock_target_lines([_size(10_000, 10, 5, 1.0)]) == []


def test_the_report_renders_every_section():
    """The 45-minute run ends with this: the tables and the 1-billion-row scaling from the
    figures of two sizes (the slope between them, so the fixed cost drops out)."""
    import argparse

    from pipeline.config import load_config

    def size(rows, transform_seconds):
        pipeline = {'seconds': 100 + transform_seconds, 'peak_gb': 2.0,
                    'components': {'CsvExampleGen': 5.0, 'Transform': transform_seconds,
                                   'Trainer': 30.0, 'Pusher': 0.1},
                    'auc': {'click': 0.7, 'conversion': 0.8}}
        script = {'seconds': 50.0, 'peak_gb': 1.0, 'stage_seconds': {'read': 1.0, 'train': 40.0},
                  'auc': {'p_click': 0.7, 'p_conversion': 0.8}}
        return {'rows': rows, 'steps': 10, 'pipeline': pipeline, 'script': script,
                'config': load_config()}

    sizes = [size(100_000, 20.0), size(1_000_000, 110.0)]  # Transform: 100 s per 1M more rows
    sizes[-1]['stock'] = {'seconds': 400.0, 'peak_gb': 3.0, 'components': {'Transform': 220.0}}
    multi, portable = list(speed.BEAM_VARIANTS)
    variants = {multi: {'seconds': 60.0, 'peak_gb': 3.0, 'exit': 0, 'components': {
                    'CsvExampleGen': 2.5, 'StatisticsGen': 1.0, 'Transform': 55.0}},
                portable: {'seconds': 150.0, 'peak_gb': 2.5, 'exit': 0, 'components': {
                    'CsvExampleGen': 10.0, 'StatisticsGen': 4.0, 'Transform': 220.0}}}
    throughput = {speed.CEILING: 100_000.0, speed.TRAINER_INPUT: 85_000.0}
    serving = {batch: {'signature p50': 2.0, 'signature p99': 3.0, 'bare model p50': 1.0,
                       'bare model p99': 2.0} for batch in speed.SERVING_BATCHES}
    off = {'seconds': 180.0, 'peak_gb': 1.5, 'components': {'Transform': 50.0, 'Trainer': 35.0},
           'auc': {'click': 0.7, 'conversion': 0.8}}
    text = speed.report(sizes, variants, throughput, serving, off,
                        argparse.Namespace(command='python -m bench.speed', epochs=2), 60.0)
    for heading in ('## Whole pipeline vs plain script', '## Seconds per component',
                    '## The pipeline against stock TFX',
                    '## Per-row cost, scaled to 1 billion impressions a day',
                    '## Trainer input pipeline', '## Beam components', '## Serving latency',
                    '## The Transform materializing or not, 1,000,000 rows', '## Targets'):
        assert heading in text
    # 100 core-seconds per 1M rows -> 100,000 s = 28 core-hours for 1e9 rows.
    assert '| Transform | 1 | 100 | 28 | 28 |' in text
    # Rows/s of the Transform (1M rows) per runner, and the ratio to the in-process runner.
    assert '| Transform | in-process DirectRunner (default) | 9,091 | 1.00 |' in text
    assert f'| Transform | {multi} | 18,182 | 2.00 |' in text
    assert f'| Transform | {portable} | 4,545 | 0.50 |' in text
    assert f'Peak memory up to the Transform, {portable}: 2.50 GB.' in text
    assert '| 64 | 2.00 | 3.00 | 1.00 | 2.00 | 2.00 |' in text
    assert '| 1,000,000 | Transform | 110.0 | 220.0 | 2.00 |' in text


def test_stock_tfx_is_tfx_s_own_components_and_metrics(tmp_path):
    """bench/stock_tfx.py: every node a TFX component class as shipped (no project executor),
    the Evaluator on TFMA's own metric classes, the same module file and training settings."""
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from bench import stock_tfx

    config = stock_tfx.stock_config({'FUNNEL_OUTPUT_ROOT': str(tmp_path)})
    pipeline = stock_tfx.create_stock_pipeline(
        config, sqlite_metadata_connection_config(config.metadata_path))
    assert {type(node).__module__.split('.')[0] for node in pipeline.components} == {'tfx'}
    assert {node.id for node in pipeline.components} == {
        'CsvExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator', 'Transform',
        'Trainer', 'latest_blessed_model_resolver', 'Evaluator', 'Pusher'}
    metrics = {(metric.module, metric.class_name)
               for spec in stock_tfx.stock_eval_config(config).metrics_specs
               for metric in spec.metrics}
    assert metrics == {('', name) for name in ('AUC', 'BinaryCrossentropy', 'Calibration',
                                               'MeanPrediction', 'MeanLabel', 'ExampleCount',
                                               'CalibrationPlot')}
    trainer = next(node for node in pipeline.components if node.id == 'Trainer')
    assert trainer.exec_properties['module_file'] == config.module_file
    # Stock TFX's Transform materializes, and its Trainer reads those transformed examples.
    assert trainer.inputs['examples'].producer_component_id == 'Transform'
    assert config.trainer_custom_config['model']['materialize_transform'] is True
