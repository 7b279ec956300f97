"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python -m pipeline.local_runner            (what `make run` calls)
    tfx pipeline create --engine=local --pipeline_path=pipeline/local_runner.py
    tfx run create --engine=local --pipeline_name=funnel-mmoe

Settings come from pipeline/config.py and FUNNEL_* environment variables.
"""

import logging
import sys

from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_py

from components.anomalies_gate import DataAnomaliesError
from pipeline import config as config_lib
from pipeline import inputs, run_log
from pipeline.graph import GATE_ID, create_pipeline


def run(config: config_lib.PipelineConfig, validate_only: bool = False) -> None:
    """Checks the inputs, then runs every component in order; raises if one fails.

    `validate_only` stops after the AnomaliesGate: new data is checked (and, when it passes,
    becomes the drift baseline of the next run) without training.
    """
    files = inputs.check_input_files(config.data_root, config.data_format)
    logging.info('Pipeline %s: %d input file(s) in %s; outputs under %s; pushes to %s.',
                 config.pipeline_name, len(files), config.data_root, config.pipeline_root,
                 config.serving_model_dir)
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path)),
        run_options=pipeline_py.RunOptions(to_nodes=[GATE_ID]) if validate_only else None)


def main() -> int:
    run_log.configure_logging()
    try:
        config = config_lib.load_config()
        run(config)
    except (config_lib.ConfigError, inputs.InputDataError, DataAnomaliesError) as e:
        logging.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
