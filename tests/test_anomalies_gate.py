"""Tests of components/anomalies_gate.py on real TFDV validation results."""

import json

import pytest
import tensorflow_data_validation as tfdv
from conftest import SCHEMA_PATH
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.statistics_gen.stats_artifact_utils import BINARY_PB_BASENAME
from tfx.types import standard_artifacts

from components.anomalies_gate import (
    ANOMALIES_FILE,
    AnomaliesGate,
    DataAnomaliesError,
    describe_anomalies,
    label_class_counts,
    label_count_problems,
)
from simulator.funnel import simulate


def _validate(df, raw_schema):
    return tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(df), raw_schema)


@pytest.fixture(scope='module')
def impressions():
    """200 simulated impressions: valid against the schema (item_hist_ctr partly missing)."""
    df, _ = simulate(200, seed=3)
    assert df['item_hist_ctr'].isna().any()
    return df


@pytest.fixture(scope='module')
def clean_anomalies(impressions, raw_schema):
    """TFDV's validation of the valid impressions against schema/schema.pbtxt."""
    return _validate(impressions, raw_schema)


@pytest.fixture(scope='module')
def bad_anomalies(impressions, raw_schema):
    """TFDV's validation of the impressions without `device` and with one click = 2."""
    bad = impressions.drop(columns=['device'])
    bad.loc[5, 'click'] = 2
    return _validate(bad, raw_schema)


def test_valid_data_has_no_anomalies(clean_anomalies):
    """Simulated data matches the curated schema: the gate would let the run through."""
    assert describe_anomalies('train', clean_anomalies) == []


def test_dropped_column_and_out_of_range_label_are_named(bad_anomalies):
    """A missing `device` column and click = 2 give one line each, naming split and feature."""
    lines = describe_anomalies('eval', bad_anomalies)
    assert len(lines) == 2
    click, device = lines  # sorted by feature name
    assert click.startswith("split 'eval', feature 'click': ") and '2' in click
    assert device.startswith("split 'eval', feature 'device': ") and 'missing' in device


def test_dataset_anomalies_and_reasonless_features_are_described():
    """Dataset-level anomalies get their own line; a feature without reasons uses its
    description."""
    anomalies = anomalies_pb2.Anomalies()
    anomalies.anomaly_info['price'].description = 'Something odd'
    anomalies.dataset_anomaly_info.reason.add(short_description='Low count',
                                              description='Only 3 examples.')
    assert describe_anomalies('train', anomalies) == [
        "split 'train', feature 'price': Something odd",
        "split 'train', whole dataset: Low count: Only 3 examples."]


def test_type_and_range_problems_show_an_offending_value(impressions, raw_schema):
    """Text in an integer column and a negative count: each line names the problem and an
    offending value."""
    bad = impressions.astype({'ad_position': str})  # as a CSV column with text is decoded
    bad.loc[7, 'ad_position'] = 'top'
    bad.loc[8, 'user_activity'] = -4
    position, activity = describe_anomalies('train', _validate(bad, raw_schema))
    assert position.startswith("split 'train', feature 'ad_position': Unexpected data type")
    assert 'such as "top"' in position
    assert activity.startswith("split 'train', feature 'user_activity': Out-of-range values")
    assert 'Unexpectedly small value: -4' in activity


def _split_artifact(artifact, root, per_split, file_name):
    """`artifact` at `root` holding one serialized proto per split, as TFX lays it out."""
    artifact.uri = str(root)
    artifact.split_names = json.dumps(sorted(per_split))
    for split, proto in per_split.items():
        folder = root / f'Split-{split}'
        folder.mkdir(parents=True)
        (folder / file_name).write_bytes(proto.SerializeToString())
    return artifact


