"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, and Beam's DirectRunner
(or the Flink or Spark runner the `beam` section names: pipeline/engines.py).

    python -m pipeline.local_runner --summary  (what `make run` calls: the run, then its summary)
    python -m pipeline.local_runner --validate-only   (`make validate`: check data, no training)
    python -m pipeline.local_runner --infer-schema    (`make schema`: pipeline/infer_schema.py)
    tfx pipeline create --engine=local --pipeline_path=pipeline/local_runner.py
    tfx run create --engine=local --pipeline_name=funnel-mmoe

Settings come from pipeline/config.py (which composes trainer/config.py) and FUNNEL_* environment
variables. The terminal shows a line per component, progress, warnings and errors; the full log
goes to a file under the output root whose path is printed first (pipeline/run_log.py). This
file imports neither TensorFlow nor TFX at the top: the log is open before they are imported, so
that their import-time messages go to it. The run itself is pipeline/local_pipeline.py.
"""

import argparse
import sys
from typing import Optional, Sequence

from pipeline import config as config_lib
from pipeline import run_log
from trainer import features


def user_errors() -> tuple:
    """The errors of the input or the settings (their message says what to do)."""
    from pipeline import local_pipeline
    return local_pipeline.USER_ERRORS


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Runs the pipeline on this machine.')
    parser.add_argument('--validate-only', action='store_true',
                        help='stop after the AnomaliesGate: check new data against the schema '
                             '(and make it the drift baseline when it passes), without training')
    parser.add_argument('--infer-schema', action='store_true',
                        help='infer a schema from the data (make schema, pipeline/infer_schema.py)'
                             ' instead of running the pipeline')
    parser.add_argument('--summary', action='store_true',
                        help="print the run's summary at the end (pipeline/summary.py)")
    parser.add_argument('--truth', help="with --summary: the simulator's truth/summary.json, "
                        'for Bayes AUCs')
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # TFX's Beam executors parse sys.argv with absl in this process: they get a bare command line.
    sys.argv = sys.argv[:1]
    try:
        config = config_lib.load_config()  # validated: the feature spec is read too
    except (config_lib.ConfigError, features.FeatureSpecError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2

    def work(log: run_log.RunLog) -> None:
        if args.infer_schema:
            from pipeline import infer_schema
            infer_schema.infer_schema(config)
            return
        from pipeline import local_pipeline, summary
        run_id = local_pipeline.run(config, validate_only=args.validate_only)
        if args.validate_only:
            log.print('The data passed: the input check, the schema and the drift comparison '
                      'found no anomaly.')
        elif args.summary and run_id:
            log.print(summary.format_summary(summary.summarize(config, args.truth, run_id),
                                             components=False))

    def describe(component: str) -> str:
        from pipeline import run_outputs
        return run_outputs.component_facts(config.metadata_path, config.pipeline_name, component)

    def last_seconds(component: str) -> Optional[float]:
        from pipeline import run_outputs
        return run_outputs.last_complete_seconds(config.metadata_path, config.pipeline_name,
                                                 component)

    return run_log.logged(config.log_dir, config.run.full_log_to_terminal, work, user_errors,
                          describe, last_seconds)


if __name__ == '__main__':
    sys.exit(main())
