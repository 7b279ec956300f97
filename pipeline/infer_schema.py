"""Infers a first schema for your own impression logs, for you to curate before the first run.

    make schema DATA=/path/to/logs SPEC=/path/to/spec.yaml   (writes SCHEMA, see README)
    python -m pipeline.infer_schema                         (reads the FUNNEL_* settings)

TFDV computes the statistics of the input files (the latest span with daily data) and infers
the schema the way SchemaGen does; then the feature spec's rules are applied on top: labels in
{0, 1}, always present and absent at serving time; id columns always present; no closed lists
of string values (TFDV infers them from the sample it sees: tomorrow's new ids would stop the
run; the model maps unseen ids to OOV buckets. Add a domain by hand where a new value must be
an anomaly). The schema is written to `schema_path`, whose folder the pipeline
imports, so it must hold nothing else.
"""

import logging
import os
import sys
import time

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline import config as config_lib
from pipeline import inputs, run_log
from trainer import features

SERVING, TRAINING = 'SERVING', 'TRAINING'


def _statistics(folder: str, data_format: str):
    pattern = os.path.join(folder, '*')
    if data_format == 'csv':
        return tfdv.generate_statistics_from_csv(data_location=pattern)
    return tfdv.generate_statistics_from_tfrecord(data_location=pattern)


def apply_feature_spec(schema: schema_pb2.Schema, spec: features.FeatureSpec,
                       source: str) -> schema_pb2.Schema:
    """The spec's rules on an inferred schema; raises FeatureSpecError for a column the data
    (`source`) does not have."""
    by_name = {feature.name: feature for feature in schema.feature}
    missing = [name for name in spec.columns if name not in by_name]
    if missing:
        raise features.FeatureSpecError(
            f'Column(s) {missing} of the feature spec are not in the data {source} (which has '
            f'{sorted(by_name)}).')
    schema.ClearField('default_environment')
    schema.default_environment.extend([TRAINING, SERVING])
    for name in spec.raw_labels.values():
        label = by_name[name]
        label.ClearField('domain_info')
        label.int_domain.min, label.int_domain.max = 0, 1
        label.presence.min_fraction = 1.0
        label.not_in_environment.append(SERVING)
    for name in spec.categorical_names:
        by_name[name].presence.min_fraction = 1.0
    # Closed lists of string values, inferred from one sample: tomorrow's new ids or timestamps
    # are not anomalies (the model's ids go to OOV buckets).
    for feature in schema.feature:
        if feature.HasField('domain'):
            feature.ClearField('domain_info')
    schema.ClearField('string_domain')
    return schema


def infer_schema(config: config_lib.PipelineConfig) -> schema_pb2.Schema:
    """Statistics of the input (the latest span with daily data) -> schema -> spec rules ->
    written to config.schema_path."""
    spec = config.feature_spec()
    folder = config.data_root
    if config.span_folder:
        folder = list(inputs.find_spans(config.data_root, config.span_folder).values())[-1]
    files = inputs.check_input_files(folder, config.data_format, spec.label_columns)
    schema_dir = os.path.dirname(config.schema_path)
    others = [name for name in (tf.io.gfile.listdir(schema_dir)
                                if tf.io.gfile.isdir(schema_dir) else [])
              if name != os.path.basename(config.schema_path)]
    if others:
        raise inputs.InputDataError(
            f'The schema folder {schema_dir} holds other files too ({others}); the pipeline '
            'imports the whole folder, so give the schema a folder of its own.')
    start = time.time()
    logging.info('Computing statistics of %d file(s) in %s ...', len(files), folder)
    statistics = _statistics(folder, config.data_format)
    schema = apply_feature_spec(tfdv.infer_schema(statistics, infer_feature_shape=True), spec,
                                folder)
    tf.io.gfile.makedirs(schema_dir)
    tfdv.write_schema_text(schema, config.schema_path)
    logging.info('Wrote the schema of %d columns to %s in %.1f s. Review it (value domains, '
                 'presence) before the first run.', len(schema.feature), config.schema_path,
                 time.time() - start)
    return schema


def main() -> int:
    run_log.configure_logging()
    try:
        infer_schema(config_lib.load_config())
    except (config_lib.ConfigError, features.FeatureSpecError, inputs.InputDataError) as e:
        logging.error('%s', e)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
