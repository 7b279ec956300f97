"""The quality benchmark's code path end to end on tiny data: simulator, tf.Transform, the
project's models (not DeepCTR, whose venv CI does not have), scores, the markdown tables, the
transfer gain and the Pareto front of real (1-epoch) runs."""

import argparse
import json
import re

import pytest

from bench import quality, tradeoffs

SYSTEMS = ('MMoE + ESMM', 'MMoE + naive')
# 6,000 rows: the 600-row validation split holds 2 conversions, which the calibration maps need
# (at 3,000 and 5,000 rows it holds none, and the benchmark stops with the maps' message).
TINY = ['--grid-rows', '6000', '--curve-rows', '', '--epochs', '6000:1']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """One tiny data set for the module (bench/data.py reuses a prepared one)."""
    return str(tmp_path_factory.mktemp('bench_data'))


def _table_rows(text: str, heading: str):
    """The rows of the first markdown table under `heading`, as lists of cells."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('|'))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith('|')), len(lines))
    rows = [line.strip('|').split('|') for line in lines[start:end]]
    return [[cell.strip() for cell in row] for row in rows]


def test_quality_benchmark_writes_every_row_and_column(tmp_path, data_root):
    out = tmp_path / 'quality.md'
    text = quality.main(TINY + ['--seeds', '1', '--systems', ','.join(SYSTEMS),
                                '--data-root', data_root, '--out', str(out)])
    assert out.read_text() == text

    header, _, bayes, *systems = _table_rows(text, '## 6,000 rows')
    expected_columns = (['system'] + [f'{t} AUC' for t, *_ in quality.TASKS]
                        + [f'{t} AUC / Bayes' for t, *_ in quality.TASKS]
                        + [f'{t} calibration' for t, *_ in quality.TASKS[:3]]
                        + [f'{t} worst slice calibration' for t, *_ in quality.TASKS[:2]]
                        + ['examples/s'])
    assert header == expected_columns
    assert [row[0] for row in systems] == list(SYSTEMS)
    assert all(0.0 < float(value) < 1.0 for value in bayes[1:1 + len(quality.TASKS)])
    for row in systems:
        assert len(row) == len(expected_columns)
        aucs = [float(cell) for cell in row[1:1 + len(quality.TASKS)]]
        assert all(0.0 < auc < 1.0 for auc in aucs), row
        assert float(row[-1]) > 0  # examples/s

    # Calibration per seed: the project's systems before -> after the maps of the validation
    # split; the maps move the mean of every system.
    per_seed = _table_rows(text, 'Calibration per seed')[2:]
    assert [(row[0], row[1]) for row in per_seed] == [(system, '0') for system in SYSTEMS]
    for row in per_seed:
        before, after = (float(value) for value in row[2].split(' -> '))
        assert before != after and 0.5 < after < 2.0, row

    curve = _table_rows(text, '## Learning curve of MMoE + ESMM')
    assert curve[2][0] == '6,000'
    targets = text.split('## Targets', 1)[1]
    assert re.search(r'- (met|MISSED): ESMM beats the naive loss', targets)
    # No single-task system, no weight sweep: neither analysis, and no JSON.
    assert '## Transfer gain' not in text and '## Pareto front' not in text
    assert not (tmp_path / 'pareto.json').exists()


CUSTOM = 'custom: shared_bottom + esmm'


@pytest.fixture(scope='module')
def tradeoff_run(tmp_path_factory, data_root):
    """The single-task baseline and a custom system from the command line, 2 seeds, and a
    weight sweep (3:1 besides 1:1) on 1 seed: the report text and the Pareto JSON."""
    out = tmp_path_factory.mktemp('tradeoffs') / 'transfer_pareto.md'
    text = quality.main(TINY + ['--seeds', '2', '--systems', 'single-task + ESMM',
                                '--architecture', 'shared_bottom', '--loss-weights', '3:1,1:1',
                                '--sweep-seeds', '1', '--data-root', data_root,
                                '--out', str(out)])
    return text, json.loads((out.parent / 'pareto.json').read_text())


def _mean(cell: str) -> float:
    return float(cell.split(' ± ')[0])


def _auc_column(column: str) -> int:
    """Where an AUC column is in the size table's rows."""
    return 1 + [f'{t} AUC' for t, *_ in quality.TASKS].index(column)


def test_transfer_gain_is_the_paired_difference_to_the_single_task_system(tradeoff_run):
    text, _ = tradeoff_run
    aucs = {row[0]: row for row in _table_rows(text, '## 6,000 rows')[3:]}
    assert list(aucs) == ['single-task + ESMM', CUSTOM]
    header, _, *rows = _table_rows(text, '## Transfer gain at 6,000 rows')
    assert header[:3] == ['system', 'single-task baseline', 'seeds']
    assert [row[:3] for row in rows] == [[CUSTOM, 'single-task + ESMM', '2']]
    for row in rows:
        for i, (task, column) in enumerate(tradeoffs.GAIN_TASKS):
            column_index = _auc_column(column)
            expected = _mean(aucs[row[0]][column_index]) - _mean(
                aucs['single-task + ESMM'][column_index])
            # The mean of the per-seed differences is the difference of the means.
            assert _mean(row[3 + i]) == pytest.approx(expected, abs=2e-4), (row[0], task)
            assert ' ± ' in row[3 + i]  # a std over the 2 paired seeds


