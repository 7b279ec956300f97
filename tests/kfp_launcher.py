"""Runs a compiled KFP pipeline spec on this machine the way the open-source backend runs it.

Each task of the root DAG runs once its upstream tasks are done, independent tasks at the same
time (as Argo runs them). For a container task it builds the ExecutorInput
as KFP's driver does (backend/src/v2/driver/driver.go: input parameters from constants and run
parameters, component defaults; input artifacts from the producers' outputs; one output
artifact per output definition at <pipeline root>/<run>/<task>/<salt>/<name>, named after its
key and typed by its definition; an executor output file), substitutes the placeholders in the
command and arguments as the launcher does (backend/src/v2/component/launcher_v2.go,
compileCmdAndArgs / getPlaceholders) and runs them unchanged, then merges the executor output
into the output artifacts (mergeRuntimeArtifacts: its URI and metadata). An importer task yields
its artifact URI, type and metadata (the importer launcher). Anything else, or a placeholder the
launcher leaves unresolved, is an error here as on the backend.

Each container task gets a temporary folder of its own (TMPDIR), removed when it ends, as a
pod's own filesystem is: TFX's Beam components leave an sdist of TFX there (52 MB each).

What is not emulated: the object store (URIs are local folders, so nothing is up- or
downloaded), ML Metadata and KFP's cache (every task runs).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from concurrent import futures
from typing import Dict, List

ArtifactLists = Dict[str, List[dict]]


def upstream(tasks: dict, name: str) -> set:
    """The tasks `name` waits for: its dependentTasks and the producers of its input artifacts."""
    inputs = tasks[name].get('inputs', {}).get('artifacts', {}).values()
    producers = {a['taskOutputArtifact']['producerTask'] for a in inputs
                 if 'taskOutputArtifact' in a}
    return set(tasks[name].get('dependentTasks', [])) | producers


def _parameter_values(task: dict, component: dict, run_parameters: dict) -> dict:
    values = {}
    for name, spec in component.get('inputDefinitions', {}).get('parameters', {}).items():
        if 'defaultValue' in spec:
            values[name] = spec['defaultValue']
    for name, source in task.get('inputs', {}).get('parameters', {}).items():
        if 'runtimeValue' in source:
            values[name] = source['runtimeValue']['constant']
        elif 'componentInputParameter' in source:
            values[name] = run_parameters[source['componentInputParameter']]
        else:
            raise NotImplementedError(f'input parameter {name}: {source}')
    return values


def _input_artifacts(task: dict, outputs: Dict[str, ArtifactLists]) -> dict:
    artifacts = {}
    for name, source in task.get('inputs', {}).get('artifacts', {}).items():
        producer = source['taskOutputArtifact']
        artifacts[name] = {'artifacts': outputs[producer['producerTask']][
            producer['outputArtifactKey']]}
    return artifacts


def substitute(text: str, executor_input: dict) -> str:
    """The launcher's placeholder substitution in one command or argument string."""
    inputs, outputs = executor_input['inputs'], executor_input['outputs']
    values = {'{{$}}': json.dumps(executor_input)}
    for side, artifacts in (('inputs', inputs.get('artifacts', {})),
                            ('outputs', outputs.get('artifacts', {}))):
        for name, artifact_list in artifacts.items():
            if artifact_list['artifacts']:
                uri = artifact_list['artifacts'][0]['uri']
                values[f"{{{{$.{side}.artifacts['{name}'].uri}}}}"] = uri
                values[f"{{{{$.{side}.artifacts['{name}'].path}}}}"] = uri  # local URIs
    for name, value in inputs.get('parameterValues', {}).items():
        values[f"{{{{$.inputs.parameters['{name}']}}}}"] = (
            value if isinstance(value, str) else json.dumps(value))
    for name, parameter in outputs.get('parameters', {}).items():
        values[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter['outputFile']
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    left = re.findall(r'\{\{\$.*?\}\}', text)
    if left:
        raise ValueError(f'placeholders the launcher does not resolve: {left}')
    return text


def run_container(name: str, task: dict, component: dict, container: dict, run_root: str,
                  run_parameters: dict, outputs: Dict[str, ArtifactLists], env: dict,
                  log_dir: str) -> ArtifactLists:
    """Runs one container task; returns its output artifacts after the executor's output."""
    task_root = os.path.join(run_root, name, uuid.uuid4().hex[:8])
    definitions = component.get('outputDefinitions', {})
    own_outputs = {key: [{'name': key, 'type': spec['artifactType'],
                          'uri': os.path.join(task_root, key),
                          **({'metadata': spec['metadata']} if 'metadata' in spec else {})}]
                   for key, spec in definitions.get('artifacts', {}).items()}
    executor_input = {
        'inputs': {'parameterValues': _parameter_values(task, component, run_parameters),
                   'artifacts': _input_artifacts(task, outputs)},
        'outputs': {'artifacts': {k: {'artifacts': v} for k, v in own_outputs.items()},
                    'parameters': {k: {'outputFile': os.path.join(task_root, 'parameters', k)}
                                   for k in definitions.get('parameters', {})},
                    'outputFile': os.path.join(task_root, 'output_metadata.json')}}
    for artifact in [a for artifacts in own_outputs.values() for a in artifacts]:
        os.makedirs(os.path.dirname(artifact['uri']), exist_ok=True)  # prepareOutputFolders
    for path in [p['outputFile'] for p in executor_input['outputs']['parameters'].values()] + [
            executor_input['outputs']['outputFile']]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    command = [substitute(text, executor_input)
               for text in container.get('command', []) + container.get('args', [])]
    with open(os.path.join(log_dir, f'{name}.log'), 'w') as log, \
            tempfile.TemporaryDirectory(prefix=f'{name}-') as pod_tmp:
        result = subprocess.run(command, env={**env, 'TMPDIR': pod_tmp}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        with open(os.path.join(log_dir, f'{name}.log')) as log:
            raise RuntimeError(f'task {name} failed ({result.returncode}):\n{log.read()[-5000:]}')
    output_file = executor_input['outputs']['outputFile']
    produced = {}
    if os.path.exists(output_file):
        with open(output_file) as f:
            produced = json.load(f).get('artifacts', {})
    for key, [artifact] in own_outputs.items():
        for update in produced.get(key, {}).get('artifacts', [])[:1]:
            artifact['uri'] = update.get('uri') or artifact['uri']
            artifact['metadata'] = {**artifact.get('metadata', {}), **update.get('metadata', {})}
    return own_outputs


def run_spec(spec: dict, pipeline_root: str, log_dir: str, run_parameters: dict = None,
             env: dict = None, workers: int = 2) -> Dict[str, ArtifactLists]:
    """Runs every task of `spec` (a PipelineSpec dict) as one run; {task: output artifacts}.

    As on the backend (Argo starts every task whose upstream tasks are done), tasks run as soon
    as their upstream tasks are done, up to `workers` at a time; a failed task stops the run
    once the tasks already running end.
    """
    parameters = {name: p['defaultValue'] for name, p in
                  spec['root'].get('inputDefinitions', {}).get('parameters', {}).items()
                  if 'defaultValue' in p}
    parameters.update(run_parameters or {})
    run_root = os.path.join(pipeline_root, uuid.uuid4().hex[:12])
    os.makedirs(log_dir, exist_ok=True)
    env = dict(os.environ if env is None else env)
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    tasks, outputs = spec['root']['dag']['tasks'], {}

    def run_task(name, done_outputs):
        component = spec['components'][tasks[name]['componentRef']['name']]
        executor = spec['deploymentSpec']['executors'][component['executorLabel']]
        if 'importer' in executor:
            importer = executor['importer']
            [key] = component['outputDefinitions']['artifacts']
            return {key: [{'name': key, 'type': importer['typeSchema'],
                           'uri': importer['artifactUri']['constant'],
                           'metadata': importer.get('metadata', {})}]}
        if 'container' in executor:
            return run_container(name, tasks[name], component, executor['container'], run_root,
                                 parameters, done_outputs, env, log_dir)
        raise ValueError(f'task {name}: executor {sorted(executor)} is neither a container '
                         'nor an importer')

    running = {}
    with futures.ThreadPoolExecutor(workers) as pool:
        while len(outputs) < len(tasks):
            waiting = set(tasks) - set(outputs) - set(running.values())
            ready = sorted(name for name in waiting if upstream(tasks, name) <= set(outputs))
            for name in ready[:workers - len(running)]:
                running[pool.submit(run_task, name, dict(outputs))] = name
            if not running:
                raise ValueError(f'the DAG has a cycle among {sorted(set(tasks) - set(outputs))}')
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in sorted(done, key=running.get):
                name = running.pop(future)
                outputs[name] = future.result()
    return outputs
