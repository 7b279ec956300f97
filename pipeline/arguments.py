"""Checks a run's arguments before the heavy imports: a wrong name or path fails in a second.

    python -m pipeline.arguments   (the Makefile's `run` and `schema` call it first)

Importing TFX and TensorFlow takes most of a minute; the Makefile's NAME, DATA and SPEC (the
FUNNEL_PIPELINE_NAME, FUNNEL_DATA_ROOT and FUNNEL_FEATURE_SPEC_PATH settings) are checked
before that with the configuration's own rules, which import neither.
"""

import os
import sys

from pipeline import config as config_lib
from trainer import features


def check_arguments() -> config_lib.PipelineConfig:
    """The validated configuration; raises ConfigError or FeatureSpecError naming the problem.

    A local data folder must exist (an object-store path is checked by ExampleGen)."""
    config = config_lib.load_config()
    if '://' not in config.data_root and not os.path.isdir(config.data_root):
        raise config_lib.ConfigError(
            f'Input folder {config.data_root} does not exist (DATA=..., or FUNNEL_DATA_ROOT).')
    return config


def main() -> int:
    try:
        check_arguments()
    except (config_lib.ConfigError, features.FeatureSpecError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
