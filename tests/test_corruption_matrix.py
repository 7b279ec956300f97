"""The corruption matrix: each kind of bad input, through the real pipeline on 2,000 rows.

Every case either stops the run with a message naming the file or split, the feature and the
problem, with nothing trained or pushed, or is handled by design. Problems of the files
themselves stop at the input check (pipeline/inputs.py, before ExampleGen); problems the schema
can state stop at the AnomaliesGate (TFDV's ExampleValidator, and its drift comparators).

The schema cases share one run: each corrupts a different column, and TFDV checks each feature
on its own, so every corruption is reported exactly as it would be alone.
"""

import os

import pytest

from components.anomalies_gate import DataAnomaliesError
from conftest import SPEC, run_pipeline
from pipeline import inputs, summary
from pipeline.config import load_config
from simulator.funnel import simulate

pytestmark = pytest.mark.reliability

ROWS = 2_000
AFTER_THE_GATE = {'Transform', 'Trainer', 'ServingContractCheck', 'Evaluator', 'Pusher'}


@pytest.fixture(scope='module')
def impressions():
    df, _ = simulate(ROWS, seed=7)
    return df


def _config(root):
    return load_config(env={}, data_root=str(root / 'data'), output_root=str(root / 'outputs'))


def _write(root, text: str):
    (root / 'data').mkdir(parents=True, exist_ok=True)
    (root / 'data' / 'impressions.csv').write_text(text)
    return _config(root)


def _run(config, validate_only=False):
    run_pipeline(config, validate_only=validate_only)


def _assert_nothing_trained_or_pushed(config):
    """The latest run failed at the gate and nothing after it ran; no model was pushed."""
    states = {row['component']: row['state'] for row in summary.summarize(config)['components']}
    assert states['AnomaliesGate'] == 'FAILED' and not set(states) & AFTER_THE_GATE, states
    assert not os.path.exists(config.serving_model_dir)


# --- Stopped by the input check, before ExampleGen --------------------------------------------

def _truncated(df):
    """The file cut off in the middle of its last row, which keeps 7 of its 11 fields."""
    lines = df.to_csv(index=False).splitlines()
    return '\n'.join(lines[:-1] + [','.join(lines[-1].split(',')[:7])])


def _unclicked_conversion(df):
    df = df.copy()
    df.loc[[10, 20], SPEC.click_label] = 0
    df.loc[[10, 20], SPEC.conversion_label] = 1
    return df.to_csv(index=False)


@pytest.mark.parametrize('case, make_text, expected', [
    ('empty file', lambda df: '', ['impressions.csv is empty']),
    ('header only', lambda df: df.head(0).to_csv(index=False),
     ['impressions.csv has a header', 'but no data rows']),
    ('truncated last line', _truncated,
     ["impressions.csv: 1 row(s) do not have the header's 11 fields, at line(s) 2001",
      'line 2001 has 7']),
    ('conversion = 1 with click = 0', _unclicked_conversion,
     ['impressions.csv: 2 row(s) with conversion = 1 but click = 0 at line(s) 12, 22']),
])
def test_file_problems_stop_before_example_gen(tmp_path, impressions, reliability, case,
                                               make_text, expected):
    config = _write(tmp_path, make_text(impressions))
    with pytest.raises(inputs.InputDataError) as error:
        _run(config)
    for text in expected:
        assert text in str(error.value)
    assert not os.path.exists(config.output_root)  # no component ran
    reliability(case, 'stopped', str(error.value).split('/')[-1])


# --- Stopped by the schema at the AnomaliesGate -----------------------------------------------

# case: (column, how it is corrupted, what the gate's line for that column must say)
SCHEMA_CASES = {
    'missing required column': ('item_category', 'dropped', ['Column dropped']),
    'extra unknown column': ('campaign_id', 'added', ['New column']),
    'string in a numeric column': ('ad_position', "'top' in one row",
                                   ['Expected data of type: INT but got STRING']),
    'NaN dense value': ('price', "'nan' in one row", ['Float feature has NaN values']),
    'infinite dense value': ('user_age', "'inf' in one row",
                             ['Float feature has Inf values']),
    'negative count': ('user_activity', '-3 in one row', ['Unexpectedly small value: -3']),
    'label outside {0, 1}': ('click', '2 in one row', ['Unexpectedly large value: 2']),
    'feature missing in 100% of rows': ('item_hist_ctr', 'empty in every row',
                                        ['Column dropped']),
}


