"""One local run of the pipeline: LocalDagRunner, SQLite ML Metadata, and Beam's DirectRunner (or
the Flink or Spark runner the `beam` section names: pipeline/engines.py).

pipeline/local_runner.py (`make run`, the TFX CLI) opens the run's log and calls run(); tests call
run() directly. One run at a time per pipeline name and output root (pipeline/run_lock.py).
"""

import contextlib
import logging
from typing import Optional

from ml_metadata import metadata_store
from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_py

from components.anomalies_gate import DataAnomaliesError
from pipeline import config as config_lib
from pipeline import engines, inputs, run_lock, run_outputs, temp_dir
from pipeline.graph import GATE_ID, create_ingest_pipeline, create_pipeline
from trainer import features

PROGRESS = logging.getLogger('funnel.run')  # lines for the terminal (pipeline/run_log.py)
# Errors of the input or the settings, whose message says what to do: shown without traceback.
USER_ERRORS = (config_lib.ConfigError, features.FeatureSpecError, inputs.InputDataError,
               DataAnomaliesError, run_lock.RunLockedError, engines.EngineError)


@contextlib.contextmanager
def dag_runs(config: config_lib.PipelineConfig):
    """What LocalDagRunner's runs need around them here: a temporary folder of their own, removed
    at the end (pipeline/temp_dir.py), after Beam's LOOPBACK SDK workers have ended (engines)."""
    with temp_dir.own_temp_dir(config.temp_dir):
        try:
            yield
        finally:
            engines.wait_for_loopback_workers()


def run(config: config_lib.PipelineConfig, validate_only: bool = False) -> Optional[str]:
    """Runs every component in order; raises if one fails (ExampleGen checks the input files
    first, components/example_gen.py). Returns the run id of the (last) pipeline run, by which
    ML Metadata and the summary know it; None when no run was recorded (`tfx pipeline create`
    loads this file without running the pipeline).

    `validate_only` stops after the AnomaliesGate: new data is checked (and, when it passes,
    becomes the drift baseline of the next run) without training.

    With daily data, the earlier spans of the training window are ingested first, then the
    full run reads the latest span. Each span is read with the same settings (its number), so a
    span ingested by an earlier run is a cache hit, not a second artifact of the same span.

    One run at a time per pipeline name and output root (pipeline/run_lock.py).
    """
    inputs.check_spec_in_schema(config.feature_spec, config.schema_path)
    engines.check_runner(config.beam)
    folders = {None: config.data_root}
    if config.span_folder:
        spans = inputs.find_spans(config.data_root, config.span_folder)
        folders = {span: spans[span] for span in list(spans)[-config.train_window_spans:]}
    for folder in folders.values():
        inputs.folder_files(folder)
    with run_lock.pipeline_lock(config.metadata_path, config.pipeline_name,
                                wait=config.run.wait_for_running_run):
        PROGRESS.info('Pipeline %s: input %s%s; outputs under %s.', config.pipeline_name,
                      config.data_root, f" (spans {', '.join(map(str, folders))})"
                      if config.span_folder else '', config.output_root)
        *earlier, latest = folders
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path)
        store = metadata_store.MetadataStore(metadata)
        known_runs = set(run_outputs.run_ids(store))
        with dag_runs(config):
            for span in earlier:
                PROGRESS.info('Ingesting span %d of the training window.', span)
                tfx.orchestration.LocalDagRunner().run(
                    create_ingest_pipeline(config, span, metadata))
            tfx.orchestration.LocalDagRunner().run(
                create_pipeline(config, metadata, span=latest),
                run_options=pipeline_py.RunOptions(to_nodes=[GATE_ID]) if validate_only else None)
        new_runs = [run_id for run_id in run_outputs.run_ids(store) if run_id not in known_runs]
        return new_runs[-1] if new_runs else None
