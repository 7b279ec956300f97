"""Where the Evaluator's time goes: TFMA on the latest run's eval rows, with the pipeline's eval
config and with one part of it left out at a time.

    make run && python -m bench.evaluator_cost [--rows 20000]

Each variant runs tfma.run_model_analysis on the same first --rows rows of the eval split with
the pushed model of the latest run (the configuration of FUNNEL_* variables, as `make run`), one
after the other, and prints its seconds as a markdown table. Blessing thresholds are left out
(there is no baseline here); they do not change what is computed.
"""

import argparse
import glob
import logging
import os
import tempfile
import time
from typing import Callable, Dict

import tensorflow as tf
import tensorflow_model_analysis as tfma

from bench import results_file
from bench.speed import output_uri
from pipeline.config import load_config
from pipeline.eval_config import make_eval_config


def _without(class_name: str) -> Callable[[tfma.EvalConfig], None]:
    def change(config: tfma.EvalConfig):
        for spec in config.metrics_specs:
            for metric in [m for m in spec.metrics if m.class_name == class_name]:
                spec.metrics.remove(metric)
    return change


def _native_log_loss(config: tfma.EvalConfig):
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name == 'BinaryCrossentropy':  # Keras's, run as a TF metric
                metric.class_name = 'BinaryCrossEntropy'   # TFMA's own combiner


def _overall_slice_only(config: tfma.EvalConfig):
    del config.slicing_specs[1:]


VARIANTS: Dict[str, Callable[[tfma.EvalConfig], None]] = {
    'the pipeline\'s eval config': lambda config: None,
    'overall slice only (no clicked, device, ad_position slices)': _overall_slice_only,
    'no calibration plot': _without('CalibrationPlot'),
    'no log loss': _without('BinaryCrossentropy'),
    'TFMA\'s native log loss instead of the Keras metric': _native_log_loss,
}


def main():
    results_file.configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=20_000, help='eval rows scored per variant')
    args = parser.parse_args()
    config = load_config()
    model_dir = os.path.join(output_uri(config, 'Trainer', 'model'), 'Format-Serving')
    eval_files = glob.glob(os.path.join(output_uri(config, 'CsvExampleGen', 'examples', 'eval'),
                                        '*'))
    lines = [f'TFMA on {args.rows:,} eval rows of {config.pipeline_name} ({model_dir})', '',
             '| eval config | seconds |', '|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        rows = os.path.join(tmp, 'eval.tfrecord')
        with tf.io.TFRecordWriter(rows) as writer:
            for record in tf.data.TFRecordDataset(eval_files, 'GZIP').take(args.rows):
                writer.write(record.numpy())
        for name, change in VARIANTS.items():
            eval_config = make_eval_config(config.evaluation, config.feature_spec)
            for spec in eval_config.metrics_specs:
                for metric in spec.metrics:
                    del metric.per_slice_thresholds[:]
            change(eval_config)
            model = tfma.default_eval_shared_model(model_dir, eval_config=eval_config)
            start = time.perf_counter()
            tfma.run_model_analysis(model, eval_config=eval_config, data_location=rows,
                                    output_path=os.path.join(tmp, str(len(lines))))
            lines.append(f'| {name} | {time.perf_counter() - start:.1f} |')
            logging.info('%s', lines[-1])
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
