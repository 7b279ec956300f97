"""Tests of kubeflow/runner.py: the local graph compiled to a KFP v2 pipeline spec, read back as
JSON (compiled once; no cluster)."""

import json

import pytest
from tfx import v1 as tfx
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.dsl.components.base.executor_spec import BeamExecutorSpec

from kubeflow import runner
from pipeline.config import REPO_ROOT, ConfigError, load_config
from pipeline.graph import create_pipeline

BEAM_ARGS = ('--runner=DataflowRunner', '--project=test-project', '--region=europe-west4',
             '--temp_location=gs://test-bucket/tmp')


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    """(the configuration, the compiled pipeline job as a dict), configured the way a user
    does: FUNNEL_KUBEFLOW_* variables. The output root is local so that staging works here."""
    root = tmp_path_factory.mktemp('kubeflow')
    config = load_config(env={
        'FUNNEL_KUBEFLOW_IMAGE': 'registry.example.com/funnel-mmoe:test',
        'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(root / 'bucket'),
        'FUNNEL_KUBEFLOW_DATA_ROOT': 'gs://test-bucket/examples',
        'FUNNEL_KUBEFLOW_BEAM_PIPELINE_ARGS': ','.join(BEAM_ARGS),
        'FUNNEL_KUBEFLOW_TRAINER_GPUS': '2',
        'FUNNEL_KUBEFLOW_TRAINER_ACCELERATOR': 'nvidia.com/gpu',
        'FUNNEL_KUBEFLOW_TRAINER_CPU_LIMIT': '6',
        'FUNNEL_KUBEFLOW_TRAINER_MEMORY_LIMIT_GB': '20',
    })
    output = root / 'build' / 'funnel-mmoe.json'
    runner.compile_pipeline(config, str(output))
    return config, json.loads(output.read_text())


@pytest.fixture(scope='module')
def local_pipeline():
    return create_pipeline(load_config(env={}))


def _tasks(job):
    return job['pipelineSpec']['root']['dag']['tasks']


def _containers(job):
    """Executor label -> container spec, for every executor that runs a container."""
    return {label: executor['container']
            for label, executor in job['pipelineSpec']['deploymentSpec']['executors'].items()
            if 'container' in executor}


def _task_names(tasks, component_id):
    """A component's task names: its id, or '<id>-...' for a Resolver, which becomes one
    resolver task per input."""
    return [name for name in tasks if name == component_id or name.startswith(component_id + '-')]


def test_every_local_component_is_a_task(compiled, local_pipeline):
    """The same graph: each component of the local pipeline is a task, and nothing else is."""
    tasks = _tasks(compiled[1])
    matched = []
    for component in local_pipeline.components:
        names = _task_names(tasks, component.id)
        assert names, f'{component.id} is not in the compiled spec'
        matched += names
    assert sorted(matched) == sorted(tasks)


def test_dependencies_follow_the_local_graph(compiled, local_pipeline):
    """Every upstream edge of the local graph is a task dependency, e.g. the validation gate
    before Transform, Transform before the Trainer, the Evaluator before the Pusher."""
    tasks = _tasks(compiled[1])
    for component in local_pipeline.components:
        for task in _task_names(tasks, component.id):
            depends_on = set(tasks[task].get('dependentTasks', []))
            for upstream in component.upstream_nodes:
                assert depends_on & set(_task_names(tasks, upstream.id)), (task, upstream.id)
    for task, upstream in [('Transform', 'AnomaliesGate'), ('Trainer', 'Transform'),
                           ('Evaluator', 'Trainer'), ('Pusher', 'Evaluator')]:
        assert upstream in tasks[task]['dependentTasks']


def test_every_executor_runs_the_configured_image(compiled, local_pipeline):
    """Every component runs in a container of the configured image (KFP itself runs the
    schema importer and the resolver)."""
    config, job = compiled
    containers = _containers(job)
    assert set(containers) == {f'{c.id}_executor' for c in local_pipeline.components
                               if isinstance(c, BaseComponent)}
    assert {c['image'] for c in containers.values()} == {config.kubeflow.image}


