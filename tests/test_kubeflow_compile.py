"""Tests of kubeflow/runner.py: the local graph compiled to a KFP v2 pipeline spec, read back as
JSON (compiled once; no cluster)."""

import json
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml
from tfx import v1 as tfx
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.dsl.components.base.executor_spec import BeamExecutorSpec

from components.production_model import ProductionModel
from kubeflow import kfp_rules, runner
from pipeline.config import REPO_ROOT, ConfigError, load_config
from pipeline.graph import create_pipeline

KFP_PYTHON = Path(REPO_ROOT) / '.tool-venv' / 'kfp' / 'bin' / 'python'  # make kfp-venv
# Run with the kfp SDK: loads the package as the SDK (and the KFP UI's upload) does, after a
# strict parse of the spec with kfp's own, newer pipeline_spec proto (no unknown field).
KFP_LOAD = """
import json, sys, yaml
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2
with open(sys.argv[1]) as f:
    json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())
component = components.load_component_from_file(sys.argv[1])
print(json.dumps({'name': component.name,
                  'inputs': {k: v.default for k, v in component.component_spec.inputs.items()},
                  'tasks': sorted(component.pipeline_spec.root.dag.tasks)}))
"""
BEAM_ARGS = ('--runner=DataflowRunner', '--project=test-project', '--region=europe-west4',
             '--temp_location=gs://test-bucket/tmp')


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    """(the configuration, the Vertex PipelineJob, the KFP package, its path), compiled as the
    README
    says, with FUNNEL_KUBEFLOW_* variables and an object-store output root that this machine
    cannot reach: compiling stages into a local folder beside the package."""
    root = tmp_path_factory.mktemp('kubeflow')
    env = {
        'FUNNEL_KUBEFLOW_IMAGE': 'registry.example.com/funnel-mmoe:test',
        'FUNNEL_KUBEFLOW_OUTPUT_ROOT': 'gs://test-bucket/funnel',
        'FUNNEL_KUBEFLOW_DATA_ROOT': 'gs://test-bucket/examples',
        'FUNNEL_KUBEFLOW_BEAM_PIPELINE_ARGS': ','.join(BEAM_ARGS),
        'FUNNEL_KUBEFLOW_TRAINER_GPUS': '2',
        'FUNNEL_KUBEFLOW_TRAINER_ACCELERATOR': 'nvidia.com/gpu',
        'FUNNEL_KUBEFLOW_TRAINER_CPU_LIMIT': '6',
        'FUNNEL_KUBEFLOW_TRAINER_MEMORY_LIMIT_GB': '20',
    }
    output = root / 'build' / 'funnel-mmoe.yaml'
    with mock.patch.dict(os.environ, env):
        assert runner.main(['--output', str(output)]) == 0
        config = load_config()
    job = json.loads(Path(runner.pipeline_job_path(str(output))).read_text())
    return config, job, yaml.safe_load(output.read_text()), output


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


def test_every_local_component_is_a_task(compiled, local_pipeline):
    """The same graph: each component of the local pipeline is a task, and nothing else is."""
    assert sorted(_tasks(compiled[1])) == sorted(c.id for c in local_pipeline.components)


def test_dependencies_follow_the_local_graph(compiled, local_pipeline):
    """Every upstream edge of the local graph is a task dependency, e.g. the validation gate
    before Transform, Transform before the Trainer, the Evaluator before the Pusher."""
    tasks = _tasks(compiled[1])
    for component in local_pipeline.components:
        depends_on = set(tasks[component.id].get('dependentTasks', []))
        assert {upstream.id for upstream in component.upstream_nodes} <= depends_on, component.id
    for task, upstream in [('Transform', 'AnomaliesGate'), ('Trainer', 'Transform'),
                           ('Evaluator', 'Trainer'), ('Evaluator', 'ProductionModel'),
                           ('Pusher', 'Evaluator')]:
        assert upstream in tasks[task]['dependentTasks']


def test_every_executor_runs_the_configured_image(compiled, local_pipeline):
    """Every component runs in a container of the configured image (KFP itself runs the
    schema importer)."""
    config, job, *_ = compiled
    containers = _containers(job)
    assert set(containers) == {f'{c.id}_executor' for c in local_pipeline.components
                               if isinstance(c, BaseComponent)}
    assert {c['image'] for c in containers.values()} == {config.kubeflow.image}


def test_only_the_trainer_requests_a_gpu(compiled, local_pipeline):
    """The Trainer gets the configured GPUs, CPU and memory; no other step asks for a GPU."""
    _, job, *_ = compiled
    trainer_id = next(c.id for c in local_pipeline.components
                      if isinstance(c, tfx.components.Trainer))
    containers = _containers(job)
    resources = containers.pop(f'{trainer_id}_executor')['resources']
    assert resources['accelerator'] == {'type': 'nvidia.com/gpu', 'count': '2'}
    assert resources['cpuLimit'] == 6.0 and resources['memoryLimit'] == 20.0
    for label, container in containers.items():
        assert 'accelerator' not in container.get('resources', {}), label


