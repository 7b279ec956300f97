"""The client requests of docs/serving.md (kubeflow/serving/client_examples.py), run through an
exported model the way TF Serving runs them: REST :predict in row format on serving_raw, gRPC
Predict with serialized tf.Examples on serving_default."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.warmup_replay import check_outputs
from kubeflow.serving.client_examples import (
    EXAMPLE_ROWS,
    MODEL_NAME,
    grpc_predict_request,
    rest_predict_body,
)
from pipeline.config import load_config
from trainer import features


@pytest.fixture(scope='module')
def model(exported_model_dir):
    return tf.saved_model.load(exported_model_dir)


def serve_rest(model, body: str):
    """What TF Serving does with a row-format :predict body: each input tensor stacks the
    instances' values of that name in the signature's dtype. Returns the output arrays and the
    JSON response (one object of outputs per instance)."""
    request = json.loads(body)  # Python's json reads the NaN token, as TF Serving does
    signature = model.signatures[request.get('signature_name', features.DEFAULT_SIGNATURE)]
    inputs = {name: tf.constant([instance[name] for instance in request['instances']], spec.dtype)
              for name, spec in signature.structured_input_signature[1].items()}
    outputs = {name: value.numpy() for name, value in signature(**inputs).items()}
    predictions = [{name: float(str(value[i])) for name, value in sorted(outputs.items())}
                   for i in range(len(request['instances']))]  # float32's shortest digits
    return outputs, json.dumps({'predictions': predictions})


def serve_grpc(model, request):
    """What TF Serving does with a PredictRequest: TensorProtos in, the signature's outputs."""
    signature = model.signatures[request.model_spec.signature_name]
    outputs = signature(**{name: tf.constant(tf.make_ndarray(tensor))
                           for name, tensor in request.inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def test_rest_body_is_row_format_on_serving_raw(model):
    """signature_name plus one instance per row with every raw input of serving_raw; the missing
    item_hist_ctr is the NaN token TF Serving's JSON parser accepts."""
    body = rest_predict_body(EXAMPLE_ROWS)
    request = json.loads(body)
    assert request['signature_name'] == features.RAW_SIGNATURE
    inputs = model.signatures[features.RAW_SIGNATURE].structured_input_signature[1]
    assert [set(instance) for instance in request['instances']] == [set(inputs)] * 2
    assert '"item_hist_ctr": NaN' in body


def test_docs_show_this_body():
    """The REST body of docs/serving.md is rest_predict_body(EXAMPLE_ROWS), up to line breaks."""
    doc = (Path(__file__).resolve().parents[1] / 'docs' / 'serving.md').read_text()
    start = doc.index('```json\n{"signature_name"') + len('```json\n')
    shown = doc[start:doc.index('```', start)]
    assert json.dumps(json.loads(shown)) == rest_predict_body(EXAMPLE_ROWS)


def test_rest_predict_meets_the_contract(model):
    outputs, response = serve_rest(model, rest_predict_body(EXAMPLE_ROWS))
    assert check_outputs(outputs, len(EXAMPLE_ROWS)) == []
    predictions = json.loads(response)['predictions']
    assert [set(p) for p in predictions] == [set(features.OUTPUTS)] * len(EXAMPLE_ROWS)


def test_grpc_request_targets_the_served_model_with_tf_examples(model):
    """model_spec names the pipeline's model and serving_default; inputs['examples'] is a
    [batch] string tensor of tf.Examples, the missing item_hist_ctr left out."""
    request = grpc_predict_request(EXAMPLE_ROWS)
    assert request.model_spec.name == MODEL_NAME == load_config(env={}).pipeline_name
    assert request.model_spec.signature_name == features.DEFAULT_SIGNATURE
    assert set(request.inputs) == {features.EXAMPLES_INPUT}
    examples = tf.make_ndarray(request.inputs[features.EXAMPLES_INPUT])
    assert examples.shape == (len(EXAMPLE_ROWS),)
    parsed = [tf.train.Example.FromString(example).features.feature for example in examples]
    assert 'item_hist_ctr' in parsed[0] and 'item_hist_ctr' not in parsed[1]
    assert math.isnan(EXAMPLE_ROWS[1]['item_hist_ctr'])
    assert check_outputs(serve_grpc(model, request), len(EXAMPLE_ROWS)) == []


def test_rest_and_grpc_give_the_same_probabilities(model):
    rest, _ = serve_rest(model, rest_predict_body(EXAMPLE_ROWS))
    grpc = serve_grpc(model, grpc_predict_request(EXAMPLE_ROWS))
    for name in features.OUTPUTS:
        np.testing.assert_allclose(rest[name], grpc[name], rtol=1e-6)
