"""Span resolution inside ExampleGen's executor (a mixin for components/example_gen.py).

TFX resolves `{SPAN}` folder patterns (and fingerprints the input) in a driver: the local runner
runs it, and Vertex AI Pipelines runs it as the task's `lifecycle.preCacheCheck`, but the
open-source Kubeflow Pipelines backend never reads `lifecycle`, so there the executor got the raw
pattern (`Split pattern .../day-{SPAN}/* does not match any files`). ResolvesSpan makes an
executor resolve the span, version and fingerprint itself, with TFX's own input processor,
whenever no driver did (no `span` execution property), and record them on the Examples artifact
as the driver does.

ExampleGen being the first Beam step of every run, the mixin also checks the cloud credentials
the Beam arguments need (components/credentials.py), so that a run without them stops in
seconds with a message.
"""

import logging

from tfx.components.example_gen import driver, input_processor, utils
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.credentials import check_beam_credentials


def resolve_span(exec_properties: dict, examples) -> dict:
    """`exec_properties` with the span, version, fingerprint and concrete split patterns that
    TFX's ExampleGen driver would set; records them on the `examples` artifact too."""
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.RANGE_CONFIG_KEY],
            range_config_pb2.RangeConfig())
    processor = input_processor.FileBasedInputProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits,
        range_config)
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    resolved = {**exec_properties,
                utils.SPAN_PROPERTY_NAME: span, utils.VERSION_PROPERTY_NAME: version,
                utils.FINGERPRINT_PROPERTY_NAME: processor.get_input_fingerprint(span, version),
                standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
                    input_config)}
    driver.update_output_artifact(resolved, examples.mlmd_artifact)
    logging.info('Input span %s resolved by the executor: %s', span,
                 ', '.join(split.pattern for split in input_config.splits))
    return resolved


class ResolvesSpan:
    """Executor mixin: resolves the span when no driver did, after the credentials check."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        check_beam_credentials(self._beam_pipeline_args)
        if utils.SPAN_PROPERTY_NAME not in exec_properties:
            examples = artifact_utils.get_single_instance(
                output_dict[standard_component_specs.EXAMPLES_KEY])
            exec_properties = resolve_span(exec_properties, examples)
        super().Do(input_dict, output_dict, exec_properties)
