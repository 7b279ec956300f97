"""The corruption matrix: each kind of bad input, through the real pipeline on 2,000 rows.

Every case either stops the run with a message naming the file or split, the feature and the
problem, with nothing trained or pushed, or is handled by design. Problems of the files
themselves stop at the input check (pipeline/inputs.py, run by ExampleGen's executor before it
reads the files, components/example_gen.py); problems the schema can state stop at the
AnomaliesGate (TFDV's ExampleValidator, and its drift comparators).

The schema cases share one run: each corrupts a different column, and TFDV checks each feature
on its own, so every corruption is reported exactly as it would be alone.
"""

import os

import pytest
from conftest import SPEC, run_pipeline

from components.anomalies_gate import DataAnomaliesError
from pipeline import inputs, summary
from pipeline.config import load_config
from simulator.funnel import simulate

pytestmark = pytest.mark.reliability

ROWS = 2_000
AFTER_THE_GATE = {'Transform', 'Trainer', 'ServingContractCheck', 'Evaluator', 'Pusher'}
AFTER_EXAMPLE_GEN = {'StatisticsGen', 'ExampleValidator', 'AnomaliesGate'} | AFTER_THE_GATE


@pytest.fixture(scope='module')
def impressions():
    df, _ = simulate(ROWS, seed=7)
    return df


def _config(root):
    return load_config(env={}, data_root=str(root / 'data'), output_root=str(root / 'outputs'))


def _write(root, text):
    (root / 'data').mkdir(parents=True, exist_ok=True)
    path = root / 'data' / 'impressions.csv'
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return _config(root)


def _run(config, validate_only=False):
    run_pipeline(config, validate_only=validate_only)


def _assert_nothing_trained_or_pushed(config):
    """The latest run failed at the gate and nothing after it ran; no model was pushed."""
    states = {row['component']: row['state'] for row in summary.summarize(config)['components']}
    assert states['AnomaliesGate'] == 'FAILED' and not set(states) & AFTER_THE_GATE, states
    assert not os.path.exists(config.serving_model_dir)


# --- Stopped by the input check, in ExampleGen ------------------------------------------------

def _truncated(df):
    """The file cut off in the middle of its last row, which keeps 7 of its 11 fields."""
    lines = df.to_csv(index=False).splitlines()
    return '\n'.join(lines[:-1] + [','.join(lines[-1].split(',')[:7])])


def _with(df, rows, column, value):
    """The CSV text of `df` with `value` in `column` at `rows`."""
    df = df.astype({column: object})
    df.loc[rows, column] = value
    return df.to_csv(index=False)


def _unclicked_conversion(df):
    df = df.copy()
    df.loc[[10, 20], SPEC.click_label] = 0
    df.loc[[10, 20], SPEC.conversion_label] = 1
    return df.to_csv(index=False)


def _duplicated_header(df):
    """`price` written twice, `user_age` gone (a mislabelled export)."""
    text = df.to_csv(index=False)
    header, rest = text.split('\n', 1)
    return header.replace('user_age', 'price') + '\n' + rest


