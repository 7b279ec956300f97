"""Tests for the funnel simulator: rates, determinism, schema, Bayes AUCs and file output."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import funnel
from simulator.funnel import EXAMPLE_COLUMNS, TRUTH_COLUMNS, bayes_auc, simulate, write_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def sim():
    return simulate(200_000, seed=7)


def test_base_rates_match_targets(sim):
    examples, _ = sim
    click_rate = examples['click'].mean()
    cvr_among_clicks = examples['conversion'].sum() / examples['click'].sum()
    assert abs(click_rate - funnel.TARGET_CLICK_RATE) < 0.005
    assert abs(cvr_among_clicks - funnel.TARGET_CVR_AMONG_CLICKS) < 0.015


def test_funnel_is_consistent(sim):
    examples, truth = sim
    assert set(examples['click'].unique()) == {0, 1}
    assert set(examples['conversion'].unique()) == {0, 1}
    assert (examples['conversion'] <= examples['click']).all()
    for column in TRUTH_COLUMNS:
        assert ((truth[column] > 0) & (truth[column] < 1)).all(), column
    assert (truth['p_conversion'] <= truth['p_click']).all()
    np.testing.assert_allclose(truth['p_conversion'], truth['p_click'] * truth['p_cvr'])


def test_same_seed_same_data_different_seed_different_data():
    a_examples, a_truth = simulate(3_000, seed=11)
    b_examples, b_truth = simulate(3_000, seed=11)
    pd.testing.assert_frame_equal(a_examples, b_examples)
    pd.testing.assert_frame_equal(a_truth, b_truth)
    c_examples, c_truth = simulate(3_000, seed=12)
    assert not a_examples.equals(c_examples)
    assert not np.allclose(a_truth['p_click'], c_truth['p_click'])


def test_columns_and_dtypes(sim):
    examples, truth = sim
    assert list(examples.columns) == EXAMPLE_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    assert len(examples) == len(truth) == 200_000
    for column, prefix in [('user_id', 'u'), ('item_id', 'i'), ('item_category', 'c')]:
        assert examples[column].dtype == object
        assert examples[column].str.fullmatch(prefix + r'\d+').all(), column
    assert set(examples['device'].unique()) == {'mobile', 'desktop', 'tablet'}
    for column in ['ad_position', 'user_activity', 'click', 'conversion']:
        assert pd.api.types.is_integer_dtype(examples[column]), column
    for column in ['price', 'item_hist_ctr', 'user_age']:
        assert pd.api.types.is_float_dtype(examples[column]), column
    assert examples['ad_position'].between(1, 6).all()
    assert (examples['price'] > 0).all()
    assert (examples['user_activity'] >= 0).all()
    assert examples['user_age'].between(18, 80).all()
    assert examples['item_hist_ctr'].dropna().between(0, 1).all()


def test_feature_distributions(sim):
    examples, _ = sim
    assert 0.15 < examples['item_hist_ctr'].isna().mean() < 0.25
    # Missingness is a property of the item, not of the row.
    missing = examples.groupby('item_id')['item_hist_ctr'].apply(lambda s: s.isna().nunique())
    assert (missing == 1).all()
    # Each item has exactly one category.
    assert (examples.groupby('item_id')['item_category'].nunique() == 1).all()
    assert 20 <= examples['item_category'].nunique() <= funnel.N_CATEGORIES
    assert examples['device'].value_counts(normalize=True).iloc[0] > 0.5
    assert examples['price'].mean() > examples['price'].median()  # right-skewed

    user_counts = examples['user_id'].value_counts()
    assert 5_000 <= len(user_counts) <= funnel.N_USERS
    top_share = user_counts.iloc[: funnel.N_USERS // 100].sum() / len(examples)
    assert top_share > 0.2  # top 1% of users hold far more than 1% of rows
    item_counts = examples['item_id'].value_counts()
    assert item_counts.iloc[: funnel.N_ITEMS // 100].sum() / len(examples) > 0.2


def test_hist_ctr_tracks_true_click_rate(sim):
    examples, truth = sim
    per_item = pd.DataFrame({'item': examples['item_id'], 'hist': examples['item_hist_ctr'],
                             'p': truth['p_click']}).dropna().groupby('item').mean()
    assert per_item['hist'].corr(per_item['p'], method='spearman') > 0.3


def test_bayes_auc_is_informative_and_tasks_differ(sim):
    examples, truth = sim
    auc = bayes_auc(examples, truth)
    assert set(auc) == {'click', 'conversion', 'cvr'}
    for task, value in auc.items():
        assert 0.65 < value < 0.99, task
    assert np.corrcoef(truth['p_click'], truth['p_cvr'])[0, 1] < 0.7


def test_write_dataset_writes_three_files_that_round_trip(tmp_path):
    summary = write_dataset(tmp_path, rows=5_000, seed=3)
    assert sorted(p.name for p in (tmp_path / 'examples').iterdir()) == ['impressions.csv']
    assert sorted(p.name for p in (tmp_path / 'truth').iterdir()) == ['summary.json', 'truth.csv']
    assert not [p for p in tmp_path.iterdir() if p.is_file()]  # no temp files left behind

    examples, truth = simulate(5_000, seed=3)
    read_examples = pd.read_csv(tmp_path / 'examples' / 'impressions.csv')
    read_truth = pd.read_csv(tmp_path / 'truth' / 'truth.csv')
    assert list(read_examples.columns) == EXAMPLE_COLUMNS
    assert read_examples['item_hist_ctr'].isna().sum() == examples['item_hist_ctr'].isna().sum() > 0
    pd.testing.assert_frame_equal(read_examples, examples)
    pd.testing.assert_frame_equal(read_truth, truth, check_exact=False, rtol=1e-12)

    on_disk = json.loads((tmp_path / 'truth' / 'summary.json').read_text())
    assert on_disk == summary
    assert on_disk['rows'] == 5_000 and on_disk['seed'] == 3
    assert on_disk['click_rate'] == pytest.approx(examples['click'].mean())
    assert on_disk['bayes_auc'] == pytest.approx(bayes_auc(examples, truth))


@pytest.mark.parametrize('kwargs, name', [
    ({'rows': 0}, 'rows'), ({'rows': -5}, 'rows'), ({'rows': 2.5}, 'rows'),
    ({'rows': '100'}, 'rows'), ({'rows': True}, 'rows'),
    ({'seed': -1}, 'seed'), ({'seed': 1.5}, 'seed'), ({'out_dir': ''}, 'out_dir'),
    ({'out_dir': None}, 'out_dir'),
])
def test_bad_arguments_raise_value_error_naming_them(tmp_path, kwargs, name):
    args = {'out_dir': tmp_path, 'rows': 10, 'seed': 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        write_dataset(**args)
    if name != 'out_dir':
        with pytest.raises(ValueError, match=name):
            simulate(args['rows'], args['seed'])


def test_cli_prints_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'simulator', '--rows', '2000', '--seed', '5', '--out',
         str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout)
    assert summary['rows'] == 2000 and summary['seed'] == 5
    assert (tmp_path / 'examples' / 'impressions.csv').exists()

    bad = subprocess.run([sys.executable, '-m', 'simulator', '--rows', '0', '--out', str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and 'rows' in bad.stderr
