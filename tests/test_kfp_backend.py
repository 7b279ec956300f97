"""The KFP package checked by the Kubeflow Pipelines backend's own Go code (kubeflow/backendcheck):
the API server loads it, compiles it with its Argo compiler for a one-off and a recurring run,
Argo validates the Workflow, and it refuses a resolver executor, schemaVersion 2.0.0 and the
Vertex PipelineJob. The Workflow it would submit is then checked against the configuration.

Needs Go (README, prerequisites); the module cache is Go's default, filled by `make backendcheck`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_kubeflow_compile import compiled, local_pipeline  # noqa: F401 (fixtures)
from tfx import v1 as tfx

from kubeflow import runner
from pipeline.config import REPO_ROOT

MODULE = Path(REPO_ROOT) / 'kubeflow' / 'backendcheck'
pytestmark = pytest.mark.slow  # on a fresh machine the first `go test` builds the backend (minutes)


@pytest.fixture(scope='module')
def backend(compiled, tmp_path_factory):  # noqa: F811
    """Runs `go test` on the compiled package; returns (the go test output, the Workflow of a
    one-off run, the ScheduledWorkflow of a recurring run)."""
    go = shutil.which('go')
    assert go, ('Go is not installed: the KFP backend check needs Go >= 1.21 (README, '
                'prerequisites): `apt-get install golang` or https://go.dev/dl/, then '
                '`make backendcheck`.')
    output = compiled[3]
    out = tmp_path_factory.mktemp('backendcheck')
    env = {**os.environ, 'KFP_PACKAGE': str(output), 'KFP_WORKFLOW_OUT': str(out),
           'KFP_PIPELINE_JOB': runner.pipeline_job_path(str(output))}
    result = subprocess.run([go, 'test', '-count=1', '-v', './...'], cwd=MODULE, env=env,
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return (result.stdout, json.loads((out / 'workflow.json').read_text()),
            json.loads((out / 'scheduled-workflow.json').read_text()))


def _root_tasks(workflow):
    return {task['name']: task for template in workflow['spec']['templates']
            if template['name'] == 'root' for task in template['dag']['tasks']}


def _parameter(task, name):
    return next(p['value'] for p in task['arguments']['parameters'] if p['name'] == name)


def test_backend_accepts_compiles_and_refuses(backend):
    """Each Go test ran and passed: the run, the recurring run, each refused package."""
    stdout = backend[0]
    for name in ('TestOneOffRun', 'TestRecurringRun', 'TestRefused/resolver_executor',
                 'TestRefused/schemaVersion_2.0.0', 'TestRefused/Vertex_PipelineJob'):
        assert f'--- PASS: {name} ' in stdout, name


def test_every_task_is_in_the_workflow(backend, local_pipeline):  # noqa: F811
    """Each component is a task of the root DAG (containers with their driver, the importer
    alone), and so in the recurring run's Workflow."""
    _, workflow, scheduled = backend
    tasks = set(_root_tasks(workflow))
    for component in local_pipeline.components:
        assert component.id in tasks, component.id
        if not isinstance(component, tfx.dsl.Importer):
            assert f'{component.id}-driver' in tasks, component.id
    assert _root_tasks(json.loads(scheduled['spec']['workflow']['spec'])).keys() == tasks


def test_workflow_carries_image_resources_cache_and_roots(backend, compiled):  # noqa: F811
    """What the drivers turn into pods: every container of the configured image, only the
    Trainer's with the GPUs, CPU and memory; the cache off where the runner says; data_root's
    compiled default and the configured pipeline root in the root driver's runtime config."""
    config, _, package, _ = compiled
    _, workflow, _ = backend
    annotations = workflow['metadata']['annotations']
    implementations = {key.split('implementations-', 1)[1]: json.loads(value)
                       for key, value in annotations.items() if 'implementations-' in key}
    assert 'artifactUri' in implementations.pop('SchemaImporter')  # KFP's launcher imports it
    containers = implementations
    assert {c['image'] for c in containers.values()} == {config.kubeflow.image}
    trainer = containers.pop('Trainer')['resources']
    assert trainer == {'accelerator': {'type': 'nvidia.com/gpu', 'count': '2'},
                       'cpuLimit': 6.0, 'memoryLimit': 20.0}
    assert all('accelerator' not in c.get('resources', {}) for c in containers.values())
    tasks = _root_tasks(workflow)
    for name, task in package['root']['dag']['tasks'].items():
        if name in containers or name == 'Trainer':
            compiled_task = json.loads(_parameter(tasks[f'{name}-driver'], 'task'))
            assert compiled_task['cachingOptions'] == task['cachingOptions'], name
    assert json.loads(_parameter(tasks['CsvExampleGen-driver'], 'task'))['cachingOptions'] == {}
    root_driver = next(task for template in workflow['spec']['templates']
                       if template['name'] == 'entrypoint' for task in template['dag']['tasks']
                       if task['name'] == 'root-driver')
    assert json.loads(_parameter(root_driver, 'runtime-config')) == {
        'gcsOutputDirectory': f'{config.kubeflow.output_root}/pipelines/funnel-mmoe',
        'parameterValues': {runner.DATA_ROOT_PARAMETER: config.kubeflow.data_root}}
