"""TF Serving warmup requests shipped inside the exported model, and the requests they hold.

TF Serving replays `assets.extra/tf_serving_warmup_requests` when it loads a model version,
before the version takes traffic, so the first real requests do not pay for tracing and lookup
table initialisation. components/serving_contract.py replays the same records offline to check
the model before it is pushed.

The rows come from the Transform's raw feature spec, schema and vocabularies (the trainer does
not depend on any data source): one row of known ids and in-domain values, and one row of
never-seen ids (for the open-vocabulary string features: users, items, categories) whose
optional dense values are missing.
"""

import math
import numbers
import os
from typing import Dict, List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from trainer import features

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')  # what TF Serving reads
BATCH_SIZES = (1, 2, 4)
UNSEEN_ID = 'warmup-unseen-id'


def _domain_middle(feature_schema) -> float:
    """The middle of a numeric feature's schema domain (an open upper end counts as min + 2)."""
    domain = (feature_schema.int_domain if feature_schema.HasField('int_domain')
              else feature_schema.float_domain)
    low = domain.min if domain.HasField('min') else 0
    high = domain.max if domain.HasField('max') else low + 2
    return (low + high) / 2


def _typical_value(name, feature_spec, feature_schema, tft_output, categorical):
    """The most frequent vocabulary entry of a categorical feature, else a valid value."""
    vocabulary = tft_output.vocabulary_by_name(name) if name in categorical else []
    if feature_spec.dtype == tf.string:
        return vocabulary[0].decode() if vocabulary else UNSEEN_ID
    value = vocabulary[0] if vocabulary else _domain_middle(feature_schema)
    return int(value) if feature_spec.dtype.is_integer else float(value)


def example_rows(tft_output, spec, categorical: Sequence[str]) -> List[Dict]:
    """A row of known ids and in-domain values, and a row of unseen ids with missing values.

    `spec` is the serving feature spec (raw features without labels), `categorical` the names
    of the features with a vocabulary (the feature spec's categorical columns). Only string features
    without a schema domain get an unseen id, so both rows stay valid against the schema. A
    missing optional float is NaN, as serving_raw expects; it is left out of the tf.Example.
    """
    schema = {feature.name: feature for feature in tft_output.raw_metadata.schema.feature}
    known = {name: _typical_value(name, feature, schema[name], tft_output, categorical)
             for name, feature in spec.items()}
    unseen = dict(known)
    for name, feature in spec.items():
        if feature.dtype == tf.string and schema[name].WhichOneof('domain_info') is None:
            unseen[name] = UNSEEN_ID
        elif isinstance(feature, tf.io.VarLenFeature) and feature.dtype.is_floating:
            unseen[name] = float('nan')
    return [known, unseen]


def serialize_example(row: Dict) -> bytes:
    """A row as a serialized tf.Example; a NaN (missing) value is left out."""
    feature = {}
    for name, value in row.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, numbers.Integral):  # Python or numpy ints
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif not math.isnan(value):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _request(signature_name: str, model_name: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    return request


def examples_request(rows: List[Dict], model_name: str = '') -> predict_pb2.PredictRequest:
    """A serving_default request: the rows as a [batch] tensor of serialized tf.Examples."""
    request = _request(features.DEFAULT_SIGNATURE, model_name)
    request.inputs[features.EXAMPLES_INPUT].CopyFrom(
        tf.make_tensor_proto([serialize_example(row) for row in rows], dtype=tf.string))
    return request


def raw_request(rows: List[Dict], spec, model_name: str = '') -> predict_pb2.PredictRequest:
    """A serving_raw request: one [batch] tensor per raw feature, in the spec's dtype."""
    request = _request(features.RAW_SIGNATURE, model_name)
    for name, feature in spec.items():
        request.inputs[name].CopyFrom(
            tf.make_tensor_proto([row[name] for row in rows], dtype=feature.dtype))
    return request


def write_warmup_requests(export_dir: str, tft_output, spec, categorical: Sequence[str]) -> str:
    """Writes PredictionLogs for both signatures at each of BATCH_SIZES; returns the path."""
    rows = example_rows(tft_output, spec, categorical)
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for size in BATCH_SIZES:
            batch = [rows[i % len(rows)] for i in range(size)]
            for request in (examples_request(batch), raw_request(batch, spec)):
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str) -> List[predict_pb2.PredictRequest]:
    """The PredictRequests of a SavedModel's warmup file (tf.errors.NotFoundError if absent)."""
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
            for record in tf.data.TFRecordDataset(os.path.join(saved_model_dir, WARMUP_FILE))]
