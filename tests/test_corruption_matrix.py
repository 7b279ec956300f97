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
from pipeline.config import EvaluationConfig, load_config
from simulator.funnel import simulate

pytestmark = pytest.mark.reliability

ROWS = 2_000
AFTER_THE_GATE = {'Transform', 'Trainer', 'ServingContractCheck', 'Evaluator', 'Pusher'}
AFTER_EXAMPLE_GEN = {'StatisticsGen', 'ExampleValidator', 'AnomaliesGate'} | AFTER_THE_GATE


@pytest.fixture(scope='module')
def impressions():
    df, _ = simulate(ROWS, seed=7)
    return df


# 2,000 rows hold about one conversion per validation and eval split, at times none: the
# cases below are about other problems, so no minimum of rows per label class applies to them
# (test_too_few_positives_stop_at_the_gate has the defaults).
FEW_CONVERSIONS = EvaluationConfig(min_class_rows=0, min_eval_positives=0)


def _config(root, evaluation=FEW_CONVERSIONS):
    return load_config(env={}, data_root=str(root / 'data'), output_root=str(root / 'outputs'),
                       evaluation=evaluation)


def _write(root, text, evaluation=FEW_CONVERSIONS):
    (root / 'data').mkdir(parents=True, exist_ok=True)
    path = root / 'data' / 'impressions.csv'
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return _config(root, evaluation)


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


def _mac_line_ends(df):
    """Lines ended by a carriage return alone, as classic Mac OS programs write them."""
    return df.to_csv(index=False, lineterminator='\r')


def _mac_lines_appended(df):
    """A day exported on a Mac appended to a plain file (`cat a.csv b.csv`): rows 1,001 on end
    in a carriage return alone."""
    return (df.head(1000).to_csv(index=False)
            + df.iloc[1000:].to_csv(index=False, header=False, lineterminator='\r'))


def _semicolons_with_hint(df):
    """A spreadsheet export for a locale whose decimal mark is the comma: fields separated by
    semicolons, announced by the delimiter hint `sep=;` on the first line."""
    return 'sep=;\r\n' + df.to_csv(index=False, sep=';', decimal=',', lineterminator='\r\n')


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
     ['impressions.csv: the header (line 1) names 1 column(s) more than once: price']),
    ('no conversions at all', lambda df: df.assign(conversion=0).to_csv(index=False),
     ["the conversion label 'conversion' is 1 in none of the 2000 rows (click = 1 in"]),
    ('clicked impressions only (a join that lost the rest)',
     lambda df: df[df[SPEC.click_label] == 1].to_csv(index=False),
     ["the click label 'click' is 0 in none of the", 'with one class only, the click task']),
    ('classic Mac line ends (\\r only)', _mac_line_ends,
     ['impressions.csv has lines that end in a carriage return alone',
      'its line 1 holds a carriage return', "tr '\\r' '\\n'"]),
    ('Mac lines appended to a plain file', _mac_lines_appended,
     ['impressions.csv has lines that end in a carriage return alone (\\r, the line ends of '
      'classic Mac OS and of some exporters) from line 1002 on']),
    ('semicolons announced by the delimiter hint sep=;', _semicolons_with_hint,
     ['impressions.csv: its first line is the delimiter hint "sep=;" of a spreadsheet export',
      "separated by ';', but the pipeline reads CSV separated by ','"]),
    ('text in a dense column', lambda df: _with(df, [4, 9], 'price', 'N/A'),
     ["impressions.csv, column 'price' (dense): 2 cell(s) are not numbers, at line 6 'N/A', "
      "line 11 'N/A'"]),
    ('label outside {0, 1}', lambda df: _with(df, [4, 9], 'click', ['2', '0.5']),
     ["impressions.csv, column 'click' (label): 2 cell(s) are not 0 or 1, at line 6 '2', "
      "line 11 '0.5'"]),
    ('not UTF-8 text (UTF-16)', lambda df: df.to_csv(index=False).encode('utf-16'),
     ['impressions.csv is UTF-16 text (byte-order mark), not a UTF-8 CSV text file']),
    ('header ending with a comma (an empty spreadsheet column after the last)',
     lambda df: df.assign(**{'': ''}).to_csv(index=False),
     ['impressions.csv: the header (line 1, ', 'has 1 column(s) with no name, at position(s) '
      '12 of 12 (the header ends with a comma?']),
    ('blank ids', lambda df: _with(df, [4, 9, 10], 'device', ''),
     ["impressions.csv, column 'device' (categorical id): 3 blank cell(s), at line(s) 6, 11, "
      "12. A blank id stops the run by default.", '`{name: device, blank: oov}`']),
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


# --- Too few rows of a label's class, counted per split at the AnomaliesGate ----------------

@pytest.mark.slow
def test_too_few_positives_stop_at_the_gate(tmp_path, impressions, reliability):
    """A sample of 300 impressions (the size of a public sample of a click + purchase data set),
    with the default minimums: the files are fine, but ExampleGen's splits hold a handful of
    clicks and one or no conversion. The gate stops the run before the Transform with the rows
    of each class per split and task, and says what to do; nothing is trained."""
    sample = impressions.head(300)
    assert 0 < sample[SPEC.conversion_label].sum() < 5  # a conversion or a few, in all splits
    config = _write(tmp_path, sample.to_csv(index=False), evaluation=EvaluationConfig())
    with pytest.raises(DataAnomaliesError) as error:
        _run(config)
    message = str(error.value)
    assert "Too few rows of a label's class to train or to judge a task" in message
    assert "split 'eval', conversion: " in message
    assert '(needs at least 10 with 1 and 1 with 0)' in message
    assert 'Rows with 1 / with 0 per split: train: click ' in message
    assert 'FUNNEL_EVALUATION_MIN_EVAL_POSITIVES' in message
    _assert_nothing_trained_or_pushed(config)
    reliability('too few positives in a split (300 rows)', 'stopped',
                message.splitlines()[1].strip()[:110])


# --- Drift against the last accepted run, and unseen ids ------------------------------------

def _excel(df) -> bytes:
    """`df` as an Excel-style export: a UTF-8 byte-order mark, the delimiter hint `sep=,` on
    the first line, CRLF line ends, labels written 1.0 / 0.0 (item_hist_ctr is blank in about
    20% of rows)."""
    df = df.astype({SPEC.click_label: float, SPEC.conversion_label: float})
    return ('sep=,\r\n' + df.to_csv(index=False, lineterminator='\r\n')).encode('utf-8-sig')


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
    mark, the delimiter hint `sep=,`, CRLF and labels written 1.0 / 0.0 are read as the plain
    file is, valid against the curated schema."""
    states = {row['component']: row['state'] for row in
              summary.summarize(_config(drift_root))['components']}
    assert states['AnomaliesGate'] == 'COMPLETE', states
    reliability('Excel export: byte-order mark, sep=, hint, CRLF, labels 1.0 / 0.0', 'handled',
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
