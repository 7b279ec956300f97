"""The performance benchmark: the pipeline's speed, memory and scaling, side by side.

    make bench        # or: python -m bench.speed [--rows 10000,100000,1000000] [--epochs 2]

Every figure is a ratio of two things measured in the same run, since the machine is shared:

1. The whole pipeline (`python -m pipeline.local_runner`, fresh output root, no cache) at each
   size, with each component's time from ML Metadata (execution create -> last update) and the
   peak memory of its process tree, against `bench/plain_script.py` doing the same work by hand
   (pandas, numpy, the same Keras model, steps and batch size, sklearn AUC), and, at the sizes
   of --stock-rows, against stock TFX (`bench/stock_tfx.py`: the same data, module and steps
   through TFX's own components), component by component.
2. Trainer input throughput over the run's training steps: the Trainer's default input (parsed
   from the TFRecords as it trains) and its in-memory option (the transformed train split read
   into memory once, read time included) against the same examples already in memory.
3. Beam: ExampleGen, StatisticsGen and Transform rows/s at the largest size again, with the
   DirectRunner in multi-processing mode over every core, against the in-process run of 1.
4. Serving: p50/p99 latency of the pushed model's serving_default signature (serialized
   tf.Examples in, the Transform graph inside) at several batch sizes, against the bare Keras
   model on already-transformed tensors.
5. The Transform materializing or not (model.materialize_transform; false, the default: the
   Transform analyses only, the Trainer transforms the raw examples as it reads them): the whole
   pipeline at the largest size again with the other setting, its Transform, Trainer and
   end-to-end seconds and Evaluator AUCs against the default run's. `--materialize-only` runs
   just these two pipelines and prints the table.

It also scales each component's marginal cost per row to 1 billion impressions a day, and judges
its targets. It prints the markdown and writes it to bench/results/speed.md.
"""

import argparse
import contextlib
import functools
import glob
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

import numpy as np
import psutil

from bench import results_file, shared
from pipeline.config import REPO_ROOT, load_config
from trainer.config import ModelConfig

TRAIN_SHARE = 0.8          # the pipeline's train share (hash buckets 8:1:1)
SERVING_BATCHES = (1, 64, 512)
SERVING_CALLS = {1: 400, 64: 200, 512: 60}
CEILING = 'ceiling: the same examples already in memory'
TRAINER_INPUT = 'Trainer, default: streamed from the files'
# Beam runners other than the default in-process DirectRunner, run up to the Transform: the
# multi-processing DirectRunner, and the portable runner with Beam's embedded job server (the
# Runner API and SDK harness path of a Flink or Spark job server).
BEAM_VARIANTS = {
    f'multi-processing DirectRunner, {os.cpu_count()} workers': (
        '--direct_running_mode=multi_processing', f'--direct_num_workers={os.cpu_count()}'),
    'PortableRunner, embedded job server, LOOPBACK': (
        '--runner=PortableRunner', '--job_endpoint=embed', '--environment_type=LOOPBACK'),
}
BEAM_COMPONENTS = ('CsvExampleGen', 'StatisticsGen', 'Transform')
LOG_TAIL_LINES = 30  # of a failed run's log, in the error

# The project's components and their stock TFX counterparts (bench/stock_tfx.py); None: none.
STOCK_COUNTERPARTS = {
    'CsvExampleGen': 'CsvExampleGen', 'StatisticsGen': 'StatisticsGen',
    'SchemaImporter': 'ImportSchemaGen', 'ExampleValidator': 'ExampleValidator',
    'AnomaliesGate': None, 'Transform': 'Transform', 'ProductionModel':
    'latest_blessed_model_resolver', 'Trainer': 'Trainer', 'ServingContractCheck': None,
    'Evaluator': 'Evaluator', 'Pusher': 'Pusher'}

# Targets (met or MISSED in the results file).
MAX_PIPELINE_RATIO = {10_000: 2.0, 1_000_000: 4.0}  # pipeline / plain script, by rows
MIN_STOCK_SPEEDUP = 2.0  # stock TFX / pipeline, end to end, at the largest size with both
MAX_PEAK_GB = 8.0
MIN_INPUT_RATIO = 0.9
MAX_SERVING_RATIO = 2.0
# Part 5: the pipeline at the largest size again with the other model.materialize_transform.
DEFAULT_MATERIALIZE = ModelConfig().materialize_transform
OTHER_MATERIALIZE = {'FUNNEL_MODEL_MATERIALIZE_TRANSFORM': str(not DEFAULT_MATERIALIZE).lower()}
# Same AUCs within seed noise: twice the seed std of MMoE + ESMM at 1M rows (3 seeds,
# bench/results/quality.md), per task of the summary.
AUC_NOISE = {'click': 0.004, 'conversion': 0.007, 'cvr (clicked)': 0.008}


