"""Compiles the pipeline for Kubeflow Pipelines: a KFP v2 pipeline spec (JSON), no cluster needed.

    python -m kubeflow.runner --output kubeflow/build/funnel-mmoe.json

The graph is pipeline/graph.py's, unchanged; only the settings differ, all from the `kubeflow`
section of pipeline/config.py (FUNNEL_KUBEFLOW_* variables): the image every step runs in,
object-store paths, the distributed Beam runner, and the Trainer's GPU, CPU and memory. The
input folder is the run parameter `data_root`, the pipeline root the run's pipeline root (both
defaults are in the spec's runtimeConfig; kubeflow/submit.py can override them per run).

Compiling writes to the pipeline root: TFX stages the user-module wheels there, and this runner
stages the schema (steps in containers cannot read this machine's files).
"""

import argparse
import dataclasses
import hashlib
import os
import sys

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from pipeline import config as config_lib
from pipeline.graph import create_pipeline
from trainer import features

DATA_ROOT_PARAMETER = 'data_root'

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def trainer_resources(kubeflow: config_lib.KubeflowConfig) -> ResourceSpec:
    """The Trainer's container limits; KFP passes the accelerator type on as the Kubernetes
    resource name (e.g. nvidia.com/gpu)."""
    resources = ResourceSpec(cpu_limit=kubeflow.trainer_cpu_limit,
                             memory_limit=kubeflow.trainer_memory_limit_gb)
    if kubeflow.trainer_gpus:
        resources.accelerator.type = kubeflow.trainer_accelerator
        resources.accelerator.count = kubeflow.trainer_gpus
    return resources


def _stage_schema(schema_path: str, pipeline_root: str) -> str:
    """Copies the schema to <pipeline_root>/_schema/<content hash>/ and returns the copy's path.

    The folder is keyed by content, so an edited schema gets a new URI and older runs keep theirs.
    """
    with open(schema_path, 'rb') as f:
        content = f.read()
    folder = os.path.join(pipeline_root, '_schema', hashlib.sha256(content).hexdigest()[:16])
    tfx.dsl.io.fileio.makedirs(folder)
    staged = os.path.join(folder, os.path.basename(schema_path))
    with tfx.dsl.io.fileio.open(staged, 'wb') as f:
        f.write(content)
    return staged


def kubeflow_pipeline(config: config_lib.PipelineConfig) -> tfx.dsl.Pipeline:
    """create_pipeline with the `kubeflow` section's settings and the Trainer's resources."""
    if config.train_window_spans > 1:
        raise config_lib.ConfigError(
            f'Configuration train_window_spans={config.train_window_spans} needs the local '
            "runner: TFX 1.16's Kubeflow V2 compiler supports only the latest-artifact and "
            'latest-blessed-model resolvers, not the span window. Compile with '
            'FUNNEL_TRAIN_WINDOW_SPANS=1 (each run then trains on its own span).')
    kubeflow = config.kubeflow
    config = dataclasses.replace(
        config,
        output_root=kubeflow.output_root,
        beam_pipeline_args=kubeflow.beam_pipeline_args)
    config = dataclasses.replace(
        config,
        schema_path=_stage_schema(config.schema_path, config.pipeline_root),
        # TFX accepts a RuntimeParameter for a str property: ExampleGen's input_base.
        data_root=tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str))
    pipeline = create_pipeline(config)
    for component in pipeline.components:
        if isinstance(component, tfx.components.Trainer):
            component.with_platform_config(trainer_resources(kubeflow))
    return pipeline


def compile_pipeline(config: config_lib.PipelineConfig, output_path: str) -> None:
    """Writes the pipeline job (spec + default run parameters) to `output_path` as JSON."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        # Spec schema 2.1.0: the only one the open-source KFP 2 backend accepts.
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.kubeflow.image, use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path))
    runner.run(kubeflow_pipeline(config),
               parameter_values={DATA_ROOT_PARAMETER: config.kubeflow.data_root})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True, help='pipeline spec file (JSON) to write')
    args = parser.parse_args(argv)
    try:
        config = config_lib.load_config()
        compile_pipeline(config, args.output)
    except (config_lib.ConfigError, features.FeatureSpecError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f'Wrote {args.output}: image {config.kubeflow.image}, '
          f'outputs under {config.kubeflow.output_root}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
