"""make schema's inference (pipeline/infer_schema.py) checked with TFDV's own validation: the
schema accepts the data it was inferred from (blank cells included) and another day's sample,
and its protective rules stop a sign error and a change of units.

`pytest -s tests/test_infer_schema.py` prints the drift distances the README quotes.
"""

import pytest
import tensorflow_data_validation as tfdv
from conftest import SPEC
from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipeline import infer_schema
from pipeline.config import load_config
from simulator.funnel import simulate

ROWS = 2000
DRIFT = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH: 'infinity_norm',
         anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH:
         'jensen_shannon_divergence'}


@pytest.fixture(scope='module')
def inferred(tmp_path_factory):
    """The schema `make schema` writes for 2,000 simulated rows (item_hist_ctr blank in about
    20% of them), and a function giving the statistics of any data frame as ExampleGen
    decodes it."""
    root = tmp_path_factory.mktemp('infer')

    def statistics(df, name):
        (root / name).mkdir()
        df.to_csv(root / name / 'impressions.csv', index=False)
        return infer_schema._statistics([str(root / name / 'impressions.csv')], 'csv',
                                        SPEC.label_columns)

    day_1, _ = simulate(ROWS, seed=1)
    assert day_1['item_hist_ctr'].isna().any()
    (root / 'data').mkdir()
    day_1.to_csv(root / 'data' / 'impressions.csv', index=False)
    config = load_config(env={}, data_root=str(root / 'data'),
                         schema_path=str(root / 'schema' / 'schema.pbtxt'))
    schema = infer_schema.infer_schema(config)
    assert tfdv.load_schema_text(config.schema_path) == schema
    return schema, statistics(day_1, 'day-1'), statistics


def _anomalies(schema, current, previous):
    """Feature -> TFDV's reasons (short description: description)."""
    found = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    return {name: [f'{r.short_description}: {r.description}' for r in info.reason]
            for name, info in found.anomaly_info.items()}


def test_the_schema_accepts_its_own_data(inferred):
    schema, day_1, _ = inferred
    assert _anomalies(schema, day_1, None) == {}
    ctr = next(f for f in schema.feature if f.name == 'item_hist_ctr')
    assert ctr.value_count.max == 1 and not ctr.HasField('shape')  # blank cells allowed
    assert (ctr.float_domain.min, ctr.float_domain.max) == (0, 1)  # a rate


def test_another_day_passes_and_drift_sits_below_the_thresholds(inferred):
    """Another simulated day: no anomaly; each column's distance (measured with the threshold
    lowered to 1e-9) is below half its threshold."""
    schema, day_1, statistics = inferred
    day_2 = statistics(simulate(ROWS, seed=2)[0], 'day-2')
    assert _anomalies(schema, day_2, day_1) == {}
    measuring = type(schema)()
    measuring.CopyFrom(schema)
    for feature in measuring.feature:
        for comparator in DRIFT.values():
            if feature.drift_comparator.HasField(comparator):
                getattr(feature.drift_comparator, comparator).threshold = 1e-9
    found = tfdv.validate_statistics(day_2, measuring, previous_statistics=day_1)
    for name, info in sorted(found.anomaly_info.items()):
        (reason,) = [r for r in info.reason if r.type in DRIFT]
        distance = float(reason.description.split(' is ')[1].split(' ')[0])
        threshold = getattr(next(f for f in schema.feature if f.name == name).drift_comparator,
                            DRIFT[reason.type]).threshold
        print(f'{name}: {DRIFT[reason.type]} {distance:.3g} (threshold {threshold})')
        assert distance < threshold / 2, name
    assert set(found.anomaly_info) == set(SPEC.columns) - set(SPEC.label_columns)


@pytest.mark.parametrize('change, expected', [
    (lambda df: df.assign(price=df['price'] * 100),
     ['Out-of-range values: Unexpectedly high value', 'High approximate Jensen-Shannon']),
    (lambda df: df.assign(price=-df['price']), ['Out-of-range values: Unexpectedly low value']),
    (lambda df: df.assign(user_activity=df['user_activity'] * 1000),
     ['Out-of-range values: Unexpectedly large value', 'High approximate Jensen-Shannon']),
], ids=['prices in cents', 'sign error', 'counts times 1000'])
def test_a_unit_change_or_sign_error_stops(inferred, request, change, expected):
    schema, day_1, statistics = inferred
    day, _ = simulate(ROWS, seed=3)
    anomalies = _anomalies(schema, statistics(change(day), request.node.callspec.id), day_1)
    (column,) = anomalies
    for text in expected:
        assert any(reason.startswith(text) for reason in anomalies[column]), anomalies