def train_steps(rows: int, epochs: int, batch_size: int) -> int:
    """Steps of `epochs` passes over the train split (4/5 of the rows)."""
    return max(1, -(-int(rows * TRAIN_SHARE) * epochs // batch_size))


class PeakMemory:
    """Peak resident memory of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.process, self.peak, self.stopped = psutil.Process(pid), 0, False
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stopped:
            try:
                tree = [self.process] + self.process.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.2)

    @property
    def gb(self) -> float:
        return self.peak / 2**30


def _last_lines(log_path: Optional[str], count: int) -> str:
    if not log_path:
        return ''
    with open(log_path, errors='replace') as log:
        return ''.join(log.readlines()[-count:])


def timed_process(args: List[str], env: Dict[str, str], log_path: Optional[str],
                  check: bool = True, cwd: str = REPO_ROOT) -> Dict:
    """Runs a command in `cwd` to completion; its wall time, peak memory and exit code (`check`:
    an exit code other than 0 raises, with the end of the log). Its output goes to log_path
    (None: to this process's)."""
    start = time.perf_counter()
    with open(log_path, 'w') if log_path else contextlib.nullcontext() as log:
        process = subprocess.Popen(args, cwd=cwd, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT if log else None)
        memory = PeakMemory(process.pid)
        returncode = process.wait()
    memory.thread.join(timeout=1)
    run = {'seconds': time.perf_counter() - start, 'peak_gb': memory.gb, 'exit': returncode}
    if returncode:
        run['log_tail'] = _last_lines(log_path, LOG_TAIL_LINES)
        if check:
            raise RuntimeError(f'{" ".join(args)} failed in {cwd} (exit {returncode}); the end '
                               f'of {log_path or "its output, above"}:\n{run["log_tail"]}')
    return run


def pipeline_env(data_dir: str, output_root: str, steps: int,
                 beam_args: Optional[tuple] = None) -> Dict[str, str]:
    """FUNNEL_* settings of a benchmark run: its own outputs, a fixed number of steps (no early
    stop, so that the plain script does the same training)."""
    env = {'FUNNEL_DATA_ROOT': data_dir, 'FUNNEL_OUTPUT_ROOT': output_root,
           'FUNNEL_MODEL_TRAIN_STEPS': str(steps),
           'FUNNEL_MODEL_EARLY_STOPPING_PATIENCE': str(steps),
           # The smallest size's eval split holds about 4 conversions: time it all the same.
           'FUNNEL_EVALUATION_MIN_EVAL_POSITIVES': '0'}
    if beam_args:
        env['FUNNEL_BEAM_PIPELINE_ARGS'] = ','.join(beam_args)
    return env


def run_summary(config) -> Dict:
    """The run's component times (from ML Metadata) and its Evaluator's AUCs."""
    from pipeline import summary

    result = summary.summarize(config)
    return {'components': {row['component']: row['seconds'] for row in result['components']},
            'auc': {task: values.get('auc') for task, values in result['tasks'].items()}}


def simulated_data(rows: int, seed: int) -> str:
    """The folder `make data ROWS=rows` makes (made here if missing)."""
    out = os.path.join(REPO_ROOT, 'data', f'simulated-{rows}-seed{seed}')
    if not os.path.exists(os.path.join(out, 'truth', 'summary.json')):
        subprocess.run([sys.executable, '-m', 'simulator', '--rows', str(rows), '--seed',
                        str(seed), '--out', out], check=True, cwd=REPO_ROOT)
    return os.path.join(out, 'examples')


def run_stock(data_dir: str, steps: int, work_dir: str, rows: int) -> Dict:
    """Stock TFX (bench/stock_tfx.py) on the same data and steps: wall time, peak memory and
    the times of its components."""
    from bench.stock_tfx import stock_config

    env = pipeline_env(data_dir, os.path.join(work_dir, f'stock-{rows}'), steps)
    logging.info('%d rows: stock TFX (%d training steps)...', rows, steps)
    run = timed_process([sys.executable, '-m', 'bench.stock_tfx'], env,
                        os.path.join(work_dir, f'stock-{rows}.log'))
    run.update(run_summary(stock_config(env)))
    logging.info('%d rows: stock TFX %.0f s, %.1f GB', rows, run['seconds'], run['peak_gb'])
    return run


def run_pipeline(data_dir: str, steps: int, work_dir: str, name: str,
                 settings: Optional[Dict[str, str]] = None) -> Dict:
    """`python -m pipeline.local_runner` on the data with `steps` training steps (and the
    FUNNEL_* `settings`), fresh output root work_dir/name: its wall time, peak memory, component
    times, AUCs and configuration."""
    env = {**pipeline_env(data_dir, os.path.join(work_dir, name), steps), **(settings or {})}
    logging.info('%s: the pipeline (%d training steps)...', name, steps)
    run = timed_process([sys.executable, '-m', 'pipeline.local_runner'], env,
                        os.path.join(work_dir, f'{name}.log'))
    run['config'] = load_config(env)
    run.update(run_summary(run['config']))
    logging.info('%s: pipeline %.0f s, %.1f GB', name, run['seconds'], run['peak_gb'])
    return run


def run_size(rows: int, epochs: int, work_dir: str, stock: bool = False,
             script: bool = True) -> Dict:
    """The pipeline, the plain script (`script`) and (`stock`) stock TFX on one data size, one
    after the other."""
    data_dir = simulated_data(rows, 0)
    steps = train_steps(rows, epochs, load_config().model.batch_size)
    pipeline = run_pipeline(data_dir, steps, work_dir, f'pipeline-{rows}')
    config = pipeline.pop('config')
    size = {'rows': rows, 'steps': steps, 'pipeline': pipeline, 'config': config}
    if script:
        size['script'] = run_script(data_dir, steps, work_dir, rows)
    if stock:
        size['stock'] = run_stock(data_dir, steps, work_dir, rows)
    return size


def run_script(data_dir: str, steps: int, work_dir: str, rows: int) -> Dict:
    """bench/plain_script.py on the same data and steps: wall time, peak memory, its AUCs and
    seconds per stage."""
    logging.info('%d rows: the plain script...', rows)
    result_path = os.path.join(work_dir, f'plain-{rows}.json')
    script = timed_process(
        [sys.executable, '-m', 'bench.plain_script', '--data', data_dir, '--train-steps',
         str(steps), '--model-dir', os.path.join(work_dir, f'plain-{rows}-model'), '--out',
         result_path], {}, os.path.join(work_dir, f'plain-{rows}.log'))
    with open(result_path) as f:
        script.update(json.load(f))
    logging.info('%d rows: plain script %.0f s, %.1f GB', rows, script['seconds'],
                 script['peak_gb'])
    return script


def other_materialize(size: Dict, work_dir: str) -> Dict:
    """The pipeline of run_size's `size` again with the other model.materialize_transform."""
    run = run_pipeline(size['config'].data_root, size['steps'], work_dir,
                       f'other-materialize-{size["rows"]}', OTHER_MATERIALIZE)
    run.pop('config')
    return run


def beam_variant_to_transform(size: Dict, work_dir: str, name: str) -> Dict:
    """The pipeline of run_size's `size` up to the Transform, with the Beam runner
    BEAM_VARIANTS[name]."""
    rows, config, beam_args = size['rows'], size['config'], BEAM_VARIANTS[name]
    folder = f'beam-{list(BEAM_VARIANTS).index(name)}-{rows}'
    env = pipeline_env(config.data_root, os.path.join(work_dir, folder),
                       config.model.train_steps, beam_args)
    logging.info('%d rows: the pipeline up to the Transform, %s...', rows, ' '.join(beam_args))
    run = timed_process([sys.executable, '-m', 'bench.speed', '--to-transform'], env,
                        os.path.join(work_dir, f'{folder}.log'), check=False)
    if run['exit']:  # reported in the table, with the components that completed before
        logging.error('%s ended with exit %d; the end of its log:\n%s', name, run['exit'],
                      run['log_tail'])
    run['components'] = run_summary(load_config(env))['components']
    return run


def run_to_transform() -> None:
    """In a child process: the pipeline of the FUNNEL_* environment, up to the Transform."""
    from tfx import v1 as tfx
    from tfx.orchestration import pipeline as pipeline_py

    from pipeline.graph import create_pipeline
    from pipeline.local_pipeline import dag_runs

    config = load_config()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    with dag_runs(config):
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata),
                                               run_options=pipeline_py.RunOptions(
                                                   to_nodes=['Transform']))


def output_uri(config, component: str, key: str, split: str = '') -> str:
    """The folder of a component's output (latest run), or one split of it."""
    from ml_metadata import metadata_store
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    store = metadata_store.MetadataStore(sqlite_metadata_connection_config(config.metadata_path))
    prefix = os.path.join(config.pipeline_root, component, key, '')
    uri = max((a for a in store.get_artifacts() if a.uri.startswith(prefix)),
              key=lambda a: a.create_time_since_epoch).uri
    return os.path.join(uri, f'Split-{split}') if split else uri


def input_throughput(config) -> Dict[str, float]:
    """Training examples/s of the run's model and steps: the Trainer's inputs (streamed from the
    files, the default; and from memory after one read of the files, the read included) against
    the same examples already in memory (the ceiling)."""
    import tensorflow as tf

    from trainer import train

    model_config, spec = config.model, config.feature_spec
    tft_output = train.transform_output(output_uri(config, 'Transform', 'transform_graph'),
                                        model_config)
    files = [os.path.join(output_uri(config, 'Transform', 'transformed_examples', 'train')
                          if model_config.materialize_transform
                          else output_uri(config, 'CsvExampleGen', 'examples', 'train'), '*')]

    def read_columns():
        return train.load_columns(files, tft_output, max_rows=2**40)

    columns = read_columns()
    inputs = {
        CEILING: lambda: train.memory_batches(columns, model_config),
        TRAINER_INPUT: lambda: train.train_input(files, tft_output, model_config),
        'Trainer, read into memory once (model.in_memory_max_rows, read time included)':
            lambda: train.memory_batches(read_columns(), model_config),
    }
    result = {}
    for name, make_batches in inputs.items():
        tf.keras.utils.set_random_seed(model_config.seed)
        model = train.build_compiled_model(model_config, tft_output, spec)
        start = time.perf_counter()
        batches = make_batches()
        prepare = time.perf_counter() - start
        throughput = shared.Throughput(model_config.batch_size)
        model.fit(batches, steps_per_epoch=model_config.train_steps, epochs=1, verbose=0,
                  callbacks=[throughput])
        timed = (model_config.train_steps - throughput.warmup) * model_config.batch_size
        result[name] = timed / (timed / throughput.examples_per_s + prepare)
        logging.info('Trainer input, %s: %.0f examples/s', name, result[name])
    return result


def serving_latency(config) -> Dict[int, Dict[str, float]]:
    """p50/p99 ms per batch size: the serving signature vs the bare model, calls interleaved."""
    import tensorflow as tf
    import tensorflow_transform as tft

    import trainer.model  # noqa: F401 (registers the custom layers for loading)
    from trainer import features
    from trainer.export import serving_feature_spec

    model_dir = os.path.join(output_uri(config, 'Trainer', 'model'), 'Format-Serving')
    exported = tf.saved_model.load(model_dir)
    signature = exported.signatures[features.DEFAULT_SIGNATURE]
    model = tf.keras.models.load_model(model_dir)
    bare = tf.function(lambda inputs: model(inputs, training=False))
    raw_spec = serving_feature_spec(tft.TFTransformOutput(
        output_uri(config, 'Transform', 'transform_graph')), config.feature_spec)
    eval_files = glob.glob(os.path.join(output_uri(config, 'CsvExampleGen', 'examples', 'eval'),
                                        '*'))
    serialized = [record.numpy() for record in tf.data.TFRecordDataset(
        eval_files, compression_type='GZIP').take(max(SERVING_BATCHES))]
    result = {}
    for batch_size in SERVING_BATCHES:
        examples = tf.constant(serialized[:batch_size])
        transformed = exported.tft_layer(tf.io.parse_example(examples, raw_spec))
        inputs = {name: transformed[name] for name in model.input_names}
        calls = {'signature': functools.partial(signature, examples=examples),
                 'bare model': functools.partial(bare, inputs)}
        times = {name: [] for name in calls}
        for _ in range(5):  # tracing and warm-up
            for call in calls.values():
                call()
        for _ in range(SERVING_CALLS[batch_size]):
            for name, call in calls.items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), call())
                times[name].append((time.perf_counter() - start) * 1000)
        result[batch_size] = {f'{name} p{q}': float(np.percentile(values, q))
                              for name, values in times.items() for q in (50, 99)}
        logging.info('Serving, batch %d: %s', batch_size, result[batch_size])
    return result


