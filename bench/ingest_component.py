"""One of CsvExampleGen, StatisticsGen, Transform: the pipeline's own executor, as
pipeline/graph.py configures it, run in this process (a child of bench/ingest_cost.py).

    python bench/ingest_component.py COMPONENT --data DIR --out DIR [--profile N]

Run by path with PYTHONPATH at a project checkout, so that it runs that checkout's code; it
imports nothing from bench/ for that reason. Outputs go to OUT/<component>/<key>; the upstream
components' outputs are read from there.
"""

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys

from google.protobuf import message

SPLITS = '["train", "validation", "eval"]'


def _json(value):
    from tfx.utils import proto_utils
    if isinstance(value, message.Message):
        return proto_utils.proto_to_json(value)
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _artifact(channel, uri: str):
    artifact = channel.type()
    artifact.uri = uri
    if channel.type.TYPE_NAME == 'Examples':
        artifact.split_names = SPLITS
    return artifact


def run(component_id: str, data: str, out: str, beam_args, profile: int) -> None:
    from tfx.dsl.components.base import base_beam_executor

    from pipeline.config import load_config
    from pipeline.graph import create_pipeline

    config = load_config({'FUNNEL_DATA_ROOT': data, 'FUNNEL_OUTPUT_ROOT': out})
    components = {c.id: c for c in create_pipeline(config).components}
    component = components[component_id]
    inputs = {}
    for key, channel in component.inputs.items():
        producer = components[channel.producer_component_id]
        uri = (producer.exec_properties['artifact_uri'] if producer.id == 'SchemaImporter'
               else os.path.join(out, producer.id, channel.output_key))
        inputs[key] = [_artifact(channel, uri)]
    shutil.rmtree(os.path.join(out, component_id), ignore_errors=True)  # a run before
    outputs = {}
    for key, channel in component.outputs.items():
        outputs[key] = [_artifact(channel, os.path.join(out, component_id, key))]
        os.makedirs(outputs[key][0].uri, exist_ok=True)
    properties = {key: _json(value) for key, value in component.exec_properties.items()
                  if value is not None}
    executor_class = component.executor_spec.executor_class
    executor = executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args or config.beam_pipeline_args),
        tmp_dir=os.path.join(out, 'tmp', component_id)))
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    executor.Do(inputs, outputs, properties)
    if profiler:
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats('cumulative').print_stats(profile)
        stats.sort_stats('tottime').print_stats(profile)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('component', choices=('CsvExampleGen', 'StatisticsGen', 'Transform'))
    parser.add_argument('--data', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--beam-args', default='')
    parser.add_argument('--profile', type=int, default=0)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # TFX's Beam executors parse sys.argv with absl
    run(args.component, args.data, args.out,
        [a for a in args.beam_args.split(',') if a], args.profile)


if __name__ == '__main__':
    main()
