"""The feature spec: the simulator's default loads, and a malformed spec gives one clear error
naming the problem (and the file)."""

import pytest
from conftest import SCHEMA_PATH, SPEC

from pipeline import inputs
from pipeline.config import load_config
from trainer.features import FeatureSpec, FeatureSpecError, load_feature_spec

GOOD = """
labels: {click: clicked, conversion: bought}
categorical: [site, {name: os, embedding_dim: 4, top_k: 10, frequency_threshold: 2}]
dense: [{name: bid, log: true}, hour]
slices: [os]
"""


def _load(tmp_path, text):
    path = tmp_path / 'spec.yaml'
    path.write_text(text)
    return load_feature_spec(str(path))


def test_simulator_spec_declares_its_columns():
    assert SPEC.categorical_names == ('user_id', 'item_id', 'item_category', 'device',
                                      'ad_position')
    assert SPEC.dense_names == ('price', 'user_activity', 'item_hist_ctr', 'user_age')
    assert {f.name for f in SPEC.dense if f.log} == {'price', 'user_activity'}
    assert SPEC.raw_labels == {'click': 'click', 'conversion': 'conversion'}
    assert SPEC.slices == ('device', 'ad_position')
    entities = SPEC.input_entities
    assert {name for name, entity in entities.items() if entity == 'user'} == {
        'user_id', 'user_activity', 'user_age', 'user_activity_missing', 'user_age_missing'}
    assert {name for name, entity in entities.items() if entity == 'item'} == {
        'item_id', 'item_category', 'price', 'item_hist_ctr', 'price_missing',
        'item_hist_ctr_missing'}
    assert 'device' not in entities and 'ad_position' not in entities  # context


def test_options_are_read_and_survive_the_custom_config_round_trip(tmp_path):
    spec = _load(tmp_path, GOOD)
    os_feature = spec.categorical[1]
    assert (os_feature.embedding_dim, os_feature.top_k, os_feature.frequency_threshold) == (
        4, 10, 2)
    assert spec.categorical[0].embedding_dim is None
    assert [f.log for f in spec.dense] == [True, False]
    assert spec.raw_labels == {'click': 'clicked', 'conversion': 'bought'}
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_blank_option_of_id_columns(tmp_path):
    """A blank id stops by default; `blank: oov` reads it as an unknown id. The option reaches
    ExampleGen's input check (blank_ids) and the Transform (to_dict)."""
    spec = _load(tmp_path, GOOD.replace('[site,', '[{name: site, blank: oov},'))
    assert spec.blank_ids == {'site': 'oov', 'os': 'stop'}
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize('text, message', [
    (GOOD.replace('dense: [', 'dense: [clicked, '), "'clicked' is both label and dense "
                                                    '(a label listed as a feature)'),
    (GOOD.replace('dense: [', 'dense: [site, '), "'site' is both categorical and dense "
                                                 '(a duplicate name)'),
    (GOOD.replace('[site,', '[site, site,'), "'site' is both categorical and categorical"),
    (GOOD + 'weights: {}\n', "unknown key(s) ['weights'] in the top level"),
    (GOOD.replace('labels: {click: clicked, ', 'labels: {'), "missing key(s) ['click'] in labels"),
    (GOOD.replace('embedding_dim: 4', 'embedding_dim: 0'), "column 'os': embedding_dim=0 must be "
                                                           'a positive integer'),
    (GOOD.replace('log: true', 'log: 1'), "column 'bid': log=1 must be true or false"),
    (GOOD.replace('log: true', 'logs: true'), "unknown key(s) ['logs'] in dense entry 'bid'"),
    (GOOD.replace('[site,', '[{name: site, entity: shop},'),
     "categorical column 'site': entity='shop' must be one of user, item"),
    (GOOD.replace('hour]', '{name: hour, entity: 1}]'),
     "dense column 'hour': entity=1 must be one of user, item"),
    (GOOD.replace('[site,', '[{name: site, blank: unknown},'),
     "categorical column 'site': blank='unknown' must be stop (a blank id stops the run, the "
     'default) or oov (a blank id is an unknown id)'),
    (GOOD.replace('hour]', '{name: hour, blank: oov}]'),
     "unknown key(s) ['blank'] in dense entry 'hour'"),
    (GOOD.replace('slices: [os]', 'slices: [bid]'), "slice 'bid' is not a categorical column"),
    (GOOD.replace('dense: [', 'dense: [click, '),
     "feature 'click' collides with a name the Transform produces"),
    (GOOD.replace('dense: [', 'dense: [hour_missing, '),
     "feature 'hour_missing' collides with a name the Transform produces"),
    ('labels: {click: c, conversion: v}\ncategorical: []\ndense: []\n', 'no features'),
    ('- just\n- a list\n', 'expected a mapping'),
    ('labels: [unclosed\n', 'is not valid YAML'),
])
def test_malformed_spec_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(FeatureSpecError) as error:
        _load(tmp_path, text)
    assert message in str(error.value)
    if 'YAML' not in message:
        assert str(tmp_path / 'spec.yaml') in str(error.value)


def test_entity_experts_need_both_sides_marked(tmp_path):
    """entity_experts > 0 with a spec that marks no item-side column stops at configuration
    time, naming the spec file and the side; with both sides marked, it loads, and so does an
    unmarked spec without entity experts."""
    path = tmp_path / 'spec.yaml'
    path.write_text(GOOD.replace('[site,', '[{name: site, entity: user},'))
    env = {'FUNNEL_FEATURE_SPEC_PATH': str(path), 'FUNNEL_MODEL_ENTITY_EXPERTS': '2'}
    with pytest.raises(FeatureSpecError) as error:
        load_config(env=env)
    assert str(path) in str(error.value)
    assert 'no column is marked entity: item' in str(error.value)
    assert 'FUNNEL_MODEL_ENTITY_EXPERTS=0' in str(error.value)
    path.write_text(GOOD.replace('[site,', '[{name: site, entity: user},').replace(
        'hour]', '{name: hour, entity: item}]'))
    assert load_config(env=env).model.entity_experts == 2
    path.write_text(GOOD)  # no marks at all: fine without entity experts
    assert load_config(env={'FUNNEL_FEATURE_SPEC_PATH': str(path)}).model.entity_experts == 0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FeatureSpecError, match='cannot be read'):
        load_feature_spec(str(tmp_path / 'nope.yaml'))


def test_column_absent_from_the_schema_is_named(tmp_path):
    """An unknown column: the spec names a column the schema (so the data) does not have."""
    spec = _load(tmp_path, GOOD)
    with pytest.raises(FeatureSpecError) as error:
        inputs.check_spec_in_schema(spec, str(SCHEMA_PATH))
    assert "['site', 'os', 'bid', 'hour', 'clicked', 'bought']" in str(error.value)
    assert str(SCHEMA_PATH) in str(error.value)
    inputs.check_spec_in_schema(SPEC, str(SCHEMA_PATH))  # the default spec fits its schema