# --- The report ----------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return 'met' if ok else 'MISSED'


def pipeline_table(sizes: List[Dict]) -> List[str]:
    lines = ['| rows | training steps | pipeline s | plain script s | pipeline / script | '
             'pipeline peak GB | script peak GB | pipeline click / conversion AUC | '
             'script click / conversion AUC |', '|---' * 9 + '|']
    for size in sizes:
        p, s = size['pipeline'], size['script']
        lines.append(
            f'| {size["rows"]:,} | {size["steps"]} | {p["seconds"]:.0f} | {s["seconds"]:.0f} | '
            f'{p["seconds"] / s["seconds"]:.1f} | {p["peak_gb"]:.2f} | {s["peak_gb"]:.2f} | '
            f'{p["auc"].get("click", float("nan")):.4f} / '
            f'{p["auc"].get("conversion", float("nan")):.4f} | '
            f'{s["auc"]["p_click"]:.4f} / {s["auc"]["p_conversion"]:.4f} |')
    return lines


def component_table(sizes: List[Dict]) -> List[str]:
    """Seconds per component (ML Metadata), the components that take time, in pipeline order."""
    components = [c for c in sizes[-1]['pipeline']['components']
                  if any(size['pipeline']['components'].get(c, 0) >= 1 for size in sizes)]
    lines = [f'| rows | {" | ".join(components)} | all components | process wall |',
             '|---' * (len(components) + 3) + '|']
    for size in sizes:
        times = size['pipeline']['components']
        lines.append(f'| {size["rows"]:,} | ' + ' | '.join(
            f'{times.get(c, 0):.1f}' for c in components)
            + f' | {sum(times.values()):.0f} | {size["pipeline"]["seconds"]:.0f} |')
    script = sizes[-1]['script']
    lines += ['', f'Plain script at {sizes[-1]["rows"]:,} rows, seconds per stage: ' + ', '.join(
        f'{stage} {seconds:.1f}' for stage, seconds in script['stage_seconds'].items()) + '.']
    return lines