def _corrupt(df):
    """Every SCHEMA_CASES corruption, each in its own column, as CSV text."""
    df = df.drop(columns=['item_category']).assign(campaign_id='spring-sale')
    df = df.astype({'ad_position': object, 'price': object, 'user_age': object})
    df.loc[3, 'ad_position'] = 'top'
    df.loc[4, 'price'] = 'nan'
    df.loc[5, 'user_age'] = 'inf'
    df.loc[6, 'user_activity'] = -3
    df.loc[7, ['click', 'conversion']] = [2, 0]
    df['item_hist_ctr'] = None  # an empty cell: missing
    return df.to_csv(index=False)


@pytest.fixture(scope='module')
def schema_run(tmp_path_factory, impressions):
    """One full pipeline run on the corrupted data; the gate's error and the config."""
    config = _write(tmp_path_factory.mktemp('schema_cases'), _corrupt(impressions))
    with pytest.raises(DataAnomaliesError) as error:
        _run(config)
    return config, str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize('case', SCHEMA_CASES)
def test_schema_problems_stop_at_the_gate(schema_run, reliability, case):
    config, message = schema_run
    column, corruption, expected = SCHEMA_CASES[case]
    lines = [line.strip() for line in message.splitlines() if f", feature '{column}':" in line]
    assert lines and all(text in line for text in expected for line in lines), message
    _assert_nothing_trained_or_pushed(config)
    reliability(case, 'stopped', f'{column} {corruption}: {lines[0][:80]}')


def test_schema_cases_are_each_in_their_own_column():
    columns = [column for column, _, _ in SCHEMA_CASES.values()]
    assert len(set(columns)) == len(columns)


# --- Drift against the last accepted run, and unseen ids ------------------------------------

@pytest.fixture(scope='module')
def drift_root(tmp_path_factory, impressions):
    """An output folder whose last accepted run validated `impressions` (the drift baseline)."""
    root = tmp_path_factory.mktemp('drift')
    _run(_write(root, impressions.to_csv(index=False)), validate_only=True)
    return root


@pytest.mark.slow
def test_next_day_with_unseen_ids_passes_validation(drift_root, reliability):
    """Another day's sample whose users, items and categories were never seen: not an anomaly
    and within the drift thresholds. The Transform maps the new ids to OOV buckets (served
    probabilities for unseen ids: tests/test_export.py)."""
    day, _ = simulate(ROWS, seed=8)
    for name in ('user_id', 'item_id', 'item_category'):
        day[name] = 'new-' + day[name]
    config = _write(drift_root, day.to_csv(index=False))
    _run(config, validate_only=True)
    states = {row['component']: row['state'] for row in summary.summarize(config)['components']}
    assert states['AnomaliesGate'] == 'COMPLETE', states
    reliability('categorical ids never seen before', 'handled',
                'validation passes; OOV buckets at Transform and serving')


@pytest.mark.slow
def test_strong_shift_stops_at_the_gate(drift_root, impressions, reliability):
    """Prices in cents instead of dollars: the price distribution's Jensen-Shannon divergence
    from the last accepted run is far above the schema's threshold."""
    config = _write(drift_root, impressions.assign(price=impressions['price'] * 100)
                    .to_csv(index=False))
    with pytest.raises(DataAnomaliesError) as error:
        _run(config)
    lines = [line.strip() for line in str(error.value).splitlines() if 'Jensen-Shannon' in line]
    assert {line.split(':')[0] for line in lines} == {"split 'train', feature 'price'",
                                                      "split 'validation', feature 'price'",
                                                      "split 'eval', feature 'price'"}
    assert all('above the threshold 0.3' in line for line in lines)
    _assert_nothing_trained_or_pushed(config)
    reliability('strong distribution shift (drift)', 'stopped', lines[0][:110])
