"""The requests a client sends to the TF Serving Deployment of this folder (see the README).

REST (port 8501): POST /v1/models/funnel-mmoe:predict with the body `rest_predict_body(rows)`,
raw features in TF Serving's row format on the `serving_raw` signature.
gRPC (port 8500): PredictionService.Predict with `grpc_predict_request(rows)`, the rows as
serialized tf.Examples on `serving_default`.
tests/test_serving_requests.py runs exactly these requests through an exported model.

    python -m kubeflow.serving.client_examples > body.json   # the README's REST body
"""

import json
from typing import Dict, List

from tensorflow_serving.apis import predict_pb2

from pipeline.config import PipelineConfig
from trainer import features, warmup

MODEL_NAME = PipelineConfig().pipeline_name  # TF Serving's model name (models.config)

# Raw features as Python values: a returning user on a known item, and a new user on a new item
# without a click history (NaN marks the missing item_hist_ctr; TF Serving's JSON accepts NaN).
EXAMPLE_ROWS = [
    {'user_id': 'u7091', 'item_id': 'i4848', 'item_category': 'c7', 'device': 'desktop',
     'ad_position': 1, 'price': 19.23, 'user_activity': 3, 'item_hist_ctr': 0.0303,
     'user_age': 63.4},
    {'user_id': 'u_new', 'item_id': 'i_new', 'item_category': 'c19', 'device': 'mobile',
     'ad_position': 4, 'price': 6.68, 'user_activity': 0, 'item_hist_ctr': float('nan'),
     'user_age': 24.0},
]


def rest_predict_body(rows: List[Dict]) -> str:
    """The JSON body of a REST :predict call on serving_raw, one instance per row."""
    return json.dumps({'signature_name': features.RAW_SIGNATURE, 'instances': rows})


def grpc_predict_request(rows: List[Dict]) -> predict_pb2.PredictRequest:
    """A gRPC PredictRequest on serving_default: inputs['examples'] = serialized tf.Examples."""
    return warmup.examples_request(rows, model_name=MODEL_NAME)


if __name__ == '__main__':
    print(rest_predict_body(EXAMPLE_ROWS))
