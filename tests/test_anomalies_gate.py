"""Tests of components/anomalies_gate.py on real TFDV validation results."""

import json

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import standard_artifacts

from components.anomalies_gate import (ANOMALIES_FILE, AnomaliesGate, DataAnomaliesError,
                                       describe_anomalies)
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


def _anomalies_artifact(root, per_split):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(root)
    artifact.split_names = json.dumps(sorted(per_split))
    for split, anomalies in per_split.items():
        folder = root / f'Split-{split}'
        folder.mkdir(parents=True)
        (folder / ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
    return artifact


def test_gate_stops_the_run_on_anomalies(tmp_path, clean_anomalies, bad_anomalies):
    """The component raises DataAnomaliesError listing the bad split's problems, and passes
    when every split is clean."""
    artifact = _anomalies_artifact(tmp_path / 'bad', {'train': clean_anomalies,
                                                      'eval': bad_anomalies})
    with pytest.raises(DataAnomaliesError) as error:
        AnomaliesGate.test_call(anomalies=artifact)
    message = str(error.value)
    assert "split 'eval', feature 'device'" in message
    assert "split 'eval', feature 'click'" in message
    assert "split 'train'" not in message

    clean = _anomalies_artifact(tmp_path / 'clean', {'train': clean_anomalies,
                                                     'eval': clean_anomalies})
    assert AnomaliesGate.test_call(anomalies=clean) is None
