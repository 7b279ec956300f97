"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, and Beam's DirectRunner
(or the Flink or Spark runner the `beam` section names: pipeline/engines.py).

    python -m pipeline.local_runner            (what `make run` calls)
    python -m pipeline.local_runner --validate-only   (`make validate`: check data, no training)
    tfx pipeline create --engine=local --pipeline_path=pipeline/local_runner.py
    tfx run create --engine=local --pipeline_name=funnel-mmoe

Settings come from pipeline/config.py (which composes trainer/config.py) and FUNNEL_* environment
variables.
"""

import argparse
import logging
import sys
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_py

from components.anomalies_gate import DataAnomaliesError
from pipeline import config as config_lib
from pipeline import engines, inputs, run_log
from pipeline.graph import GATE_ID, create_ingest_pipeline, create_pipeline
from trainer import features


def run(config: config_lib.PipelineConfig, validate_only: bool = False) -> None:
    """Runs every component in order; raises if one fails (ExampleGen checks the input files
    first, components/example_gen.py).

    `validate_only` stops after the AnomaliesGate: new data is checked (and, when it passes,
    becomes the drift baseline of the next run) without training.

    With daily data, the earlier spans of the training window are ingested first, then the
    full run reads the latest span. Each span is read with the same settings (its number), so a
    span ingested by an earlier run is a cache hit, not a second artifact of the same span.
    """
    spec = config.feature_spec
    inputs.check_spec_in_schema(spec, config.schema_path)
    engines.check_runner(config.beam)
    folders = {None: config.data_root}
    if config.span_folder:
        spans = inputs.find_spans(config.data_root, config.span_folder)
        folders = {span: spans[span] for span in list(spans)[-config.train_window_spans:]}
    for folder in folders.values():
        inputs.folder_files(folder)
    logging.info('Pipeline %s: input in %s (spans: %s), checked by ExampleGen; outputs under '
                 '%s; pushes to %s.', config.pipeline_name, config.data_root,
                 ', '.join(map(str, folders)), config.pipeline_root, config.serving_model_dir)
    *earlier, latest = folders
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    for span in earlier:
        logging.info('Ingesting span %d of the training window.', span)
        tfx.orchestration.LocalDagRunner().run(create_ingest_pipeline(config, span, metadata))
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, metadata, span=latest),
        run_options=pipeline_py.RunOptions(to_nodes=[GATE_ID]) if validate_only else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Runs the pipeline on this machine.')
    parser.add_argument('--validate-only', action='store_true',
                        help='stop after the AnomaliesGate: check new data against the schema '
                             '(and make it the drift baseline when it passes), without training')
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # TFX's Beam executors parse sys.argv with absl in this process: they get a bare command line.
    sys.argv = sys.argv[:1]
    run_log.configure_logging()
    try:
        config = config_lib.load_config()
        run(config, validate_only=args.validate_only)
    except (config_lib.ConfigError, features.FeatureSpecError, inputs.InputDataError,
            DataAnomaliesError, engines.EngineError) as e:
        logging.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
