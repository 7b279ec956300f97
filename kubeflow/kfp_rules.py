"""The rules a compiled spec must follow to run on the open-source Kubeflow Pipelines backend that
the backend's compiler does not check (kubeflow/backendcheck runs that compiler: the executor
kinds, the schema version and the package format are its, not re-stated here).

Read in kubeflow/pipelines (the same from 2.0 to 2.17):
- backend/src/v2/component/launcher_v2.go (getPlaceholders, compileCmdAndArgs): the only
  placeholders the launcher substitutes in a container's command and arguments are `{{$}}` (the
  ExecutorInput as JSON), `{{$.inputs.artifacts['x'].uri|path}}`,
  `{{$.outputs.artifacts['x'].uri|path}}`, `{{$.inputs.parameters['x']}}` and
  `{{$.outputs.parameters['x'].output_file}}`; any other reaches the container verbatim.
Beam arguments belong only to containers that run Beam: elsewhere they do nothing but, with a
cloud runner, make a container without credentials ask for them.
"""

import importlib
import re
from typing import List

from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

PLACEHOLDER = re.compile(r'\{\{\$.*?\}\}')
RESOLVED_PLACEHOLDERS = [re.compile(pattern) for pattern in (
    r'\{\{\$\}\}',
    r"\{\{\$\.(inputs|outputs)\.artifacts\['[^']+'\]\.(uri|path)\}\}",
    r"\{\{\$\.inputs\.parameters\['[^']+'\]\}\}",
    r"\{\{\$\.outputs\.parameters\['[^']+'\]\.output_file\}\}")]
# The flags of TFX's container entrypoint (kubeflow_v2_run_executor); every other argument of a
# compiled TFX container is a Beam argument.
TFX_ENTRYPOINT_FLAGS = ('--executor_class_path', '--json_serialized_invocation_args',
                        '--json_serialized_inputs_spec_args')


def flag_value(args: List[str], flag: str) -> str:
    """The value after `flag` in a container's arguments."""
    return args[args.index(flag) + 1]


def beam_args(args: List[str]) -> List[str]:
    """The arguments of a TFX container that are not the entrypoint's own flags and values."""
    own = {i + offset for i, arg in enumerate(args) if arg in TFX_ENTRYPOINT_FLAGS
           for offset in (0, 1)}
    return [arg for i, arg in enumerate(args) if i not in own]


def runs_beam(executor_class_path: str) -> bool:
    """Whether the executor class (a dotted path, imported) is a Beam executor."""
    module, _, name = executor_class_path.rpartition('.')
    return issubclass(getattr(importlib.import_module(module), name), BaseBeamExecutor)


def problems(pipeline_spec: dict) -> List[str]:
    """Every way `pipeline_spec` (a PipelineSpec as a dict) breaks the rules above."""
    found = []
    for label, executor in sorted(pipeline_spec['deploymentSpec']['executors'].items()):
        container = executor.get('container')
        if not container:
            continue
        for text in container.get('command', []) + container.get('args', []):
            for placeholder in PLACEHOLDER.findall(text):
                if not any(p.fullmatch(placeholder) for p in RESOLVED_PLACEHOLDERS):
                    found.append(f'{label}: placeholder {placeholder} is not resolved by the '
                                 "open-source backend's launcher")
        args = container.get('args', [])
        if ('--executor_class_path' in args and beam_args(args)
                and not runs_beam(flag_value(args, '--executor_class_path'))):
            found.append(f'{label}: Beam arguments {beam_args(args)} in a container that '
                         'runs no Beam')
    return found