@pytest.mark.parametrize('case, make_text, expected', [
    ('empty file', lambda df: '', ['impressions.csv is empty']),
    ('header only', lambda df: df.head(0).to_csv(index=False),
     ['impressions.csv has a header', 'but no data rows']),
    ('truncated last line', _truncated,
     ["impressions.csv: 1 row(s) do not have the header's 11 fields, at line(s) 2001",
      'line 2001 has 7']),
    ('conversion = 1 with click = 0', _unclicked_conversion,
     ['impressions.csv: 2 row(s) with conversion = 1 but click = 0 at line(s) 12, 22']),
    ('duplicated header name', _duplicated_header,
     ["impressions.csv: the header names column(s) ['price'] more than once"]),
    ('no conversions at all', lambda df: df.assign(conversion=0).to_csv(index=False),
     ["the conversion label 'conversion' is 1 in none of the 2000 rows (click = 1 in"]),
    ('text in a dense column', lambda df: _with(df, [4, 9], 'price', 'N/A'),
     ["impressions.csv, column 'price' (dense): 2 cell(s) are not numbers, at line 6 'N/A', "
      "line 11 'N/A'"]),
    ('label outside {0, 1}', lambda df: _with(df, [4, 9], 'click', ['2', '0.5']),
     ["impressions.csv, column 'click' (label): 2 cell(s) are not 0 or 1, at line 6 '2', "
      "line 11 '0.5'"]),
    ('not UTF-8 text (UTF-16)', lambda df: df.to_csv(index=False).encode('utf-16'),
     ['impressions.csv is UTF-16 text (byte-order mark), not a UTF-8 CSV text file']),
])
def test_file_problems_stop_in_example_gen(tmp_path, impressions, reliability, case,
                                           make_text, expected):
    """The check runs in ExampleGen's executor (as on Kubeflow): the run stops there with the
    check's message; nothing after ExampleGen ran, nothing was pushed."""
    config = _write(tmp_path, make_text(impressions))
    with pytest.raises(inputs.InputDataError) as error:
        _run(config)
    for text in expected:
        assert text in str(error.value)
    states = {row['component']: row['state'] for row in summary.summarize(config)['components']}
    assert states['CsvExampleGen'] == 'FAILED' and not set(states) & AFTER_EXAMPLE_GEN, states
    assert not os.path.exists(config.serving_model_dir)
    reliability(case, 'stopped', str(error.value).replace(f'{tmp_path}/data/', ''))


# --- Stopped by the schema at the AnomaliesGate -----------------------------------------------

# case: (column, how it is corrupted, what the gate's line for that column must say)
SCHEMA_CASES = {
    'missing required column': ('item_category', 'dropped', ['Column dropped']),
    'extra unknown column': ('campaign_id', 'added', ['New column']),
    'string in a numeric column': ('ad_position', "'top' in one row",
                                   ['Expected data of type: INT but got STRING',
                                    'such as "top"']),
    'NaN dense value': ('price', "'nan' in one row", ['Float feature has NaN values']),
    'infinite dense value': ('user_age', "'inf' in one row",
                             ['Float feature has Inf values']),
    'negative count': ('user_activity', '-3 in one row', ['Unexpectedly small value: -3']),
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
    # The first text on every split's line; the others (an offending value) on one at least.
    assert lines and all(expected[0] in line for line in lines), message
    assert all(any(text in line for line in lines) for text in expected), message
    assert f'does not match the schema {config.schema_path} ' in message  # the file in use
    _assert_nothing_trained_or_pushed(config)
    reliability(case, 'stopped', f'{column} {corruption}: {lines[0][:80]}')


def test_schema_cases_are_each_in_their_own_column():
    columns = [column for column, _, _ in SCHEMA_CASES.values()]
    assert len(set(columns)) == len(columns)


# --- Drift against the last accepted run, and unseen ids ------------------------------------

def _excel(df) -> bytes:
    """`df` as an Excel-style export: a UTF-8 byte-order mark, CRLF line ends, labels written
    1.0 / 0.0 (item_hist_ctr is blank in about 20% of rows)."""
    df = df.astype({SPEC.click_label: float, SPEC.conversion_label: float})
    return df.to_csv(index=False, lineterminator='\r\n').encode('utf-8-sig')


@pytest.fixture(scope='module')
def drift_root(tmp_path_factory, impressions):
    """An output folder whose last accepted run validated `impressions` (the drift baseline),
    written as an Excel-style export."""
    root = tmp_path_factory.mktemp('drift')
    _run(_write(root, _excel(impressions)), validate_only=True)
    return root


@pytest.mark.slow
def test_an_excel_export_with_float_labels_passes_validation(drift_root, reliability):
    """The first run on drift_root (this test runs before the others using it): a byte-order
    mark, CRLF and labels written 1.0 / 0.0 are read as the plain file is, valid against the
    curated schema."""
    states = {row['component']: row['state'] for row in
              summary.summarize(_config(drift_root))['components']}
    assert states['AnomaliesGate'] == 'COMPLETE', states
    reliability('Excel export: byte-order mark, CRLF, labels 1.0 / 0.0', 'handled',
                'read as the plain file (components/example_gen.py); validation passes')


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
