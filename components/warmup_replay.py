"""Replays a SavedModel's warmup requests through its signatures and checks the serving contract.

components/serving_contract.py runs this in a fresh process,

    python -m components.warmup_replay <saved_model_dir>

so that the model is seen as TF Serving sees it: loaded from disk alone, with nothing left over
from the Trainer. The last line of stdout is a JSON report: the number of requests replayed and
one line per failed check, `warmup request <i> (<signature>, batch <n>): <check>: <details>`.
"""

import json
import sys
from typing import Dict, List

import numpy as np
import tensorflow as tf

from trainer import features, warmup

SIGNATURES = (features.DEFAULT_SIGNATURE, features.RAW_SIGNATURE)


def check_outputs(outputs: Dict[str, np.ndarray], batch: int) -> List[str]:
    """The failed checks of one response: output names, dtype, shape, range, funnel order."""
    failures = []
    missing, unexpected = set(features.OUTPUTS) - set(outputs), set(outputs) - set(features.OUTPUTS)
    if missing or unexpected:
        failures.append(f'output names: missing {sorted(missing)}, unexpected {sorted(unexpected)}')
    for name in sorted(set(outputs) & set(features.OUTPUTS)):
        value = outputs[name]
        if value.dtype != np.float32:
            failures.append(f'dtype: {name} is {value.dtype.name}, expected float32')
        if value.shape != (batch,):
            failures.append(f'shape: {name} has shape {list(value.shape)}, expected [{batch}]')
        outside = np.flatnonzero(~((value >= 0) & (value <= 1)))  # NaN is outside too
        if outside.size:
            failures.append(f'range: {name} is NaN or outside [0, 1] at rows {outside.tolist()}: '
                            f'{value.reshape(-1)[outside].tolist()}')
    p_click, p_conversion = outputs.get(features.P_CLICK), outputs.get(features.P_CONVERSION)
    if p_click is not None and p_conversion is not None and p_click.shape == p_conversion.shape:
        inverted = np.flatnonzero(p_conversion > p_click)
        if inverted.size:
            failures.append(f'funnel order: p_conversion > p_click at rows {inverted.tolist()}')
    return failures


def replay(saved_model_dir: str) -> Dict:
    """Replays every warmup request; returns {'requests': count, 'failures': [lines]}."""
    try:
        requests = warmup.read_warmup_requests(saved_model_dir)
    except tf.errors.NotFoundError:
        return {'requests': 0, 'failures': [f'warmup: no {warmup.WARMUP_FILE} in the model']}
    failures = [f'warmup: no request for signature {name!r}' for name in SIGNATURES
                if name not in {request.model_spec.signature_name for request in requests}]
    try:
        model = tf.saved_model.load(saved_model_dir)
    except (OSError, tf.errors.OpError) as e:
        return {'requests': len(requests), 'failures': failures + [f'load: {e}']}
    for i, request in enumerate(requests):
        name = request.model_spec.signature_name or features.DEFAULT_SIGNATURE
        inputs = {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()}
        batch = len(next(iter(inputs.values())))
        where = f'warmup request {i} ({name}, batch {batch})'
        if name not in model.signatures:
            failures.append(f'{where}: signature: the model has no signature {name!r}')
            continue
        try:
            outputs = model.signatures[name](**inputs)
        except (tf.errors.OpError, TypeError, ValueError) as e:
            failures.append(f'{where}: call: {type(e).__name__}: {e}')
            continue
        failures += [f'{where}: {failure}' for failure in
                     check_outputs({key: value.numpy() for key, value in outputs.items()}, batch)]
    return {'requests': len(requests), 'failures': failures}


if __name__ == '__main__':
    print(json.dumps(replay(sys.argv[1])))