def test_beam_args_reach_the_beam_components_only(compiled, local_pipeline):
    """ExampleGen, StatisticsGen, Transform and Evaluator run Beam with the distributed args;
    no other container gets them (with Dataflow's, a container without credentials would ask
    for them interactively)."""
    containers = _containers(compiled[1])
    beam_ids = {c.id for c in local_pipeline.components
                if isinstance(c.executor_spec, BeamExecutorSpec)}
    assert {'CsvExampleGen', 'StatisticsGen', 'Transform', 'Evaluator'} <= beam_ids
    for component in local_pipeline.components:
        if isinstance(component, BaseComponent):
            args = kfp_rules.beam_args(containers[f'{component.id}_executor']['args'])
            assert args == (list(BEAM_ARGS) if component.id in beam_ids else []), component.id


def test_spec_follows_the_open_source_backends_rules(compiled):
    """Every placeholder one the launcher resolves, no Beam args without Beam
    (kubeflow/kfp_rules.py; the executor kinds: tests/test_kfp_backend.py); the same for the
    Vertex job's spec."""
    _, job, package, _ = compiled
    assert kfp_rules.problems(package) == [] and kfp_rules.problems(job['pipelineSpec']) == []
    kinds = {kind for executor in package['deploymentSpec']['executors'].values()
             for kind in executor}
    assert kinds == {'container', 'importer'}


def _replace_arg(executor, old, new):
    args = executor['container']['args']
    args[args.index(old)] = new


@pytest.mark.parametrize('break_spec, problem', [
    (lambda executors: _replace_arg(executors['Pusher_executor'], '{{$}}',
                                    '{{$.pipeline_job_resource_name}}'),
     'Pusher_executor: placeholder {{$.pipeline_job_resource_name}}'),
    (lambda executors: executors['Pusher_executor']['container']['args'].extend(BEAM_ARGS),
     'Pusher_executor: Beam arguments'),
])
def test_rules_catch_what_the_backend_refuses(compiled, break_spec, problem):
    package = json.loads(json.dumps(compiled[2]))
    break_spec(package['deploymentSpec']['executors'])
    [found] = kfp_rules.problems(package)
    assert found.startswith(problem)


def test_steps_reading_changing_inputs_are_never_cached(compiled, local_pipeline):
    """The steps reading data_root (ExampleGen: new files under the same folder) and
    ProductionModel (a new push) have KFP's cache off; every other step keeps it."""
    tasks = compiled[2]['root']['dag']['tasks']
    for component in local_pipeline.components:
        uncached = isinstance(component, ProductionModel) or 'data_root' in json.dumps(
            tasks[component.id].get('inputs', {}))
        assert tasks[component.id]['cachingOptions'] == ({} if uncached else
                                                         {'enableCache': True}), component.id
    assert tasks['CsvExampleGen']['cachingOptions'] == {}


def test_data_root_and_pipeline_root_are_run_parameters(compiled):
    """ExampleGen reads the run parameter data_root; the pipeline root is the run's. Their
    defaults are the configured ones: in the KFP package's spec (what the KFP UI and
    kubeflow/submit.py read), in the PipelineJob's runtimeConfig for Vertex."""
    config, job, package, _ = compiled
    pipeline_root = f'{config.kubeflow.output_root}/pipelines/funnel-mmoe'
    assert package['schemaVersion'] == '2.1.0' and package['pipelineInfo']['name'] == 'funnel-mmoe'
    assert package['root']['inputDefinitions']['parameters'] == {runner.DATA_ROOT_PARAMETER: {
        'parameterType': 'STRING', 'defaultValue': 'gs://test-bucket/examples',
        'isOptional': True}}
    assert package['defaultPipelineRoot'] == pipeline_root
    example_gen_input = _tasks(job)['CsvExampleGen']['inputs']['parameters']['input_base']
    assert example_gen_input == {'componentInputParameter': runner.DATA_ROOT_PARAMETER}
    assert job['runtimeConfig'] == {
        'gcsOutputDirectory': pipeline_root,
        'parameterValues': {runner.DATA_ROOT_PARAMETER: 'gs://test-bucket/examples'}}
    assert package['deploymentSpec'] == job['pipelineSpec']['deploymentSpec']
    assert package['root']['dag'] == job['pipelineSpec']['root']['dag']


def test_nothing_points_at_this_checkout(compiled):
    """Steps run in containers: the schema and the user-module wheels are referenced under the
    pipeline root in the bucket, and staged in a local mirror of it to copy there; the Pusher
    pushes under the Kubeflow output root; no path is local."""
    config, job, package, output = compiled
    staging = output.parent / 'staging'  # the default: beside the package
    assert REPO_ROOT not in json.dumps(job) and str(staging) not in json.dumps(package)
    pipeline_root = job['runtimeConfig']['gcsOutputDirectory']
    importer = package['deploymentSpec']['executors']['SchemaImporter_executor']
    staged_schema = importer['importer']['artifactUri']['constant']
    assert staged_schema.startswith(f'{pipeline_root}/_schema/')
    mirror = staging / os.path.relpath(staged_schema, pipeline_root) / 'schema.pbtxt'
    assert mirror.read_text() == Path(config.schema_path).read_text()
    wheel = _tasks(job)['Trainer']['inputs']['parameters']['module_path'][
        'runtimeValue']['constant'].split('@')[1]
    assert wheel.startswith(f'{pipeline_root}/_wheels/')
    assert (staging / os.path.relpath(wheel, pipeline_root)).is_file()
    pusher = _tasks(job)['Pusher']['inputs']['parameters']['push_destination']
    assert 'gs://test-bucket/funnel/serving_model/funnel-mmoe' in json.dumps(pusher)