def _gate(root, anomalies, statistics, previous_statistics=None, min_class_rows=0,
          min_eval_positives=0):
    """Calls the gate on real per-split files, with `previous_statistics` (if any) as the drift
    baseline and the given minimum rows per label class; returns the baseline folder."""
    baseline = root / 'baseline'
    if previous_statistics:
        _split_artifact(standard_artifacts.ExampleStatistics(), baseline, previous_statistics,
                        BINARY_PB_BASENAME)
    schema = standard_artifacts.Schema()
    schema.uri = str(SCHEMA_PATH.parent)
    AnomaliesGate.test_call(
        anomalies=_split_artifact(standard_artifacts.ExampleAnomalies(), root / 'anomalies',
                                  anomalies, ANOMALIES_FILE),
        statistics=_split_artifact(standard_artifacts.ExampleStatistics(), root / 'statistics',
                                   statistics, BINARY_PB_BASENAME),
        schema=schema, baseline_dir=str(baseline), labels='click,conversion', eval_split='eval',
        min_class_rows=min_class_rows, min_eval_positives=min_eval_positives)
    return baseline


def test_gate_stops_the_run_on_anomalies(tmp_path, clean_anomalies, bad_anomalies,
                                         impressions):
    """The component raises DataAnomaliesError listing the bad split's problems, and passes
    when every split is clean, making its statistics the next run's drift baseline."""
    stats = tfdv.generate_statistics_from_dataframe(impressions)
    with pytest.raises(DataAnomaliesError) as error:
        _gate(tmp_path / 'bad', {'train': clean_anomalies, 'eval': bad_anomalies},
              {'train': stats, 'eval': stats})
    message = str(error.value)
    assert f'does not match the schema {SCHEMA_PATH} ' in message  # the file in use
    assert "split 'eval', feature 'device'" in message
    assert "split 'eval', feature 'click'" in message
    assert "split 'train'" not in message

    assert not (tmp_path / 'bad' / 'baseline').exists()

    baseline = _gate(tmp_path / 'clean', {'train': clean_anomalies, 'eval': clean_anomalies},
                     {'train': stats, 'eval': stats})
    for split in ('train', 'eval'):
        saved = (baseline / f'Split-{split}' / BINARY_PB_BASENAME).read_bytes()
        assert saved == stats.SerializeToString()


def test_gate_stops_on_drift_from_the_previous_statistics(tmp_path, clean_anomalies,
                                                          impressions):
    """Against the last accepted statistics: a resample of the same data passes; prices in
    cents instead of dollars and an all-mobile day stop the run, naming the split, the feature,
    the distance and the threshold of the schema's drift comparator."""
    previous = tfdv.generate_statistics_from_dataframe(impressions)
    resample = impressions.sample(frac=1.0, replace=True, random_state=0)
    shifted = impressions.assign(price=impressions['price'] * 100, device='mobile')
    _gate(tmp_path / 'same', {'train': clean_anomalies},
          {'train': tfdv.generate_statistics_from_dataframe(resample)}, {'train': previous})
    with pytest.raises(DataAnomaliesError) as error:
        _gate(tmp_path / 'shifted', {'train': clean_anomalies},
              {'train': tfdv.generate_statistics_from_dataframe(shifted)}, {'train': previous})
    device, price = [line for line in str(error.value).splitlines() if 'split' in line]
    assert device.startswith("  split 'train', feature 'device': High Linfty distance")
    assert 'above the threshold 0.1' in device and 'mobile' in device
    assert price.startswith("  split 'train', feature 'price': High approximate Jensen-Shannon")
    assert 'above the threshold 0.3' in price and str(tmp_path / 'shifted' / 'baseline') in price
    saved = (tmp_path / 'shifted' / 'baseline' / 'Split-train' / BINARY_PB_BASENAME).read_bytes()
    assert saved == previous.SerializeToString()  # a drifted run does not become the baseline


