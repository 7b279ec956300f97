"""One benchmark data set: simulated impressions, split, transformed once, saved as arrays.

Every system of the benchmark (the project's models and DeepCTR's) reads the same
`transformed.npz`, so they see exactly the same inputs and split:

1. `python -m simulator` draws the rows and their true probabilities (truth/truth.csv).
2. A seeded random permutation puts 70% of the rows in train, 10% in validation (what the
   project's calibration is fitted on, as the pipeline's Trainer does) and 20% in the held-out
   split (the same held-out rows as when train had all 80%).
3. tf.Transform analyses the train split with the project's `trainer.preprocessing.preprocessing_fn`
   (tft_beam.AnalyzeDataset over the CSV, with the pipeline's schema and vocabulary settings).
4. The fitted transform graph (the one the pipeline attaches to the served model) maps both
   splits, in row order, so held-out predictions stay aligned with the true probabilities.

Written into the data set's folder: `transform_fn/`, `transformed.npz` (train_<column>,
validation_<column> and test_<column> arrays, truth_<output> true probabilities of the test
rows) and `inputs.json` (vocabulary sizes, embedding dims and dense columns, so that DeepCTR's
venv needs no project import).
"""

import functools
import json
import logging
import os
import subprocess
import sys
import time
from typing import Dict

import numpy as np
import pandas as pd

from pipeline.config import REPO_ROOT, load_config
from trainer import features

TRAIN_SHARE = 0.7
VALIDATION_SHARE = 0.1   # after train: the held-out 20% are the rows after both
SPLIT_SEED = 0           # the held-out split is the same for every system and model seed
TRANSFORM_BATCH = 100_000


def simulate(rows: int, seed: int, out_dir: str) -> None:
    """The project's simulator, as its command line runs it."""
    if not os.path.exists(os.path.join(out_dir, 'truth', 'summary.json')):
        subprocess.run([sys.executable, '-m', 'simulator', '--rows', str(rows), '--seed', str(seed),
                        '--out', out_dir], check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)


def split(out_dir: str) -> Dict[str, pd.DataFrame]:
    """Train, validation and held-out rows (raw examples with their true probabilities); the
    train rows are written as a CSV for the analysis."""
    examples = pd.read_csv(os.path.join(out_dir, 'examples', 'impressions.csv'),
                           keep_default_na=False, na_values={'item_hist_ctr': ['']})
    truth = pd.read_csv(os.path.join(out_dir, 'truth', 'truth.csv'))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(examples))
    cut, test_cut = (int(share * len(examples)) for share in (TRAIN_SHARE,
                                                              TRAIN_SHARE + VALIDATION_SHARE))
    parts = {'train': order[:cut], 'validation': order[cut:test_cut], 'test': order[test_cut:]}
    frames = {}
    for name, rows in parts.items():
        frames[name] = examples.iloc[rows].reset_index(drop=True)
        frames[name + '_truth'] = truth.iloc[rows].reset_index(drop=True)
    frames['train'].to_csv(os.path.join(out_dir, 'train.csv'), index=False)
    return frames


def analyze(train_csv: str, transform_dir: str) -> None:
    """Fits the project's preprocessing_fn on the train split with tf.Transform on Beam."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    from trainer.preprocessing import preprocessing_fn

    config = load_config()
    schema = text_format.Parse(open(config.schema_path).read(), schema_pb2.Schema())
    columns = pd.read_csv(train_csv, nrows=0).columns.tolist()
    source = tfxio.CsvTFXIO(train_csv, column_names=columns, schema=schema, skip_header_lines=1)
    fn = functools.partial(preprocessing_fn, custom_config=config.transform_custom_config)
    with beam.Pipeline(argv=list(config.beam_pipeline_args)) as pipeline:
        with tft_beam.Context(temp_dir=os.path.join(transform_dir, 'tmp')):
            transform_fn = ((pipeline | source.BeamSource(), source.TensorAdapterConfig())
                            | tft_beam.AnalyzeDataset(fn))
            _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # The raw schema beside it, as the pipeline's Transform writes it (read for the raw spec).
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR))


def transform(frame: pd.DataFrame, tft_output) -> Dict[str, np.ndarray]:
    """The fitted transform graph applied to raw rows, in order, as the served model applies it."""
    import tensorflow as tf

    from trainer.export import to_raw_feature

    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    chunks = []
    for start in range(0, len(frame), TRANSFORM_BATCH):
        rows = frame.iloc[start:start + TRANSFORM_BATCH]
        raw = {name: to_raw_feature(tf.constant(rows[name].to_numpy(), feature.dtype), feature)
               for name, feature in spec.items()}
        chunks.append({name: value.numpy() for name, value in layer(raw).items()})
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def model_inputs(tft_output, max_embedding_dim: int) -> dict:
    """What a model needs to know about the inputs: the trainer's own vocabulary sizes and
    dense columns, and its embedding dimension rule (given to DeepCTR too)."""
    from trainer.model import embedding_dim
    from trainer.train import model_inputs as trainer_model_inputs

    vocab_sizes, dense = trainer_model_inputs(tft_output, load_config().feature_spec)
    return {'vocab_sizes': vocab_sizes, 'dense': dense,
            'embedding_dims': {name: embedding_dim(size, max_embedding_dim)
                               for name, size in vocab_sizes.items()},
            'labels': list(features.LABELS)}


def prepare(rows: int, seed: int, root: str) -> str:
    """Makes (or reuses) the data set of `rows` rows; returns its folder."""
    import tensorflow_transform as tft

    out_dir = os.path.join(root, f'simulated-{rows}-seed{seed}')
    if os.path.exists(os.path.join(out_dir, 'transformed.npz')):
        return out_dir
    start = time.time()
    simulate(rows, seed, out_dir)
    frames = split(out_dir)
    transform_dir = os.path.join(out_dir, 'transform_fn')
    analyze(os.path.join(out_dir, 'train.csv'), transform_dir)
    tft_output = tft.TFTransformOutput(transform_dir)
    arrays = {}
    for name in ('train', 'validation', 'test'):
        arrays.update({f'{name}_{column}': values
                       for column, values in transform(frames[name], tft_output).items()})
    arrays.update({f'truth_{output}': frames['test_truth'][output].to_numpy()
                   for output in features.OUTPUTS})
    np.savez(os.path.join(out_dir, 'transformed.npz'), **arrays)
    with open(os.path.join(out_dir, 'inputs.json'), 'w') as f:
        json.dump(model_inputs(tft_output, load_config().model.max_embedding_dim), f, indent=1)
    os.remove(os.path.join(out_dir, 'train.csv'))
    logging.info('Data set %s ready in %.0f s.', out_dir, time.time() - start)
    return out_dir
