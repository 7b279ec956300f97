"""Tests of trainer/export.py: both serving signatures of a model exported with a real
Transform graph, without any training (the Transform run and the export are conftest's
transform_run and exported_model_dir)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from conftest import EXPORTED_MODEL_CONFIG, RAW_LABELS, SPEC

from trainer import features
from trainer.export import RAW_SIGNATURE, export_serving_model, serving_feature_spec
from trainer.model import build_model
from trainer.train import model_inputs
from trainer.warmup import serialize_example


def _requests(transform_run):
    """Raw serving rows (no labels): the probe rows, whose user_ids include a never-seen one
    and whose item_hist_ctr is missing in one row, plus a few training rows."""
    rows = [*transform_run.probe_df.to_dict('records'),
            *transform_run.train_df.head(4).to_dict('records')]
    for row in rows:
        for label in RAW_LABELS:
            del row[label]
    assert any(math.isnan(row['item_hist_ctr']) for row in rows)
    assert any(row['user_id'] == 'u_never_seen' for row in rows)
    return rows


def _raw_tensors(rows, raw_feature_spec):
    """One [batch] tensor per raw feature, in the schema's dtype; NaN marks a missing float."""
    return {name: tf.constant([row[name] for row in rows], dtype=raw_feature_spec[name].dtype)
            for name in rows[0]}


@pytest.fixture(scope='module')
def loaded(exported_model_dir):
    """The serving model exported by conftest's exported_model_dir (an untrained small model on
    the tiny Transform's vocabularies, built with model_inputs + build_model and saved by
    export_serving_model), loaded back as TF Serving would."""
    return tf.saved_model.load(exported_model_dir)


def test_model_inputs_follow_the_transform(transform_run):
    """Vocabulary sizes include the OOV buckets; float inputs are the dense features and the
    missing indicator, without the labels."""
    vocab_sizes, dense = model_inputs(transform_run.tft_output, SPEC)
    assert set(vocab_sizes) == set(SPEC.categorical_names)
    for name, size in vocab_sizes.items():
        assert size == transform_run.tft_output.num_buckets_for_transformed_feature(name)
    assert dense == sorted([*SPEC.dense_names, 'item_hist_ctr_missing'])


def _check_outputs(outputs, batch):
    assert set(outputs) == set(features.OUTPUTS)
    values = {name: value.numpy() for name, value in outputs.items()}
    for name, value in values.items():
        assert value.shape == (batch,) and value.dtype == np.float32, name
        assert ((value >= 0) & (value <= 1)).all(), name
    assert (values[features.P_CONVERSION] <= values[features.P_CLICK]).all()
    np.testing.assert_allclose(values[features.P_CONVERSION],
                               values[features.P_CLICK] * values[features.P_CVR], rtol=1e-6)
    return values


def test_exported_signatures(loaded):
    """The export has exactly the two documented signatures, with their input names."""
    assert set(loaded.signatures) == {'serving_default', RAW_SIGNATURE}
    _, kwargs = loaded.signatures['serving_default'].structured_input_signature
    assert set(kwargs) == {'examples'}
    _, kwargs = loaded.signatures[RAW_SIGNATURE].structured_input_signature
    assert set(kwargs) == set(SPEC.categorical_names) | set(SPEC.dense_names)


def test_serving_default_takes_tf_examples_without_labels(loaded, transform_run):
    """serving_default parses serialized raw tf.Examples (no labels) into three [batch] outputs."""
    rows = _requests(transform_run)
    outputs = loaded.signatures['serving_default'](
        examples=tf.constant([serialize_example(row) for row in rows]))
    _check_outputs(outputs, len(rows))


def test_both_signatures_agree(loaded, transform_run, raw_feature_spec):
    """serving_raw (named tensors, NaN for missing, an unseen user) gives the same values as
    serving_default on the same rows."""
    rows = _requests(transform_run)
    raw = loaded.signatures[RAW_SIGNATURE](**_raw_tensors(rows, raw_feature_spec))
    from_examples = loaded.signatures['serving_default'](
        examples=tf.constant([serialize_example(row) for row in rows]))
    raw, from_examples = _check_outputs(raw, len(rows)), _check_outputs(from_examples, len(rows))
    for name in features.OUTPUTS:
        np.testing.assert_allclose(raw[name], from_examples[name], rtol=1e-6, atol=1e-7)
    assert np.ptp(raw[features.P_CLICK]) > 0  # rows differ, so agreement is not trivial