def stock_table(sizes: List[Dict]) -> List[str]:
    """Seconds per component, the project's against its stock TFX counterpart's, at each size
    that ran both, and the whole run's wall time."""
    lines = ['| rows | component | pipeline s | stock TFX s | stock / pipeline |',
             '|---' * 5 + '|']
    for size in (size for size in sizes if 'stock' in size):
        ours, stock = size['pipeline']['components'], size['stock']['components']
        for component, counterpart in STOCK_COUNTERPARTS.items():
            mine, theirs = ours.get(component), stock.get(counterpart) if counterpart else None
            if (mine or 0) >= 1 or (theirs or 0) >= 1:
                name = (component if counterpart in (None, component)
                        else f'{component} ({counterpart})')
                ratio = f'{theirs / mine:.2f}' if mine and theirs else '-'
                lines.append(f'| {size["rows"]:,} | {name} | {_seconds(mine)} | '
                             f'{_seconds(theirs)} | {ratio} |')
        lines.append(f'| {size["rows"]:,} | whole run (process wall, peak GB '
                     f'{size["pipeline"]["peak_gb"]:.1f} / {size["stock"]["peak_gb"]:.1f}) | '
                     f'{size["pipeline"]["seconds"]:.0f} | {size["stock"]["seconds"]:.0f} | '
                     f'{size["stock"]["seconds"] / size["pipeline"]["seconds"]:.2f} |')
    return lines


