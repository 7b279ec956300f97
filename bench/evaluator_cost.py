"""Where the Evaluator's time goes, and proof that a cheaper Evaluator gives the same numbers.

    make run && make run && python -m bench.evaluator_cost [--rows 20000] [--rounds 2] \
        [--variants before,pipeline] [--no-baseline] [--profile 40]

Each variant runs the pipeline's own Evaluator executor (components/production_model.py, TFX's
Evaluator: TFXIO read, TFMA, validation, blessing) on the same first --rows rows of the latest
run's eval split, with the latest run's model as candidate and its ProductionModel (the model in
production) as baseline, as the pipeline's Evaluator does from the second run on (--no-baseline:
the candidate alone, as on a first run). The variants run in rounds, one after the other, so
machine load hits them alike; each run's wall and CPU seconds and peak memory are printed. The
first variant is the reference: for every other one the table gives its largest absolute
difference from it over every metric, diff vs baseline and calibration-plot bucket of every
slice, and whether the blessing is the same.
"""

import argparse
import cProfile
import glob
import json
import logging
import os
import pstats
import resource
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.utils import proto_utils

from bench import results_file
from bench.speed import PeakMemory, output_uri
from components.production_model import EvaluatorExecutor
from pipeline import eval_config as pipeline_eval_config
from pipeline import eval_metrics
from pipeline.config import load_config

Change = Callable[[tfma.EvalConfig], None]


def without(class_name: str) -> Change:
    def change(config: tfma.EvalConfig):
        for spec in config.metrics_specs:
            for metric in [m for m in spec.metrics
                           if eval_metrics.tfma_class_name(m) == class_name]:
                spec.metrics.remove(metric)
    return change


def tfma_own_metrics(config: tfma.EvalConfig):
    """The eval config with TFMA's (and Keras's) own metrics, each its own combiner, instead of
    the shared combiner (pipeline/eval_metrics.py; the calibration bounds have no TFMA
    counterpart and stay)."""
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name.startswith(eval_metrics.PREFIX):  # from the shared combiner
                metric.class_name = eval_metrics.tfma_class_name(metric)  # TFMA's own
                metric.module = ''


def _native_log_loss(config: tfma.EvalConfig):
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if eval_metrics.tfma_class_name(metric) == 'BinaryCrossentropy':  # Keras's
                metric.class_name, metric.module = 'BinaryCrossEntropy', ''  # TFMA's own


def _overall_slice_only(config: tfma.EvalConfig):
    del config.slicing_specs[1:]


IN_PROCESS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
MULTI_PROCESS = ['--direct_running_mode=multi_processing', '--direct_num_workers=0']
# Beam's portable runner with its embedded job server, the SDK harness in this process.
PORTABLE = ['--runner=PortableRunner', '--job_endpoint=embed', '--environment_type=LOOPBACK']

# name: (what it is, its change to the pipeline's eval config, the Evaluator's Beam args)
VARIANTS: Dict[str, Tuple[str, Change, List[str]]] = {
    'pipeline': ("the pipeline's Evaluator", lambda config: None, IN_PROCESS),
    'overall-only': ('overall slice only (no clicked, device, ad_position slices)',
                     _overall_slice_only, IN_PROCESS),
    'no-plot': ('no calibration plot', without('CalibrationPlot'), IN_PROCESS),
    'no-log-loss': ('no log loss', without('BinaryCrossentropy'), IN_PROCESS),
    'before': ("TFMA's and Keras's own metrics (AUC, calibration plot, log loss, calibration, "
               'means, example count), each its own combiner', tfma_own_metrics, IN_PROCESS),
    'native-log-loss': ("TFMA's native log loss instead of the Keras metric", _native_log_loss,
                        IN_PROCESS),
    'multi-process': ('the multi-processing DirectRunner, a worker per core',
                      lambda config: None, MULTI_PROCESS),
    'portable': ("Beam's PortableRunner, embedded job server, LOOPBACK", lambda config: None,
                 PORTABLE),
}


def _artifact(artifact_type, uri: str, **properties):
    artifact = artifact_type()
    artifact.uri = uri
    for name, value in properties.items():
        setattr(artifact, name, value)
    return artifact


def _eval_rows(config, rows: int, folder: str):
    """An Examples artifact holding the first `rows` rows of the latest run's eval split."""
    split = os.path.join(folder, 'Split-eval')
    os.makedirs(split)
    files = sorted(glob.glob(os.path.join(output_uri(config, 'CsvExampleGen', 'examples',
                                                     'eval'), '*')))
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(os.path.join(split, 'data.gz'), options) as writer:
        for record in tf.data.TFRecordDataset(files, 'GZIP').take(rows):
            writer.write(record.numpy())
    return _artifact(standard_artifacts.Examples, folder, split_names='["eval"]')


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (multi-processing workers)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def run_evaluator(eval_config: tfma.EvalConfig, beam_args: List[str], inputs: dict,
                  out: str) -> Tuple[float, float, float]:
    """(Wall seconds, CPU seconds, peak GB of this process and its Beam workers) of one run of
    the pipeline's Evaluator executor; results under `out`. CPU seconds are what machine load
    changes least."""
    outputs = {specs.EVALUATION_KEY: [_artifact(standard_artifacts.ModelEvaluation,
                                                os.path.join(out, 'evaluation'))],
               specs.BLESSING_KEY: [_artifact(standard_artifacts.ModelBlessing,
                                              os.path.join(out, 'blessing'))]}
    for artifacts in outputs.values():
        os.makedirs(artifacts[0].uri)
    properties = {specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config),
                  specs.EXAMPLE_SPLITS_KEY: json.dumps(['eval'])}
    executor = EvaluatorExecutor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(out, 'tmp')))
    start, cpu, memory = time.perf_counter(), _cpu_seconds(), PeakMemory(os.getpid())
    executor.Do(inputs, outputs, properties)
    memory.stopped = True
    return time.perf_counter() - start, _cpu_seconds() - cpu, memory.gb