def test_serving_matches_the_beam_transform(loaded, exported_model_dir, transform_run,
                                            raw_feature_spec):
    """No training/serving skew: serving the raw rows equals running the (reloaded Keras)
    model on the rows transformed by tft_beam (imputed item_hist_ctr and OOV user included)."""
    model = tf.keras.models.load_model(exported_model_dir)
    rows = [{k: v for k, v in row.items() if k not in RAW_LABELS}
            for row in transform_run.probe_df.to_dict('records')]
    served = loaded.signatures[RAW_SIGNATURE](**_raw_tensors(rows, raw_feature_spec))
    transformed = {name: tf.constant([row[name] for row in transform_run.probe_rows],
                                     dtype=tf.int64 if name in SPEC.categorical_names
                                     else tf.float32)
                   for name in model.input_names}
    direct = model(transformed, training=False)
    for name in features.OUTPUTS:
        np.testing.assert_allclose(served[name].numpy(), tf.reshape(direct[name], [-1]).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_missing_value_differs_from_present_value(loaded, transform_run, raw_feature_spec):
    """NaN in serving_raw really means "missing": it is not silently read as a number."""
    row = {k: v for k, v in transform_run.probe_df.to_dict('records')[1].items()
           if k not in RAW_LABELS}
    missing, present = dict(row, item_hist_ctr=float('nan')), dict(row, item_hist_ctr=0.05)
    outputs = loaded.signatures[RAW_SIGNATURE](
        **_raw_tensors([missing, present], raw_feature_spec))
    p_click = outputs[features.P_CLICK].numpy()
    assert not np.isnan(p_click).any() and p_click[0] != p_click[1]


# --- Serving robustness: odd but legal requests get valid probabilities, bad ones a clear error

def _base_row(transform_run):
    return {k: v for k, v in transform_run.probe_df.to_dict('records')[1].items()
            if k not in features.LABELS}


def robustness_requests(base_row):
    """case -> rows that a served model must answer with valid probabilities."""
    unseen = dict(base_row, user_id='u-never-seen', item_id='i-never-seen',
                  item_category='c-never-seen', device='smart-tv', ad_position=49)
    missing = dict(base_row, item_hist_ctr=float('nan'))
    extreme = [dict(base_row, price=price, user_activity=activity, user_age=age,
                    item_hist_ctr=ctr)
               for price, activity, age, ctr in [(0.0, 0, 0.0, 0.0), (1e9, 2**40, 120.0, 1.0),
                                                 (3e38, 2**62, 1e6, 1e6), (-1e9, -5, -1.0, -1.0)]]
    return {'unseen ids in every categorical feature': [unseen],
            'missing optional feature (item_hist_ctr)': [missing],
            'extreme dense values': extreme,
            'empty batch': []}


def serve_both(model, rows, raw_feature_spec):
    """The outputs of serving_default and serving_raw for `rows` (an empty batch allowed)."""
    from_examples = model.signatures['serving_default'](
        examples=tf.constant([serialize_example(row) for row in rows], tf.string))
    from_raw = model.signatures[RAW_SIGNATURE](**{
        name: tf.constant([row[name] for row in rows], dtype=spec.dtype, shape=[len(rows)])
        for name, spec in raw_feature_spec.items() if name not in features.LABELS})
    return from_examples, from_raw


@pytest.mark.reliability
@pytest.mark.parametrize('case', list(robustness_requests({})))
def test_odd_requests_get_valid_probabilities(loaded, transform_run, raw_feature_spec,
                                              reliability, case):
    """Unseen ids (OOV buckets, even for the closed device domain), a missing optional value,
    extreme and out-of-domain dense values, an empty batch: through both signatures, every
    output is a probability (no NaN, in [0, 1]), p_conversion <= p_click, and both agree."""
    rows = robustness_requests(_base_row(transform_run))[case]
    from_examples, from_raw = serve_both(loaded, rows, raw_feature_spec)
    for outputs in (from_examples, from_raw):
        _check_outputs(outputs, len(rows))
    for name in features.OUTPUTS:
        np.testing.assert_allclose(from_examples[name], from_raw[name], rtol=1e-6, atol=1e-7)
    reliability(case, 'served', f'{len(rows)} row(s), both signatures')


@pytest.mark.reliability
def test_a_request_missing_a_required_feature_is_refused(loaded, transform_run,
                                                         raw_feature_spec, reliability):
    """A tf.Example without `device` fails parsing with an error naming the feature; a raw
    request without the `device` tensor fails naming the missing argument."""
    row = {k: v for k, v in _base_row(transform_run).items() if k != 'device'}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='Feature: device .* is required but could not be found'):
        loaded.signatures['serving_default'](examples=tf.constant([serialize_example(row)]))
    with pytest.raises(TypeError, match='device'):
        loaded.signatures[RAW_SIGNATURE](**{
            name: tf.constant([value], dtype=raw_feature_spec[name].dtype)
            for name, value in row.items()})
    reliability('request missing a required feature', 'refused',
                'InvalidArgumentError / TypeError naming `device`')