def _seconds(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'


def scale_table(sizes: List[Dict], rows_per_day: float = 1e9) -> List[str]:
    """Each component's marginal cost per row (the slope between the two largest sizes, so the
    fixed cost drops out), scaled to `rows_per_day`: the cores needed to do it in one hour."""
    small, large = sizes[-2], sizes[-1]
    extra_rows = large['rows'] - small['rows']
    lines = [f'| component | cores it used here | marginal core-seconds per 1M rows | core-hours '
             f'for {rows_per_day:,.0f} rows | cores to do them in 1 hour |', '|---' * 5 + '|']
    for component, seconds in large['pipeline']['components'].items():
        cores = os.cpu_count() if component == 'Trainer' else 1  # TF uses every core
        slope = (seconds - small['pipeline']['components'].get(component, 0)) / extra_rows
        if slope * 1e6 >= 1:
            hours = slope * cores * rows_per_day / 3600
            lines.append(f'| {component} | {cores} | {slope * cores * 1e6:,.0f} | {hours:,.0f} | '
                         f'{math.ceil(hours):,} |')
    return lines


def beam_table(size: Dict, variants: Dict[str, Dict]) -> List[str]:
    """Rows/s of each Beam component per runner, and each runner's speed over the default's."""
    lines = ['| component | Beam runner | rows/s | / in-process DirectRunner |', '|---' * 4 + '|']
    for component in BEAM_COMPONENTS:
        single = size['pipeline']['components'].get(component)
        if single:
            lines.append(f'| {component} | in-process DirectRunner (default) | '
                         f'{size["rows"] / single:,.0f} | 1.00 |')
        for name, run in variants.items():
            seconds = run['components'].get(component)
            if single and seconds:
                lines.append(f'| {component} | {name} | {size["rows"] / seconds:,.0f} | '
                             f'{single / seconds:.2f} |')
    failures = [f'{name}: the process ended with exit {run["exit"]} (the components it '
                f'completed are in the table); the last line of its log: '
                f'`{(run["log_tail"].strip().splitlines() or [""])[-1]}`.'
                for name, run in variants.items() if run['exit']]
    return lines + [''] + failures + [
        f'Peak memory up to the Transform, {name}: {run["peak_gb"]:.2f} GB.'
        for name, run in variants.items()]


def serving_table(serving: Dict[int, Dict[str, float]]) -> List[str]:
    lines = ['| batch | signature p50 ms | signature p99 ms | bare model p50 ms | '
             'bare model p99 ms | signature / bare (p50) |', '|---' * 6 + '|']
    for batch, t in serving.items():
        lines.append(f'| {batch} | {t["signature p50"]:.2f} | {t["signature p99"]:.2f} | '
                     f'{t["bare model p50"]:.2f} | {t["bare model p99"]:.2f} | '
                     f'{t["signature p50"] / t["bare model p50"]:.2f} |')
    return lines


def _transform_and_trainer(run: Dict) -> float:
    return sum(run['components'].get(name, 0) for name in ('Transform', 'Trainer'))


def _auc(run: Dict, task: str) -> float:
    value = run['auc'].get(task)
    return float('nan') if value is None else value


def _setting(materialize: bool) -> str:
    return f'materialize_transform={str(materialize).lower()}'


def materialize_table(size: Dict, other: Dict) -> List[str]:
    """The default run against the other model.materialize_transform, at one size: seconds and
    the Evaluator's AUCs."""
    lines = ['| Transform | Transform s | Trainer s | Transform + Trainer s | end to end s | '
             'peak GB | ' + ' / '.join(AUC_NOISE) + ' AUC |', '|---' * 7 + '|']
    for name, run in ((_setting(DEFAULT_MATERIALIZE) + ' (default)', size['pipeline']),
                      (_setting(not DEFAULT_MATERIALIZE), other)):
        times = run['components']
        lines.append(f'| {name} | {times.get("Transform", 0):.1f} | {times.get("Trainer", 0):.1f}'
                     f' | {_transform_and_trainer(run):.1f} | {run["seconds"]:.0f} | '
                     f'{run["peak_gb"]:.2f} | '
                     + ' / '.join(f'{_auc(run, task):.4f}' for task in AUC_NOISE) + ' |')
    return lines


def materialize_target_line(size: Dict, other: Dict) -> str:
    """The default model.materialize_transform is the faster (Transform + Trainer) of the two,
    with every AUC within AUC_NOISE of the other's."""
    default, alternative = _transform_and_trainer(size['pipeline']), _transform_and_trainer(other)
    differences = {task: _auc(size['pipeline'], task) - _auc(other, task) for task in AUC_NOISE}
    same = all(abs(difference) <= AUC_NOISE[task] for task, difference in differences.items())
    return (f'- {verdict(default <= alternative and same)}: the default '
            f'{_setting(DEFAULT_MATERIALIZE)} is the faster at {size["rows"]:,} rows with the '
            'same AUCs (within ' + ', '.join(f'{task} {noise:g}'
                                             for task, noise in AUC_NOISE.items())
            + f'): Transform + Trainer {default:.0f} s vs {alternative:.0f} s with '
            f'{_setting(not DEFAULT_MATERIALIZE)} ({alternative / default:.2f}x), end to end '
            f'{size["pipeline"]["seconds"]:.0f} s vs {other["seconds"]:.0f} s; AUC differences '
            + ', '.join(f'{task} {difference:+.4f}' for task, difference in differences.items())
            + '.')


def materialize_section(size: Dict, other: Dict) -> List[str]:
    return [f'## The Transform materializing or not, {size["rows"]:,} rows', '',
            'The whole pipeline again (fresh output root, same data and steps) with the other '
            '`FUNNEL_MODEL_MATERIALIZE_TRANSFORM`. false: the Transform analyses the train split '
            "only and writes no transformed examples; the Trainer reads ExampleGen's raw "
            'examples and applies the transform graph to each batch in its input pipeline. '
            'true: the Transform writes the transformed train and validation examples, which the '
            "Trainer reads. Seconds from ML Metadata; AUCs are the Evaluator's (eval split).", ''
            ] + materialize_table(size, other) + ['', materialize_target_line(size, other)]


def stock_target_lines(sizes: List[Dict]) -> List[str]:
    """At the largest size that ran stock TFX: the speed-up end to end, and every component
    with a counterpart no slower than it."""
    size = next((size for size in reversed(sizes) if 'stock' in size), None)
    if not size:
        return []
    speedup = size['stock']['seconds'] / size['pipeline']['seconds']
    ours, stock = size['pipeline']['components'], size['stock']['components']
    slower = [f'{component} {ours[component]:.0f} s vs {stock[counterpart]:.0f} s'
              for component, counterpart in STOCK_COUNTERPARTS.items()
              if counterpart and ours.get(component, 0) >= 1
              and ours[component] > stock.get(counterpart, float('inf'))]
    return [f'- {verdict(speedup >= MIN_STOCK_SPEEDUP)}: pipeline at {size["rows"]:,} rows at '
            f'least {MIN_STOCK_SPEEDUP:g}x faster than stock TFX end to end: {speedup:.2f}x.',
            f'- {verdict(not slower)}: each component no slower than its stock TFX counterpart'
            f'{": slower: " + ", ".join(slower) if slower else ""}.']


def target_lines(sizes: List[Dict], throughput: Dict, serving: Dict, other: Dict) -> List[str]:
    largest = sizes[-1]
    lines = []
    for size in (size for size in sizes if size['rows'] in MAX_PIPELINE_RATIO):
        ratio = size['pipeline']['seconds'] / size['script']['seconds']
        limit = MAX_PIPELINE_RATIO[size['rows']]
        lines.append(f'- {verdict(ratio <= limit)}: pipeline at {size["rows"]:,} rows within '
                     f'{limit:g}x the plain script: {ratio:.1f}x.')
    lines += stock_target_lines(sizes)
    lines.append(f'- {verdict(largest["pipeline"]["peak_gb"] < MAX_PEAK_GB)}: peak memory under '
                 f'{MAX_PEAK_GB:g} GB: {largest["pipeline"]["peak_gb"]:.2f} GB.')
    seconds = largest['pipeline']['components']
    if 'Evaluator' in seconds:
        lines.append(f'- {verdict(seconds["Evaluator"] <= seconds["Trainer"])}: Evaluator no '
                     f'slower than the Trainer: {seconds["Evaluator"]:.0f} s vs '
                     f'{seconds["Trainer"]:.0f} s.')
    if len(sizes) > 1:
        previous = sizes[-2]
        growth = largest['pipeline']['seconds'] / previous['pipeline']['seconds']
        rows = largest['rows'] / previous['rows']
        lines.append(f'- {verdict(growth <= rows)}: wall time grows no faster than linearly '
                     f'from {previous["rows"]:,} to {largest["rows"]:,} rows: x{growth:.1f} for '
                     f'x{rows:g} the rows.')
    input_ratio = throughput[TRAINER_INPUT] / throughput[CEILING]
    lines.append(f'- {verdict(input_ratio >= MIN_INPUT_RATIO)}: Trainer input pipeline at least '
                 f'{MIN_INPUT_RATIO:g} of the in-memory ceiling: {input_ratio:.2f}.')
    if 64 in serving:
        serving_ratio = serving[64]['signature p50'] / serving[64]['bare model p50']
        lines.append(f'- {verdict(serving_ratio <= MAX_SERVING_RATIO)}: serving signature at '
                     f'batch 64 within {MAX_SERVING_RATIO:g}x the bare model (p50): '
                     f'{serving_ratio:.2f}x.')
    return lines + [materialize_target_line(largest, other)]


def report(sizes: List[Dict], variants: Dict[str, Dict], throughput: Dict, serving: Dict,
           other: Dict, args, elapsed: float) -> str:
    largest = sizes[-1]
    config = largest['config']
    return '\n'.join([
        '# Performance benchmark: the pipeline against a plain script and the compute ceiling',
        '', f'Command: `{args.command}`  ',
        f'Date: {results_file.utc_now()}, '
        f'{elapsed / 60:.0f} min  ', f'Machine: {results_file.machine()}  ',
        f'Training: {args.epochs} epoch(s) of the train split (4/5 of the rows), batch '
        f'{config.model.batch_size}, the default model ({config.model.architecture}, '
        f'{config.model.loss}); the pipeline validates on {config.model.eval_steps} eval batches '
        f'every {config.model.steps_per_validation} steps, the script does not. Beam: '
        f'{" ".join(config.beam_pipeline_args) or "no arguments (the in-process DirectRunner)"}.',
        '',
        '## Whole pipeline vs plain script', '',
        'The pipeline: `python -m pipeline.local_runner`, fresh output root. The plain script: '
        '`python -m bench.plain_script` (pandas, numpy, the same Keras model and steps, sklearn). '
        'Peak memory: resident memory of the process and its children, sampled every 0.2 s. '
        "The pipeline's AUCs are its Evaluator's (eval split); the script's on its own "
        '1/5 held out.', ''] + pipeline_table(sizes) + [
        '', '## Seconds per component (ML Metadata: execution create to last update)', '']
        + component_table(sizes) + ([
        '', '## The pipeline against stock TFX', '',
        '`python -m bench.stock_tfx` (bench/stock_tfx.py): the same data, module file (features, '
        "model, steps, calibration), schema, split, slices and Beam runner through TFX's own "
        "components as the templates wire them (TFMA's own metrics, a latest-blessed-model "
        'resolver), fresh output root. Seconds per component from ML Metadata; a component '
        'without a counterpart shows -.', ''] + stock_table(sizes)
        if any('stock' in size for size in sizes) else []) + ([
        '', '## Per-row cost, scaled to 1 billion impressions a day', '',
        f'Slope between {sizes[-2]["rows"]:,} and {largest["rows"]:,} rows, on this machine\'s '
        "cores; the in-process DirectRunner runs a Beam component on one core. The Trainer's "
        f'figure is for {args.epochs} epoch(s) of the default model on CPU.', '']
        + scale_table(sizes) if len(sizes) > 1 else []) + [
        '', f'## Trainer input pipeline, {largest["rows"]:,} rows', '',
        f"{config.model.train_steps} training steps of the default model (the run's), timed "
        f"after {shared.WARMUP_STEPS} warm-up steps, on the run's transformed train split.", '',
        '| input | examples/s | / ceiling |', '|---|---|---|'] + [
        f'| {name} | {value:,.0f} | {value / throughput[CEILING]:.2f} |'
        for name, value in throughput.items()] + [
        '', f'## Beam components, {largest["rows"]:,} rows, per Beam runner', '',
        "Rows/s = rows of the data set / the component's seconds. The portable runner sends the "
        'Beam pipeline through the Runner API to an embedded job server, whose SDK harness runs '
        'in the same process (LOOPBACK): the path of a Flink or Spark job server, without their '
        'cluster.', ''] + beam_table(largest, variants) + [''] + materialize_section(
        largest, other) + [
        '', f'## Serving latency, model of the {largest["rows"]:,}-row run', '',
        'serving_default (serialized tf.Examples in, the Transform graph inside) against the bare '
        'Keras model on already-transformed tensors (a tf.function), called alternately in one '
        f'process; calls per batch size: {SERVING_CALLS}.', ''] + serving_table(serving) + [
        '', '## Targets', ''] + target_lines(sizes, throughput, serving, other) + [''])


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', default='10000,100000,1000000',
                        help='data sizes; the largest is the reference of parts 2-4')
    parser.add_argument('--epochs', type=int, default=2, help='epochs of the train split')
    parser.add_argument('--stock-rows', default='100000,1000000',
                        help='the sizes at which stock TFX runs too (empty: none)')
    parser.add_argument('--work-dir', help='where the runs write (default: a temporary folder)')
    parser.add_argument('--out', help='the results file (default: bench/results/speed.md; '
                        'with --materialize-only, none unless given)')
    parser.add_argument('--materialize-only', action='store_true',
                        help='part 5 only: the pipeline at the largest size of --rows, with and '
                        'without the Transform materializing; prints its table')
    parser.add_argument('--to-transform', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.to_transform:
        run_to_transform()
        return ''
    args.command = ' '.join(['python -m bench.speed', *(argv if argv is not None
                                                          else sys.argv[1:])])
    if args.materialize_only:
        return materialize_only(args)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        stock_rows = {int(float(rows)) for rows in args.stock_rows.split(',') if rows}
        sizes = [run_size(int(float(rows)), args.epochs, work_dir,
                          stock=int(float(rows)) in stock_rows)
                 for rows in sorted(args.rows.split(','), key=float)]
        config = sizes[-1]['config']
        throughput = input_throughput(config)
        serving = serving_latency(config)
        variants = {name: beam_variant_to_transform(sizes[-1], work_dir, name)
                    for name in BEAM_VARIANTS}
        other = other_materialize(sizes[-1], work_dir)
    text = report(sizes, variants, throughput, serving, other, args, time.time() - start)
    results_file.write(args.out or os.path.join(REPO_ROOT, 'bench', 'results', 'speed.md'), text)
    print(text)
    return text


def materialize_only(args) -> str:
    """Part 5 alone at the largest size of args.rows: the default pipeline, then the other
    model.materialize_transform."""
    start = time.time()
    rows = max(int(float(rows)) for rows in args.rows.split(','))
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        size = run_size(rows, args.epochs, work_dir, script=False)
        other = other_materialize(size, work_dir)
    text = '\n'.join([
        '# Performance benchmark, the Transform materializing or not', '',
        f'Command: `{args.command}`  ', f'Date: {results_file.utc_now()}, '
        f'{(time.time() - start) / 60:.0f} min  ', f'Machine: {results_file.machine()}  ',
        f'Training: {size["steps"]} steps of batch {size["config"].model.batch_size}.', '']
        + materialize_section(size, other) + [''])
    if args.out:
        results_file.write(args.out, text)
    print(text)
    return text


if __name__ == '__main__':
    results_file.configure_logging()
    main()