def test_label_classes_are_counted_from_tfdv_statistics(impressions):
    """Rows with 1 and with 0 per task, read from TFDV's statistics of a split: click and
    conversion over all rows, cvr over the clicked ones."""
    counts = label_class_counts(tfdv.generate_statistics_from_dataframe(impressions),
                                ('click', 'conversion'))
    clicks, conversions = int(impressions['click'].sum()), int(impressions['conversion'].sum())
    assert counts == {'click': (clicks, 200 - clicks),
                      'conversion': (conversions, 200 - conversions),
                      'conversion among click = 1 (cvr)': (conversions, clicks - conversions)}


@pytest.mark.parametrize('eval_counts, expected', [
    ({'click': (40, 960), 'conversion': (12, 988), 'cvr': (12, 28)}, []),
    ({'click': (40, 960), 'conversion': (9, 991), 'cvr': (9, 31)},
     ["split 'eval', conversion: 9 row(s) with 1, 991 with 0 (needs at least 10 with 1 and 1 "
      'with 0)']),
    ({'click': (1000, 0), 'conversion': (12, 988), 'cvr': (12, 988)},
     ["split 'eval', click: 1000 row(s) with 1, 0 with 0 (needs at least 10 with 1 and 1 with "
      '0)']),
    ({'click': (40, 960), 'conversion': (40, 960), 'cvr': (40, 0)},
     ["split 'eval', cvr: 40 row(s) with 1, 0 with 0 (needs at least 1 with 1 and 1 with 0)"]),
], ids=['enough', 'too few eval conversions', 'clicked rows only', 'every click converts'])
def test_too_few_rows_of_a_class_are_named_by_split_and_task(eval_counts, expected):
    train = {'click': (400, 9600), 'conversion': (3, 9997), 'cvr': (3, 397)}
    assert label_count_problems({'train': train, 'eval': eval_counts}, 'eval', 1, 10) == expected
    assert label_count_problems({'train': train, 'eval': eval_counts}, 'eval', 0, 0) == []


def test_gate_stops_on_a_split_without_conversions(tmp_path, clean_anomalies, impressions):
    """200 impressions with no conversion: the gate stops before the Transform, giving each
    split's rows per class and what to do; with the minimums off it lets the run through."""
    stats = tfdv.generate_statistics_from_dataframe(impressions)
    assert impressions['conversion'].sum() == 0
    splits = {'train': clean_anomalies, 'eval': clean_anomalies}
    with pytest.raises(DataAnomaliesError) as error:
        _gate(tmp_path / 'default', splits, {'train': stats, 'eval': stats}, min_class_rows=1,
              min_eval_positives=10)
    message = str(error.value)
    assert "split 'train', conversion: 0 row(s) with 1, 200 with 0" in message
    assert "split 'eval', conversion: 0 row(s) with 1, 200 with 0 (needs at least 10" in message
    clicks = int(impressions['click'].sum())
    assert f'eval: click {clicks} / {200 - clicks}, conversion 0 / 200' in message
    assert 'FUNNEL_EVALUATION_MIN_CLASS_ROWS' in message
    assert not (tmp_path / 'default' / 'baseline').exists()
    assert (_gate(tmp_path / 'off', splits, {'train': stats, 'eval': stats}) /
            'Split-eval').exists()


def test_blank_cells_are_named_in_plain_words(impressions, raw_schema):
    """Blank ids and a blank in a complete dense column: TFDV's 'Feature shape dropped' is said
    as what it is (blank cells where the schema wants a value), with the fixes."""
    bad = impressions.copy()
    bad.loc[[3, 4], 'device'] = None
    bad.loc[3, 'price'] = None
    device, price = describe_anomalies('train', _validate(bad, raw_schema))
    assert device.startswith("split 'train', feature 'device': Blank cells: some rows have no "
                             'value, but the schema requires one in every row')
    assert 'actual = 0.99' in device and 'declare `blank: oov`' in device
    assert price.startswith("split 'train', feature 'price': Blank cells")
    assert 'Feature shape dropped' not in device + price
