"""A component that blesses the Trainer's model for the Pusher only if it keeps the serving
contract.

TFX's InfraValidator needs a model server binary; this check runs offline instead. It loads the
candidate SavedModel in a fresh Python process (components/warmup_replay.py), replays the warmup
requests shipped in its assets.extra through both signatures and checks the output names
(p_click, p_cvr, p_conversion), float32 dtype, [batch] shape, values in [0, 1] without NaN and
the funnel order p_conversion <= p_click. The result is an InfraBlessing whose `blessed` custom
property the Pusher reads (its `infra_blessing` input): a model that breaks the contract is not
pushed, and the log names each failed check and request. The full report stays in the blessing's
folder.
"""

import json
import logging
import os
import subprocess
import sys

import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import path_utils

REPORT_FILE = 'serving_contract.json'
TIMEOUT_SECONDS = 900


class ContractCheckError(RuntimeError):
    """The check itself could not run: an error of the check, not a verdict on the model."""


def run_contract_check(saved_model_dir: str) -> dict:
    """Runs components/warmup_replay.py on `saved_model_dir` in a fresh process; its report."""
    result = subprocess.run([sys.executable, '-m', 'components.warmup_replay', saved_model_dir],
                            capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                            env={**os.environ, 'TF_USE_LEGACY_KERAS': '1'})
    if result.returncode != 0:
        raise ContractCheckError(f'The serving contract check crashed on {saved_model_dir} '
                                 f'(exit code {result.returncode}):\n{result.stderr[-4000:]}')
    return json.loads(result.stdout.splitlines()[-1])


@tfx.dsl.components.component
def ServingContractCheck(
        model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
        infra_blessing: tfx.dsl.components.OutputArtifact[
            tfx.types.standard_artifacts.InfraBlessing]) -> None:
    """Sets infra_blessing's `blessed` to 1 if every warmup request meets the contract, else 0."""
    saved_model_dir = path_utils.serving_model_path(model.uri,
                                                    path_utils.is_old_model_artifact(model))
    report = run_contract_check(saved_model_dir)
    tf.io.gfile.makedirs(infra_blessing.uri)  # KFP's launcher creates only its parent
    with tf.io.gfile.GFile(os.path.join(infra_blessing.uri, REPORT_FILE), 'w') as f:
        json.dump(report, f, indent=2)
    blessed = not report['failures']
    infra_blessing.set_int_custom_property('blessed', int(blessed))
    if blessed:
        logging.info('Serving contract holds on all %d warmup requests of %s.',
                     report['requests'], saved_model_dir)
    else:
        logging.error('Serving contract broken by %s; the Pusher will not push it:\n  %s',
                      saved_model_dir, '\n  '.join(report['failures']))
