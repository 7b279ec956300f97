"""What tracing the model costs, with autograph converting Keras 2 (tf_keras) and without.

    python -m bench.trace_cost [--rows 1000000]

trainer/keras_autograph.py keeps autograph from transpiling tf_keras's own code. This times, in
a fresh process each, the fixed costs every Trainer run pays once whatever the data size: its
input pipeline on raw examples (the Transform not materializing, the default: building it traces
the Transform's layer, a Keras 2 model; then its first batch), building and compiling the
default model, its first training step (the trace of the training step; the next 20 steps for
comparison), the calibration's traced forward pass and the export with the Transform graph and
both serving signatures; once with tf_keras converted (as TensorFlow does by default) and once
without. Data: bench/data.py's transformed simulator rows, and RAW_ROWS of its raw rows written
as tf.Examples.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from bench import data, results_file
from pipeline.config import REPO_ROOT, load_config

VARIANTS = {'tf_keras converted (TensorFlow default)': True,
            'tf_keras left unconverted (trainer/keras_autograph.py)': False}
RAW_ROWS = 8192  # raw rows written as tf.Examples for the input stage (more than one batch)
STAGES = ('input on raw examples', 'build and compile', 'first training step', 'next 20 steps',
          'first prediction batch', 'export')


def measure(data_dir: str, export_dir: str) -> Dict[str, float]:
    """Seconds of each of STAGES in this process."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import export, in_memory, labels, train, warmup

    config = load_config()
    tft_output = tft.TFTransformOutput(os.path.join(data_dir, 'transform_fn'))
    arrays = np.load(os.path.join(data_dir, 'transformed.npz'))
    columns = {name[len('train_'):]: arrays[name] for name in arrays.files
               if name.startswith('train_')}
    batches = in_memory.epoch_batches(columns, config.model.batch_size, 0).repeat().map(
        labels.split_labels)
    raw_file = export_dir + '-raw.gz'
    raw_rows = pd.read_csv(os.path.join(data_dir, 'examples', 'impressions.csv'),
                           nrows=RAW_ROWS, keep_default_na=False, na_values={'item_hist_ctr': ['']})
    with tf.io.TFRecordWriter(raw_file, 'GZIP') as writer:
        for row in raw_rows.to_dict('records'):
            writer.write(warmup.serialize_example(row))
    seconds, start = {}, time.perf_counter()

    def lap(stage: str):
        nonlocal start
        seconds[stage] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()

    raw_output = train.RawExamplesOutput(os.path.join(data_dir, 'transform_fn'))
    next(iter(train.input_fn([raw_file], raw_output, config.model.batch_size, 0)))
    lap('input on raw examples')
    model = train.build_compiled_model(config.model, tft_output, config.feature_spec)
    lap('build and compile')
    model.fit(batches, steps_per_epoch=1, epochs=1, verbose=0)
    lap('first training step')
    model.fit(batches, steps_per_epoch=20, epochs=1, verbose=0)
    lap('next 20 steps')
    forward = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    forward({name: values[:train.LOAD_BATCH_SIZE] for name, values in columns.items()
             if name in model.input_names})
    lap('first prediction batch')
    export.export_serving_model(model, tft_output, export_dir, config.feature_spec)
    lap('export')
    return seconds


def run_variant(data_dir: str, convert: bool, work_dir: str) -> Dict[str, float]:
    """measure() in a fresh process, tf_keras converted by autograph or not."""
    out = os.path.join(work_dir, f'convert-{convert}.json')
    code = ('import json, sys\n'
            + ('import trainer.keras_autograph as k; k.leave_keras_2_unconverted = lambda: None\n'
               if convert else '')
            + 'from bench.trace_cost import measure\n'
            + f'json.dump(measure({data_dir!r}, {os.path.join(work_dir, str(convert))!r}), '
            + f'open({out!r}, "w"))\n')
    subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, check=True,
                   env={**os.environ, 'TF_USE_LEGACY_KERAS': '1', 'TF_CPP_MIN_LOG_LEVEL': '2'})
    with open(out) as f:
        return json.load(f)


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=1_000_000,
                        help='simulated rows (bench/data.py)')
    parser.add_argument('--data-root', default=os.path.join(REPO_ROOT, 'data', 'bench'))
    parser.add_argument('--out', default=os.path.join(REPO_ROOT, 'bench', 'results',
                                                      'trace_cost.md'))
    args = parser.parse_args(argv)
    data_dir = data.prepare(args.rows, 0, args.data_root)
    with tempfile.TemporaryDirectory() as work_dir:
        results = {name: run_variant(data_dir, convert, work_dir)
                   for name, convert in VARIANTS.items()}
    command = 'python -m bench.trace_cost ' + ' '.join(argv if argv is not None else sys.argv[1:])
    lines = ['# Tracing cost of the default model, with and without autograph converting tf_keras',
             '', f'Command: `{command.strip()}`  ', f'Date: {results_file.utc_now()}  ',
             f'Machine: {results_file.machine()}', '',
             'Seconds, one fresh process per row (bench/trace_cost.py says what each stage is).',
             '', '| autograph | ' + ' | '.join(STAGES) + ' | sum |',
             '|---|' + '---|' * (len(STAGES) + 1)]
    for name, seconds in results.items():
        lines.append(f'| {name} | ' + ' | '.join(f'{seconds[s]:.1f}' for s in STAGES)
                     + f' | {sum(seconds.values()):.1f} |')
    text = '\n'.join(lines) + '\n'
    results_file.write(args.out, text)
    print(text)
    return text


if __name__ == '__main__':
    results_file.configure_logging()
    main()
