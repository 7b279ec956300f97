"""The model in production, as a Model artifact: the Evaluator's baseline and the warm-start base.

It replaces TFX's latest-blessed-model Resolver, which the open-source Kubeflow Pipelines backend
cannot run (it compiles only container and importer executors). The model in production is what
TF Serving serves: the newest complete version under the serving folder. The Pusher
(components/atomic_pusher.py) writes a version whole (renamed into place from `.staging/`) or,
on an object store, with saved_model.pb copied last; so a numbered folder holding saved_model.pb
is complete, and anything else (`.staging`, a half-copied folder) is not a version.

The step copies that version into its Model artifact (<uri>/Format-Serving, where the Trainer
puts its own). Before the first push there is nothing to copy: the artifact holds no SavedModel,
and the Evaluator and Trainer below treat it as no model (KFP publishes every declared output,
so the artifact itself cannot be left out).
"""

import logging
import os
from typing import Optional

from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx.utils import io_utils, path_utils

SAVED_MODEL = 'saved_model.pb'


def newest_complete_version(serving_model_dir: str) -> Optional[str]:
    """The newest numbered folder under `serving_model_dir` that holds a SavedModel, or None."""
    if not fileio.exists(serving_model_dir):
        return None
    versions = [name.rstrip('/') for name in fileio.listdir(serving_model_dir)]
    complete = [int(v) for v in versions if v.isdigit()
                and fileio.exists(os.path.join(serving_model_dir, v, SAVED_MODEL))]
    return str(max(complete)) if complete else None


def holds_model(model: tfx.types.standard_artifacts.Model) -> bool:
    """Whether a Model artifact holds a SavedModel (a ProductionModel before the first push
    does not)."""
    path = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    return fileio.exists(os.path.join(path, SAVED_MODEL))


@tfx.dsl.components.component
def ProductionModel(
        serving_model_dir: tfx.dsl.components.Parameter[str],
        production_version: tfx.dsl.components.Parameter[str],
        model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model]) -> None:
    """Copies the newest complete version under `serving_model_dir` into `model`.

    `production_version` is that version when the pipeline was built (create_pipeline): the
    local runner's cache key, so the step reruns when production changed; on Kubeflow the task
    is never cached (kubeflow/runner.py). The step looks again when it runs.
    """
    version = newest_complete_version(serving_model_dir)
    model.set_string_custom_property('production_version', version or '')
    if version is None:
        logging.info('No model in production under %s yet: no baseline, no warm start.',
                     serving_model_dir)
        return
    source = os.path.join(serving_model_dir, version)
    io_utils.copy_dir(source, path_utils.serving_model_path(model.uri))
    logging.info('Model in production: version %s (%s).', version, source)


def _without_empty_model(input_dict: dict, key: str) -> dict:
    """`input_dict` without its `key` models if they hold no SavedModel."""
    models = input_dict.get(key) or []
    if models and not all(holds_model(m) for m in models):
        logging.info('No model in production yet: %s left out.', key)
        return {k: v for k, v in input_dict.items() if k != key}
    return input_dict


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator; a baseline without a SavedModel is no baseline (the first run)."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(_without_empty_model(input_dict, standard_component_specs.BASELINE_MODEL_KEY),
                   output_dict, exec_properties)


class TrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's Trainer; a base model without a SavedModel is no base model (the first run)."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(_without_empty_model(input_dict, standard_component_specs.BASE_MODEL_KEY),
                   output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """tfx.components.Evaluator with EvaluatorExecutor; same inputs, outputs and parameters."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)


class Trainer(tfx.components.Trainer):
    """tfx.components.Trainer with TrainerExecutor; same inputs, outputs and parameters."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrainerExecutor)