def test_only_the_trainer_requests_a_gpu(compiled, local_pipeline):
    """The Trainer gets the configured GPUs, CPU and memory; no other step asks for a GPU."""
    _, job = compiled
    trainer_id = next(c.id for c in local_pipeline.components
                      if isinstance(c, tfx.components.Trainer))
    containers = _containers(job)
    resources = containers.pop(f'{trainer_id}_executor')['resources']
    assert resources['accelerator'] == {'type': 'nvidia.com/gpu', 'count': '2'}
    assert resources['cpuLimit'] == 6.0 and resources['memoryLimit'] == 20.0
    for label, container in containers.items():
        assert 'accelerator' not in container.get('resources', {}), label


def test_beam_args_reach_the_beam_components(compiled, local_pipeline):
    """ExampleGen, StatisticsGen, Transform and Evaluator run Beam with the distributed args."""
    containers = _containers(compiled[1])
    beam_ids = {c.id for c in local_pipeline.components
                if isinstance(c.executor_spec, BeamExecutorSpec)}
    assert {'CsvExampleGen', 'StatisticsGen', 'Transform', 'Evaluator'} <= beam_ids
    for component_id in beam_ids:
        args = containers[f'{component_id}_executor']['args']
        assert all(arg in args for arg in BEAM_ARGS), component_id
        assert not any(arg.startswith('--direct_') for arg in args), component_id


def test_data_root_and_pipeline_root_are_run_parameters(compiled, tmp_path_factory):
    """ExampleGen reads the run parameter data_root; the pipeline root is the run's (KFP's
    runtimeConfig); the defaults are the configured ones."""
    config, job = compiled
    spec = job['pipelineSpec']
    assert spec['schemaVersion'] == '2.1.0'
    assert spec['root']['inputDefinitions']['parameters'] == {
        runner.DATA_ROOT_PARAMETER: {'parameterType': 'STRING'}}
    example_gen_input = _tasks(job)['CsvExampleGen']['inputs']['parameters']['input_base']
    assert example_gen_input == {'componentInputParameter': runner.DATA_ROOT_PARAMETER}
    assert job['runtimeConfig'] == {
        'gcsOutputDirectory': f'{config.kubeflow.output_root}/pipelines/funnel-mmoe',
        'parameterValues': {runner.DATA_ROOT_PARAMETER: 'gs://test-bucket/examples'}}


def test_nothing_points_at_this_checkout(compiled):
    """Steps run in containers: the schema and the user-module wheels are staged under the
    pipeline root, the Pusher pushes under the Kubeflow output root, no path is local."""
    config, job = compiled
    assert REPO_ROOT not in json.dumps(job)
    pipeline_root = job['runtimeConfig']['gcsOutputDirectory']
    importer = job['pipelineSpec']['deploymentSpec']['executors']['schema_importer_executor']
    staged_schema = importer['importer']['artifactUri']['constant']
    assert staged_schema.startswith(f'{pipeline_root}/_schema/')
    with open(f'{staged_schema}/schema.pbtxt') as staged, open(config.schema_path) as original:
        assert staged.read() == original.read()
    module_path = _tasks(job)['Trainer']['inputs']['parameters']['module_path']
    assert module_path['runtimeValue']['constant'].split('@')[1].startswith(
        f'{pipeline_root}/_wheels/')


@pytest.mark.parametrize('name, value', [('FUNNEL_KUBEFLOW_TRAINER_GPUS', '-1'),
                                         ('FUNNEL_KUBEFLOW_TRAINER_MEMORY_LIMIT_GB', '0'),
                                         ('FUNNEL_KUBEFLOW_IMAGE', '')])
def test_bad_kubeflow_settings_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: value})


def test_daily_spans_compile_and_the_span_window_is_refused(tmp_path):
    """ExampleGen reads the latest span folder on Kubeflow too; the span-window resolver has no
    Kubeflow V2 form in TFX 1.16, so asking for it is a clear error, not a broken spec."""
    env = {'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(tmp_path / 'bucket'),
           'FUNNEL_SPAN_FOLDER': 'day-{SPAN}', 'FUNNEL_MODEL_WARM_START': 'true'}
    output = tmp_path / 'spans.json'
    runner.compile_pipeline(load_config(env=env), str(output))
    spec = output.read_text()
    assert 'day-{SPAN}/*' in spec and 'base_model' in spec
    with pytest.raises(ConfigError, match='train_window_spans=2 needs the local runner'):
        runner.compile_pipeline(load_config(env={**env, 'FUNNEL_TRAIN_WINDOW_SPANS': '2'}),
                                str(output))