def _numbers(value, path: str, into: Dict[str, float]):
    """Every number in a metric or plot value (as JSON), by its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            _numbers(item, f'{path}/{key}', into)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _numbers(item, f'{path}[{i}]', into)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        into[path] = float(value)


def numbers(evaluation: str) -> Dict[str, float]:
    """Every number TFMA wrote under `evaluation` (metrics, diffs, plots, per slice), by path."""
    found: Dict[str, float] = {}
    for records in (tfma.load_metrics(evaluation), tfma.load_plots(evaluation)):
        for record in records:
            slice_key = json.dumps(json_format.MessageToDict(record.slice_key), sort_keys=True)
            for entry in list(getattr(record, 'metric_keys_and_values', [])) + list(
                    getattr(record, 'plot_keys_and_values', [])):
                key = json.dumps(json_format.MessageToDict(entry.key), sort_keys=True)
                _numbers(json_format.MessageToDict(entry.value), f'{slice_key} {key}', found)
    return found


def largest_difference(reference: Dict[str, float], other: Dict[str, float]) -> Tuple[float,
                                                                                         str]:
    """The largest |difference| over the numbers both hold; a number only one holds is
    infinitely different (a metric lost or added)."""
    only_one = sorted(set(reference) ^ set(other))
    if only_one:
        return float('inf'), f'{len(only_one)} numbers in one only, e.g. {only_one[0]}'
    path = max(reference, key=lambda p: abs(reference[p] - other[p]), default='')
    return (abs(reference[path] - other[path]) if path else 0.0), path


def main():
    results_file.configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=20_000, help='eval rows scored per variant')
    parser.add_argument('--rounds', type=int, default=1, help='runs of every variant')
    parser.add_argument('--variants', default=','.join(VARIANTS),
                        help='comma-separated names of VARIANTS, the reference first')
    parser.add_argument('--no-baseline', action='store_true',
                        help='the candidate alone, as on the first run (and in make bench)')
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help="profile the first variant's first run (cProfile) and print its "
                             'N costliest functions by cumulative time')
    args = parser.parse_args()
    names = args.variants.split(',')
    config = load_config()
    inputs = {specs.MODEL_KEY: [_artifact(standard_artifacts.Model,
                                          output_uri(config, 'Trainer', 'model'))]}
    if not args.no_baseline:
        inputs[specs.BASELINE_MODEL_KEY] = [_artifact(standard_artifacts.Model,
                                                      output_uri(config, 'ProductionModel',
                                                                 'model'))]
    seconds: Dict[str, List[Tuple[float, float, float]]] = {name: [] for name in names}
    outcome: Dict[str, Tuple[Dict[str, float], bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs[specs.EXAMPLES_KEY] = [_eval_rows(config, args.rows, os.path.join(tmp, 'rows'))]
        for round_ in range(args.rounds):
            for i, name in enumerate(names):
                _, change, beam_args = VARIANTS[name]
                eval_config = pipeline_eval_config.make_eval_config(config.evaluation,
                                                                    config.feature_spec)
                change(eval_config)
                out = os.path.join(tmp, f'{round_}-{i}')
                profile = cProfile.Profile() if args.profile and not (round_ or i) else None
                if profile:
                    profile.enable()
                seconds[name].append(run_evaluator(eval_config, beam_args, inputs, out))
                if profile:
                    profile.disable()
                    pstats.Stats(profile).sort_stats('cumulative').print_stats(args.profile)
                logging.info('%s: %.1f s, %.1f CPU s, peak %.2f GB', name, *seconds[name][-1])
                if round_ == 0:
                    outcome[name] = (numbers(os.path.join(out, 'evaluation')),
                                     os.path.exists(os.path.join(out, 'blessing', 'BLESSED')))
    reference, blessed = outcome[names[0]]
    models = 'candidate alone' if args.no_baseline else 'candidate and baseline'
    lines = [f'The Evaluator on {args.rows:,} eval rows of {config.pipeline_name}, {models}, '
             f'{args.rounds} round(s); load average {os.getloadavg()[0]:.1f} at the end', '',
             '| variant | seconds per round (CPU seconds) | / reference, CPU | peak GB | '
             'largest difference from the reference | where | blessing as the reference |',
             '|---|---|---|---|---|---|---|']
    cpu = {name: sum(c for _, c, _ in runs) / len(runs) for name, runs in seconds.items()}
    for name in names:
        difference, where = largest_difference(reference, outcome[name][0])
        runs = ' / '.join(f'{wall:.1f} ({c:.1f})' for wall, c, _ in seconds[name])
        lines.append(f'| {VARIANTS[name][0]} | {runs} | {cpu[name] / cpu[names[0]]:.2f} | '
                     f'{max(gb for _, _, gb in seconds[name]):.2f} | '
                     f'{difference:.2g} | {where[:100]} | '
                     f'{"yes" if outcome[name][1] == blessed else "NO"} |')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
