"""Tests of trainer/preprocessing.py run for real with tf.Transform on Beam (see conftest)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from conftest import PROBE_USERS, SPEC, TRAIN_USER_COUNTS, VOCABULARY
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from trainer import features
from trainer.preprocessing import preprocessing_fn


def _column(rows, name):
    return np.array([row[name] for row in rows], dtype=np.float64)


def _z(values):
    """Population z-score, as tft.scale_to_z_score computes it."""
    return (values - values.mean()) / values.std()


def test_outputs_are_the_model_features_and_labels(transform_run):
    """The Transform emits exactly the features the model and the loss read, as scalars."""
    expected = (set(SPEC.categorical_names) | set(SPEC.dense_names)
                | {features.missing_indicator_name('item_hist_ctr')} | set(features.LABELS))
    spec = transform_run.tft_output.transformed_feature_spec()
    assert set(spec) == expected
    assert all(feature.shape == [] for feature in spec.values())
    assert set(transform_run.train_rows[0]) == expected


def test_frequent_ids_get_vocabulary_ids(transform_run):
    """Ids seen at least frequency_threshold times are the vocabulary, ids in [0, size)."""
    output = transform_run.tft_output
    vocabulary = output.vocabulary_by_name('user_id')
    assert vocabulary == [b'u_hot', b'u_warm']  # most frequent first; u_rare is left out
    assert output.num_buckets_for_transformed_feature('user_id') == (
        len(vocabulary) + VOCABULARY['num_oov_buckets'])
    ids = _column(transform_run.train_rows, 'user_id')
    users = transform_run.train_df['user_id'].to_numpy()
    assert (ids[users == 'u_hot'] == 0).all()
    assert (ids[users == 'u_warm'] == 1).all()


def test_rare_and_unseen_ids_fall_into_oov_buckets(transform_run):
    """Rare ids (in training) and never-seen ids (at transform time) get OOV ids, never errors."""
    size = len(transform_run.tft_output.vocabulary_by_name('user_id'))
    oov = range(size, size + VOCABULARY['num_oov_buckets'])
    train_ids = _column(transform_run.train_rows, 'user_id')
    rare = train_ids[transform_run.train_df['user_id'].to_numpy() == 'u_rare']
    assert len(rare) == TRAIN_USER_COUNTS['u_rare'] < VOCABULARY['frequency_threshold']
    assert set(rare) <= set(oov) and len(set(rare)) == 1

    probe_ids = dict(zip(transform_run.probe_df['user_id'],
                         _column(transform_run.probe_rows, 'user_id')))
    assert set(probe_ids) == set(PROBE_USERS)
    assert probe_ids['u_never_seen'] in oov
    assert probe_ids['u_rare'] == rare[0]  # the same hashed bucket as in training
    assert (probe_ids['u_hot'], probe_ids['u_warm']) == (0, 1)


def test_every_categorical_id_is_inside_its_embedding_table(transform_run):
    """All categorical outputs are valid embedding rows: 0 <= id < vocabulary + OOV buckets."""
    output = transform_run.tft_output
    for name in SPEC.categorical_names:
        ids = np.concatenate([_column(transform_run.train_rows, name),
                              _column(transform_run.probe_rows, name)])
        assert ids.min() >= 0 and ids.max() < output.num_buckets_for_transformed_feature(name), name


@pytest.mark.parametrize('name', ['price', 'user_activity', 'user_age'])
def test_dense_features_are_z_scored(transform_run, name):
    """Dense features come out with mean 0 and standard deviation 1 over the training rows."""
    values = _column(transform_run.train_rows, name)
    assert abs(values.mean()) < 1e-5
    assert values.std() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize('name, log', [('price', True), ('user_activity', True),
                                       ('user_age', False)])
def test_log1p_only_for_heavy_tailed_features(transform_run, name, log):
    """price and user_activity are log1p'd before the z-score; user_age is z-scored as is."""
    raw = transform_run.train_df[name].to_numpy(np.float64)
    expected = _z(np.log1p(raw) if log else raw)
    np.testing.assert_allclose(_column(transform_run.train_rows, name), expected, atol=1e-4)


def test_missing_item_hist_ctr_is_imputed_and_flagged(transform_run):
    """A missing item_hist_ctr becomes 0.0 (the mean) with indicator 1.0; present ones are the
    z-score of the present values only, with indicator 0.0."""
    raw = transform_run.train_df['item_hist_ctr'].to_numpy(np.float64)
    missing = np.isnan(raw)
    values = _column(transform_run.train_rows, 'item_hist_ctr')
    indicator = _column(transform_run.train_rows, 'item_hist_ctr_missing')
    np.testing.assert_array_equal(indicator, missing.astype(np.float64))
    np.testing.assert_array_equal(values[missing], 0.0)
    np.testing.assert_allclose(values[~missing], _z(raw[~missing]), atol=1e-4)

    probe_raw = transform_run.probe_df['item_hist_ctr'].to_numpy(np.float64)
    probe_indicator = _column(transform_run.probe_rows, 'item_hist_ctr_missing')
    np.testing.assert_array_equal(probe_indicator, np.isnan(probe_raw).astype(np.float64))
    np.testing.assert_array_equal(
        _column(transform_run.probe_rows, 'item_hist_ctr')[np.isnan(probe_raw)], 0.0)


def test_labels_pass_through_as_floats(transform_run):
    """click and conversion come out unchanged, as float32 (what the BCE losses take)."""
    spec = transform_run.tft_output.transformed_feature_spec()
    for name in features.LABELS:
        assert spec[name].dtype.name == 'float32'
        np.testing.assert_array_equal(_column(transform_run.train_rows, name),
                                      transform_run.train_df[name].to_numpy(np.float64))


def test_blank_ids_of_an_optional_column_are_out_of_vocabulary(tmp_path):
    """`blank: oov`: the id column is optional in the schema (a VarLenFeature, as `make schema`
    writes it); its vocabulary is computed over the present ids only, so the most frequent
    "value", a blank (12 rows of 30), is no vocabulary entry and a blank row gets an OOV id."""
    spec = features.parse_feature_spec({
        'labels': {'click': 'clicked', 'conversion': 'bought'},
        'categorical': [{'name': 'site', 'blank': 'oov'}], 'dense': []})
    raw_spec = {'site': tf.io.VarLenFeature(tf.string),
                'clicked': tf.io.FixedLenFeature([], tf.int64),
                'bought': tf.io.FixedLenFeature([], tf.int64)}
    sites = [[b'a']] * 10 + [[b'b']] * 8 + [[]] * 12
    rows = [{'site': site, 'clicked': 1, 'bought': 0} for site in sites]
    config = {'features': spec.to_dict(), 'vocabulary': {'top_k': 10, 'frequency_threshold': 1,
                                                         'num_oov_buckets': 2}}
    with tft_beam.Context(temp_dir=str(tmp_path)):
        (transformed, _), transform_fn = (
            (rows, dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
                raw_spec)))
            | tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, config)))
    _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / 'transform'))
    assert tft.TFTransformOutput(str(tmp_path / 'transform')).vocabulary_by_name('site') == [
        b'a', b'b']
    ids = [row['site'] for row in transformed]
    assert set(ids[:10]) == {0} and set(ids[10:18]) == {1}
    assert len(set(ids[18:])) == 1 and ids[18] in (2, 3)  # one OOV bucket of the two