def test_kfp_sdk_loads_the_package(compiled):
    if not KFP_PYTHON.exists():
        pytest.skip(f'{KFP_PYTHON} is missing: `make kfp-venv` builds it (`make test` does)')
    _, _, package, output = compiled
    result = subprocess.run([str(KFP_PYTHON), '-c', KFP_LOAD, str(output)], capture_output=True,
                            text=True, timeout=600, env={'PATH': os.environ['PATH']})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {
        'name': 'funnel-mmoe', 'inputs': {runner.DATA_ROOT_PARAMETER: 'gs://test-bucket/examples'},
        'tasks': sorted(package['root']['dag']['tasks'])}


@pytest.mark.parametrize('name, value', [('FUNNEL_KUBEFLOW_TRAINER_GPUS', '-1'),
                                         ('FUNNEL_KUBEFLOW_TRAINER_MEMORY_LIMIT_GB', '0'),
                                         ('FUNNEL_KUBEFLOW_IMAGE', '')])
def test_bad_kubeflow_settings_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(env={name: value})


def test_daily_spans_compile_and_the_span_window_is_refused(tmp_path):
    """ExampleGen reads the latest span folder on Kubeflow too (its executor resolves the span,
    tests/test_kubeflow_conformance.py); the span window is a Resolver, which the open-source
    backend cannot run, so asking for it is a clear error, not a broken spec."""
    env = {'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(tmp_path / 'bucket'),
           'FUNNEL_SPAN_FOLDER': 'day-{SPAN}', 'FUNNEL_MODEL_WARM_START': 'true'}
    output = tmp_path / 'spans.yaml'
    runner.compile_pipeline(load_config(env=env), str(output))
    spec = output.read_text()
    assert 'day-{SPAN}/*' in spec and 'base_model' in spec
    with pytest.raises(ConfigError, match='train_window_spans=2 needs the local runner'):
        runner.compile_pipeline(load_config(env={**env, 'FUNNEL_TRAIN_WINDOW_SPANS': '2'}),
                                str(output))


def test_the_output_name_decides_the_format(tmp_path):
    """A .json package is JSON (as the kfp compiler writes it); an unknown extension is refused
    before anything is compiled."""
    config = load_config(env={'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(tmp_path / 'bucket')})
    with pytest.raises(ConfigError, match=r'--output .*package\.txt: .*\(\.json\)'):
        runner.compile_pipeline(config, str(tmp_path / 'package.txt'))
    runner.compile_pipeline(config, str(tmp_path / 'package.json'))
    assert json.loads((tmp_path / 'package.json').read_text())['schemaVersion'] == '2.1.0'


@pytest.mark.parametrize('materialize, examples_from', [
    ('false', ('CsvExampleGen', 'examples')),            # the default
    ('true', ('Transform', 'transformed_examples'))])
def test_the_trainer_reads_the_examples_the_materialize_setting_says(tmp_path, materialize,
                                                                      examples_from):
    """model.materialize_transform false (the default): the Transform has no
    transformed_examples output and the Trainer takes ExampleGen's examples; true: the
    Transform's transformed examples. Either way with the Transform's graph, the package keeps
    the open-source backend's rules and the kfp SDK loads it."""
    config = load_config(env={'FUNNEL_KUBEFLOW_OUTPUT_ROOT': str(tmp_path / 'bucket'),
                              'FUNNEL_MODEL_MATERIALIZE_TRANSFORM': materialize})
    output = tmp_path / 'package.yaml'
    runner.compile_pipeline(config, str(output))
    package = yaml.safe_load(output.read_text())
    assert kfp_rules.problems(package) == []
    transform = package['components']['Transform']['outputDefinitions']['artifacts']
    assert ('transformed_examples' in transform) == (materialize == 'true')
    assert 'transform_graph' in transform
    inputs = package['root']['dag']['tasks']['Trainer']['inputs']['artifacts']
    assert {name: (value['taskOutputArtifact']['producerTask'],
                   value['taskOutputArtifact']['outputArtifactKey'])
            for name, value in inputs.items() if name in ('examples', 'transform_graph')} == {
        'examples': examples_from, 'transform_graph': ('Transform', 'transform_graph')}
    if not KFP_PYTHON.exists():
        pytest.fail(f'{KFP_PYTHON} is missing: `make kfp-venv` builds it (`make test` does)')
    result = subprocess.run([str(KFP_PYTHON), '-c', KFP_LOAD, str(output)], capture_output=True,
                            text=True, timeout=600, env={'PATH': os.environ['PATH']})
    assert result.returncode == 0, result.stderr[-3000:]
