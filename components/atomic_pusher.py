"""TFX's Pusher, except that a version appears in the serving folder whole or not at all.

The stock Pusher copies the model file by file straight into <base_directory>/<version>/ (it
copies saved_model.pb last). A crash or a full disk in the middle leaves a numbered folder that
TF Serving, which polls <base_directory> for numbered folders, tries to load, and with
`latest {num_versions: 2}` that half-written folder is the latest version. This executor lets
the stock one copy into the staging folder <base_directory>/.staging/ (not a number, so TF
Serving ignores it) and then renames the finished version into place: on one filesystem
(a local disk or the volume TF Serving mounts) a rename is atomic. Object stores have no
atomic rename; there the stock behaviour (saved_model.pb last) is kept.
"""

import logging
import os

from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

STAGING = '.staging'


class AtomicPushExecutor(pusher_executor.Executor):
    """Pushes through <base_directory>/.staging/<version>, renamed to <base_directory>/<version>."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        key = standard_component_specs.PUSH_DESTINATION_KEY
        destination = proto_utils.json_to_proto(exec_properties[key],
                                                pusher_pb2.PushDestination())
        base = destination.filesystem.base_directory
        if not base or '://' in base:
            super().Do(input_dict, output_dict, exec_properties)
            return
        staging = os.path.join(base, STAGING)
        if fileio.exists(staging):  # left by a push that crashed
            fileio.rmtree(staging)
        destination.filesystem.base_directory = staging
        staged = dict(exec_properties, **{key: proto_utils.proto_to_json(destination)})
        super().Do(input_dict, output_dict, staged)

        pushed = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if pushed.get_int_custom_property('pushed'):
            version = pushed.get_string_custom_property('pushed_version')
            final = os.path.join(base, version)
            fileio.rename(os.path.join(staging, version), final)
            pushed.set_string_custom_property('pushed_destination', final)
            logging.info('Version %s moved into place: %s.', version, final)
            fileio.rmtree(staging)


class AtomicPusher(tfx.components.Pusher):
    """tfx.components.Pusher with AtomicPushExecutor; same inputs, outputs and parameters."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
