"""Compiles the pipeline for Kubeflow Pipelines, offline: a KFP package and a Vertex PipelineJob.

    python -m kubeflow.runner --output kubeflow/build/funnel-mmoe.yaml

writes the KFP package `funnel-mmoe.yaml` (a pipeline spec: what `kfp` loads, the KFP UI
uploads and kubeflow/submit.py runs) and `funnel-mmoe.pipeline-job.json` (the PipelineJob that
Vertex AI Pipelines takes). The graph is pipeline/graph.py's, unchanged; the settings come from
the `kubeflow` section of pipeline/config.py (FUNNEL_KUBEFLOW_* variables). The spec follows the
open-source backend's rules (kubeflow/kfp_rules.py; compiling fails otherwise), with Beam
arguments only on the Beam steps, and the steps whose input can change under the same
parameters (those reading `data_root`, ProductionModel reading the serving folder) uncached.

The steps run in containers that cannot read this checkout, so compiling stages the Trainer's
and Transform's module wheel and the schema under the pipeline root. With an object-store
output root they are written to a local folder (`--staging-dir`, default `staging/` beside the
output) that mirrors the pipeline root, to copy there before the first run: compiling needs no
network. `--staging-dir <the pipeline root>` writes them there directly.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import sys

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base.base_component import BaseComponent
from tfx.dsl.components.base.executor_spec import BeamExecutorSpec

from components.production_model import ProductionModel
from kubeflow import kfp_rules
from pipeline import config as config_lib
from pipeline import engines
from pipeline.graph import create_pipeline
from trainer import features

DATA_ROOT_PARAMETER = 'data_root'
PACKAGE_EXTENSIONS = ('.yaml', '.yml', '.json')  # the format follows the extension

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


class SpecRuleError(RuntimeError):
    """The compiled spec breaks a rule of the open-source Kubeflow Pipelines backend."""


def trainer_resources(kubeflow: config_lib.KubeflowConfig) -> ResourceSpec:
    """The Trainer's container limits; KFP passes the accelerator type on as the Kubernetes
    resource name (e.g. nvidia.com/gpu)."""
    resources = ResourceSpec(cpu_limit=kubeflow.trainer_cpu_limit,
                             memory_limit=kubeflow.trainer_memory_limit_gb)
    if kubeflow.trainer_gpus:
        resources.accelerator.type = kubeflow.trainer_accelerator
        resources.accelerator.count = kubeflow.trainer_gpus
    return resources


def _stage_schema(schema_path: str, staging_root: str) -> str:
    """Copies the schema to <staging_root>/_schema/<content hash>/ and returns the copy's path.

    The folder is keyed by content, so an edited schema gets a new URI and older runs keep theirs.
    """
    with open(schema_path, 'rb') as f:
        content = f.read()
    folder = os.path.join(staging_root, '_schema', hashlib.sha256(content).hexdigest()[:16])
    tfx.dsl.io.fileio.makedirs(folder)
    staged = os.path.join(folder, os.path.basename(schema_path))
    with tfx.dsl.io.fileio.open(staged, 'wb') as f:
        f.write(content)
    return staged


def kubeflow_beam_args(config: config_lib.PipelineConfig) -> list:
    """The Beam steps' arguments: kubeflow.beam_pipeline_args (Dataflow by default) while
    beam.runner is 'direct'; else the `beam` section's, which must name a job server the pods can
    reach (beam.job_endpoint) and SDK workers that are not the pod itself (not LOOPBACK)."""
    beam = config.beam
    if beam.runner == 'direct':
        return list(config.kubeflow.beam_pipeline_args)
    if not beam.job_endpoint or beam.environment_type == 'LOOPBACK':
        raise config_lib.ConfigError(
            f'Configuration beam.runner={beam.runner} on Kubeflow needs a {beam.runner} job '
            'server in the cluster and SDK workers beside its task managers: set '
            'FUNNEL_BEAM_JOB_ENDPOINT=<host:8099> and FUNNEL_BEAM_ENVIRONMENT_TYPE=EXTERNAL with '
            'FUNNEL_BEAM_ENVIRONMENT_CONFIG=<worker pool host:port> (docs/scaling.md); got '
            f'job_endpoint={beam.job_endpoint!r}, environment_type={beam.environment_type}.')
    return engines.pipeline_args(beam, config.beam_pipeline_args)


def kubeflow_pipeline(config: config_lib.PipelineConfig, staging_root: str) -> tfx.dsl.Pipeline:
    """create_pipeline with the `kubeflow` section's settings, the Beam arguments on the Beam
    components only and the Trainer's resources; the schema and module wheel staged under
    `staging_root`."""
    if config.train_window_spans > 1:
        raise config_lib.ConfigError(
            f'Configuration train_window_spans={config.train_window_spans} needs the local '
            'runner: the span window is a TFX Resolver, which the open-source Kubeflow '
            'Pipelines backend cannot run. Compile with FUNNEL_TRAIN_WINDOW_SPANS=1 (each run '
            'then trains on its own span).')
    kubeflow = config.kubeflow
    beam_args = kubeflow_beam_args(config)
    config = dataclasses.replace(config, output_root=kubeflow.output_root, beam_pipeline_args=(),
                                 beam=config_lib.BeamConfig())
    config = dataclasses.replace(
        config,
        schema_path=_stage_schema(config.schema_path, staging_root),
        # TFX accepts a RuntimeParameter for a str property: ExampleGen's input_base.
        data_root=tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str))
    pipeline = create_pipeline(config)
    for component in pipeline.components:
        if isinstance(component.executor_spec, BeamExecutorSpec):
            component.with_beam_pipeline_args(beam_args)
        if isinstance(component, tfx.components.Trainer):
            component.with_platform_config(trainer_resources(kubeflow))
        if isinstance(component, BaseComponent):  # the module wheel, staged now
            component._resolve_pip_dependencies(staging_root)  # pylint: disable=protected-access
    return pipeline


def package(job: dict, data_root: str) -> dict:
    """The KFP package: the job's pipeline spec with the run defaults (data_root, pipeline root)
    written into it, as the open-source backend and the KFP UI read them."""
    spec = json.loads(json.dumps(job['pipelineSpec']))
    parameter = spec['root']['inputDefinitions']['parameters'][DATA_ROOT_PARAMETER]
    parameter.update(defaultValue=data_root, isOptional=True)
    spec['defaultPipelineRoot'] = job['runtimeConfig']['gcsOutputDirectory']
    return spec


def uncached_tasks(spec: dict, pipeline: tfx.dsl.Pipeline) -> list:
    """The tasks whose output may change while their parameters do not: those reading the files
    under `data_root` (ExampleGen: new files in the same folder) and ProductionModel (a new
    push). KFP's cache key is only parameters, image and command, so they must not be cached."""
    tasks = spec['root']['dag']['tasks']
    production = [c.id for c in pipeline.components if isinstance(c, ProductionModel)]
    return [task for name, task in tasks.items() if name in production or any(
        source.get('componentInputParameter') == DATA_ROOT_PARAMETER
        for source in task.get('inputs', {}).get('parameters', {}).values())]