def test_entity_expert_model_exports_the_same_signatures(loaded, transform_run, raw_feature_spec,
                                                         tmp_path):
    """An MMoE with user-side and item-side experts (model.entity_experts) exports with exactly
    the signatures, inputs and outputs of the default model and serves both signatures alike."""
    import dataclasses

    from conftest import EXPORTED_MODEL_CONFIG

    from trainer.export import export_serving_model
    from trainer.model import build_model

    config = dataclasses.replace(EXPORTED_MODEL_CONFIG, num_experts=1, entity_experts=1)
    tf.keras.utils.set_random_seed(0)
    model = build_model(config, *model_inputs(transform_run.tft_output, SPEC),
                        input_entities=SPEC.input_entities)
    assert [len(side) for side in model.get_layer('mmoe').entity_expert_layers] == [1, 1]
    export_serving_model(model, transform_run.tft_output, str(tmp_path / 'entity'), SPEC)
    entity = tf.saved_model.load(str(tmp_path / 'entity'))
    assert set(entity.signatures) == set(loaded.signatures)
    for name, signature in entity.signatures.items():
        assert signature.structured_input_signature == (
            loaded.signatures[name].structured_input_signature)
        assert signature.structured_outputs == loaded.signatures[name].structured_outputs
    rows = _requests(transform_run)
    raw = _check_outputs(entity.signatures[RAW_SIGNATURE](**_raw_tensors(rows, raw_feature_spec)),
                         len(rows))
    from_examples = _check_outputs(entity.signatures['serving_default'](
        examples=tf.constant([serialize_example(row) for row in rows])), len(rows))
    for name in features.OUTPUTS:
        np.testing.assert_allclose(raw[name], from_examples[name], rtol=1e-6, atol=1e-7)


def test_the_saved_transform_layer_serves_raw_features_after_training_used_it(
        transform_run, tmp_path):
    """The Trainer's input pipeline calls tft_output's cached transform layer on parsed examples
    with labels (the Transform not materializing); the exported SavedModel's own tft_layer still
    takes the serving features alone (a caller of `loaded.tft_layer`, e.g. bench/speed.py)."""
    def parsed(rows, spec):
        return tf.io.parse_example([serialize_example(row) for row in rows], spec)

    tft_output = tft.TFTransformOutput(transform_run.transform_fn_dir)
    tft_output.transform_features_layer()(parsed(
        transform_run.train_df.head(4).to_dict('records'), tft_output.raw_feature_spec()))
    model = build_model(EXPORTED_MODEL_CONFIG, *model_inputs(tft_output, SPEC))
    export_serving_model(model, tft_output, str(tmp_path / 'model'), SPEC)

    transformed = tf.saved_model.load(str(tmp_path / 'model')).tft_layer(
        parsed(_requests(transform_run), serving_feature_spec(tft_output, SPEC)))
    assert set(model.input_names) <= set(transformed)
