"""Serving signatures: raw features in, the Transform graph inside, funnel probabilities out.

- `serving_default`: serialized tf.Examples of raw features (TF Serving classify/predict with
  tf.Example, and what TFMA's Evaluator calls).
- `serving_raw`: one named tensor per raw feature (what a REST client sends as JSON
  `instances`). An optional dense feature that is missing is sent as NaN.
Both return p_click, p_cvr and p_conversion as [batch] float32 tensors, calibrated when the
Trainer fitted a calibration (trainer/calibration.py). TF Serving warmup
requests for both signatures ship in `assets.extra/` (trainer/warmup.py).
"""

from typing import Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from trainer import calibration, features, warmup
from trainer.features import DEFAULT_SIGNATURE, EXAMPLES_INPUT, RAW_SIGNATURE


def serving_feature_spec(tft_output: tft.TFTransformOutput,
                          feature_spec: features.FeatureSpec) -> Dict[str, tf.io.FixedLenFeature]:
    """The raw feature spec of the model's features: no labels, which are not known at serving
    time, and no column the feature spec leaves out."""
    raw = tft_output.raw_feature_spec()
    return {name: raw[name] for name in feature_spec.categorical_names + feature_spec.dense_names}


def _raw_input_signature(spec) -> Dict[str, tf.TensorSpec]:
    return {name: tf.TensorSpec([None], feature.dtype, name=name) for name, feature in spec.items()}


def to_raw_feature(value: tf.Tensor, feature) -> tf.Tensor:
    """A [batch] request tensor in the form the Transform graph expects for this feature.

    Optional features are VarLenFeatures in the schema, i.e. SparseTensors; NaN marks missing.
    """
    if isinstance(feature, tf.io.FixedLenFeature):
        return tf.reshape(value, [-1] + list(feature.shape))
    present = tf.logical_not(tf.math.is_nan(value)) if value.dtype.is_floating else tf.ones_like(
        value, tf.bool)
    indices = tf.where(present)
    return tf.SparseTensor(tf.concat([indices, tf.zeros_like(indices)], axis=1),
                           tf.gather_nd(value, indices),
                           tf.stack([tf.shape(value, out_type=tf.int64)[0],
                                     tf.constant(1, tf.int64)]))


def export_serving_model(model: tf.keras.Model, tft_output: tft.TFTransformOutput,
                         export_dir: str, feature_spec: features.FeatureSpec,
                         calibrator: Optional[calibration.FunnelCalibration] = None) -> None:
    """Saves `model` with the Transform graph attached, both serving signatures and warmup; the
    signatures apply `calibrator` to the model's outputs when one is given."""
    # Tracked, so its assets are saved; a layer of its own, not tft_output's cached one, whose
    # traces (the Trainer's input pipeline calls it with labels) the SavedModel would keep.
    model.tft_layer = tft.TransformFeaturesLayer(tft_output)
    if calibrator is not None:
        model.calibration = calibrator  # tracked: its fitted weights are saved with the model
    spec = serving_feature_spec(tft_output, feature_spec)

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        outputs = model({name: transformed[name] for name in model.input_names})
        if calibrator is not None:
            outputs = model.calibration(outputs, {name: transformed[name]
                                                  for name in calibrator.slice_buckets})
        return {name: tf.reshape(value, [-1]) for name, value in outputs.items()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_tf_examples(serialized):
        return predict(tf.io.parse_example(serialized, spec))

    @tf.function(input_signature=[_raw_input_signature(spec)])
    def serve_raw(raw):
        return predict({name: to_raw_feature(raw[name], spec[name]) for name in spec})

    model.save(export_dir, save_format='tf', signatures={
        DEFAULT_SIGNATURE: serve_tf_examples.get_concrete_function(),
        RAW_SIGNATURE: serve_raw.get_concrete_function(),
    })
    warmup.write_warmup_requests(export_dir, tft_output, spec, feature_spec.categorical_names)