def compile_pipeline(config: config_lib.PipelineConfig, output_path: str,
                     staging_dir: str = '') -> dict:
    """Writes the KFP package to `output_path` (YAML, or JSON for a .json name) and the Vertex
    PipelineJob beside it (.pipeline-job.json); returns the job. Raises SpecRuleError if the
    spec breaks a rule of the open-source backend."""
    if not output_path.endswith(PACKAGE_EXTENSIONS):
        raise config_lib.ConfigError(
            f'--output {output_path}: a KFP package is written as YAML (.yaml, .yml) or JSON '
            '(.json), by its extension, as the kfp compiler does; name it so.')
    pipeline_root = dataclasses.replace(config, output_root=config.kubeflow.output_root
                                        ).pipeline_root
    local_root = '://' not in pipeline_root
    staging_root = staging_dir or (pipeline_root if local_root else os.path.join(
        os.path.dirname(os.path.abspath(output_path)), 'staging'))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        # Spec schema 2.1.0: the only one the open-source KFP 2 backend accepts.
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.kubeflow.image, use_pipeline_spec_2_1=True))
    pipeline = kubeflow_pipeline(config, staging_root)
    job = runner.run(pipeline, parameter_values={DATA_ROOT_PARAMETER: config.kubeflow.data_root},
                     write_out=False)
    job = json.loads(json.dumps(job).replace(staging_root.rstrip('/') + '/',
                                             pipeline_root.rstrip('/') + '/'))
    for task in uncached_tasks(job['pipelineSpec'], pipeline):
        task['cachingOptions'] = {}  # what the kfp SDK writes for "no cache"
    found = kfp_rules.problems(job['pipelineSpec'])
    if found:
        raise SpecRuleError('The compiled spec would not run on the open-source Kubeflow '
                            'Pipelines backend:\n  ' + '\n  '.join(found))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, 'w') as f:
        if output_path.endswith('.json'):
            json.dump(package(job, config.kubeflow.data_root), f, indent=1, sort_keys=True)
        else:
            f.write(f'# KFP package of {config.pipeline_name}, compiled by kubeflow/runner.py\n')
            yaml.safe_dump(package(job, config.kubeflow.data_root), f, sort_keys=True)
    with open(pipeline_job_path(output_path), 'w') as f:
        json.dump(job, f, indent=1, sort_keys=True)
    if staging_root != pipeline_root:
        print(f'Staged the schema and module wheel in {staging_root}; copy them to the pipeline '
              f'root before the first run:\n  gcloud storage cp -r "{staging_root}/*" '
              f'{pipeline_root}/')
    return job


def pipeline_job_path(output_path: str) -> str:
    """Where the Vertex PipelineJob is written beside the KFP package."""
    return os.path.splitext(output_path)[0] + '.pipeline-job.json'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True,
                        help='KFP package to write: .yaml/.yml (YAML) or .json (JSON)')
    parser.add_argument('--staging-dir', default='',
                        help='where to write the schema and module wheel (default: the '
                             'pipeline root if local, else staging/ beside --output)')
    args = parser.parse_args(argv)
    try:
        config = config_lib.load_config()
        compile_pipeline(config, args.output, args.staging_dir)
    except (config_lib.ConfigError, features.FeatureSpecError, SpecRuleError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f'Wrote {args.output} (KFP package) and {pipeline_job_path(args.output)} (Vertex '
          f'PipelineJob): image {config.kubeflow.image}, outputs under '
          f'{config.kubeflow.output_root}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