def test_pareto_front_of_real_runs(tradeoff_run):
    """Both systems at 1:1 and 3:1 (both have static weights): 4 real points; a point is
    marked on the front exactly when no other point is at least as good on both AUCs and
    better on one; the markdown table lists the same points and marks."""
    text, found = tradeoff_run
    points = found['points']
    assert found['rows'] == 6000 and found['seeds'] == 1 and '--loss-weights' in found['command']
    assert sorted((p['system'], p['weights']) for p in points) == sorted(
        (system, weights) for system in ('single-task + ESMM', CUSTOM)
        for weights in ('1:1', '3:1'))
    for p in points:
        assert 0.0 < p['click_auc'] < 1.0 and 0.0 < p['conversion_auc'] < 1.0
        dominated = any(q['click_auc'] >= p['click_auc']
                        and q['conversion_auc'] >= p['conversion_auc']
                        and (q['click_auc'], q['conversion_auc']) != (p['click_auc'],
                                                                      p['conversion_auc'])
                        for q in points)
        assert p['pareto'] is not dominated, p
    assert any(p['pareto'] for p in points)
    # The point of highest click AUC is always on the front.
    assert max(points, key=lambda p: p['click_auc'])['pareto']

    header, _, *rows = _table_rows(text, '## Pareto front of click AUC vs conversion AUC')
    assert header[0] == 'system' and header[-1] == 'on the front'
    assert [(row[0], row[1], float(row[3]), row[-1] == '**yes**') for row in rows] == [
        (p['system'], p['weights'], round(p['click_auc'], 4), p['pareto']) for p in points]


def test_non_domination_with_ties():
    assert tradeoffs.non_dominated([(0.7, 0.8), (0.7, 0.8), (0.6, 0.9), (0.6, 0.8),
                                    (0.7, 0.7)]) == [True, True, True, False, False]


def test_loss_weight_ratios_keep_the_default_scale():
    weights = tradeoffs.parse_weights('4:1,1:1,1:3')
    assert weights == {'4:1': pytest.approx((1.6, 0.4)), '1:1': (1.0, 1.0),
                       '1:3': pytest.approx((0.5, 1.5))}


@pytest.mark.parametrize('arguments, message', [
    (['--architecture', 'single_task', '--weighting', 'gradnorm'], 'model.task_weighting'),
    (['--architecture', 'aitm', '--loss', 'naive'], 'cannot train AITM'),
    (['--weighting', 'uncertainty', '--schedule', 'alternating'], 'model.schedule'),
    (['--architecture', 'ple', '--entity-experts', '1'], "needs architecture 'mmoe'"),
    (['--architecture', 'shared_bottom', '--experts', '4'], 'has no experts'),
    (['--loss-weights', '1:0'], 'both parts must be > 0'),
])
def test_invalid_custom_systems_stop_with_the_configuration_message(arguments, message, capsys,
                                                                    tmp_path):
    with pytest.raises(SystemExit) as error:
        quality.main(TINY + arguments + ['--out', str(tmp_path / 'q.md')])
    assert error.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'q.md').exists()


def test_custom_system_with_interactions_names_them():
    args = argparse.Namespace(architecture=None, experts=None, entity_experts=None, loss=None,
                              weighting=None, schedule=None, user_item_interaction='product',
                              cross_layers=2, embedding_l2=3e-4)
    assert quality.custom_system(args) == {
        'custom: mmoe + esmm, user x item product, 2 cross layers, embedding L2 0.0003': {
            'user_item_interaction': 'product', 'cross_layers': 2, 'embedding_l2': 3e-4}}


def test_custom_system_names_its_choices():
    args = argparse.Namespace(architecture='mmoe', experts=2, entity_experts=1,
                              loss=None, weighting='gradnorm', schedule=None,
                              user_item_interaction=None, cross_layers=None, embedding_l2=None)
    assert quality.custom_system(args) == {
        'custom: mmoe + esmm, 2 experts, 1 user + 1 item experts, gradnorm weights': {
            'architecture': 'mmoe', 'task_weighting': 'gradnorm', 'entity_experts': 1,
            'num_experts': 2}}


def test_tuners_search_is_compared_with_the_defaults(tmp_path, data_root):
    """--tune-trials: the pipeline's search (trainer/tuning.py) on the bench arrays; its best
    settings train as their own system, reported against the defaults task by task."""
    text = quality.main(TINY + ['--seeds', '1', '--systems', quality.MAIN, '--tune-trials', '2',
                                '--tune-sample-rows', '2000', '--data-root', data_root,
                                '--out', str(tmp_path / 'q.md')])
    _, _, _, *systems = _table_rows(text, '## 6,000 rows')
    assert [row[0] for row in systems] == [quality.MAIN, quality.TUNED]
    section = text.split("## The Tuner's search, at 6,000 rows", 1)[1]
    assert '2 trials' in section
    for task in ('click', 'conversion', 'CVR on clicked'):
        assert f'- {task} AUC / Bayes: ' in section and 'one seed: seed noise unknown' in section
