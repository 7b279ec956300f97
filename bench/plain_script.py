"""The pipeline's work done by a plain script, without TFX: the performance benchmark's reference.

    python -m bench.plain_script --data data/simulated-100000-seed0/examples --train-steps 200

What a team would write by hand: read the CSV with pandas, split it 4:1, fit the vocabularies
and the z-score statistics on the train rows with numpy/pandas (the pipeline's rules: frequency
threshold, top-k, hashed OOV buckets, log1p, mean imputation with a missing indicator), train the
same Keras model (trainer.model) for the same steps and batch size, score the held-out rows with
sklearn's AUC and save the model. It writes (and prints) a JSON of the seconds of each stage and
the AUCs.
No statistics, validation, blessing, Transform graph or serving signatures: that is the overhead
the benchmark measures.
"""

import argparse
import json
import logging
import os
import time
from typing import Dict, Tuple

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipeline.config import load_config
from trainer import features

TRAIN_SHARE = 0.8


def read(data_dir: str, spec: features.FeatureSpec) -> pd.DataFrame:
    """Every CSV in the folder; ids as strings, empty dense cells as NaN."""
    dense = spec.dense_names
    frames = [pd.read_csv(os.path.join(data_dir, name), keep_default_na=False,
                          na_values={column: [''] for column in dense},
                          dtype={column: str for column in spec.categorical_names})
              for name in sorted(os.listdir(data_dir)) if name.endswith('.csv')]
    return pd.concat(frames, ignore_index=True)


def fit_preprocessing(train: pd.DataFrame, spec: features.FeatureSpec, vocabulary) -> Dict:
    """Vocabularies (most frequent first) and the mean and std of the (log1p'd) dense values."""
    fitted = {}
    for column in spec.categorical:
        counts = train[column.name].value_counts()
        counts = counts[counts >= (column.frequency_threshold or vocabulary.frequency_threshold)]
        kept = counts.index[:column.top_k or vocabulary.top_k]
        fitted[column.name] = pd.Index(kept)
    for column in spec.dense:
        values = _log(train[column.name].to_numpy(np.float64), column.log)
        fitted[column.name] = (np.nanmean(values), np.nanstd(values),
                               bool(np.isnan(values).any()))
    return fitted


def _log(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log1p(np.maximum(values, 0.0)) if log else values


def apply_preprocessing(frame: pd.DataFrame, fitted: Dict, spec: features.FeatureSpec,
                        num_oov_buckets: int) -> Dict[str, np.ndarray]:
    """Model inputs and labels as arrays; unknown ids hash into the OOV buckets."""
    arrays = {}
    for name in spec.categorical_names:
        vocab = fitted[name]
        ids = vocab.get_indexer(frame[name]).astype(np.int64)
        unknown = ids < 0
        hashed = pd.util.hash_array(frame[name].to_numpy()[unknown]) % num_oov_buckets
        ids[unknown] = len(vocab) + hashed.astype(np.int64)
        arrays[name] = ids
    for column in spec.dense:
        mean, std, has_missing = fitted[column.name]
        values = (_log(frame[column.name].to_numpy(np.float64), column.log) - mean) / (std or 1.0)
        missing = np.isnan(values)
        arrays[column.name] = np.where(missing, 0.0, values).astype(np.float32)
        if has_missing:
            arrays[features.missing_indicator_name(column.name)] = missing.astype(np.float32)
    for label, column in spec.raw_labels.items():
        arrays[label] = frame[column].to_numpy(np.float32)
    return arrays


def split(frame: pd.DataFrame, seed: int) -> Tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(TRAIN_SHARE * len(frame))
    return frame.iloc[order[:cut]], frame.iloc[order[cut:]]


def run(data_dir: str, train_steps: int, model_dir: str) -> Dict:
    """The whole script; returns seconds per stage, the AUCs and the examples trained on."""
    import tensorflow as tf

    from bench import shared
    from trainer import in_memory, labels
    from trainer import model as model_lib

    config = load_config()
    spec, model_config = config.feature_spec, config.model
    tf.keras.utils.set_random_seed(model_config.seed)
    seconds, start = {}, time.perf_counter()

    def lap(stage: str):
        nonlocal start
        seconds[stage] = time.perf_counter() - start
        start = time.perf_counter()
        logging.info('%s: %.1f s', stage, seconds[stage])

    frame = read(data_dir, spec)
    train_frame, test_frame = split(frame, model_config.seed)
    lap('read')
    fitted = fit_preprocessing(train_frame, spec, config.vocabulary)
    train = apply_preprocessing(train_frame, fitted, spec, config.vocabulary.num_oov_buckets)
    test = apply_preprocessing(test_frame, fitted, spec, config.vocabulary.num_oov_buckets)
    lap('preprocess')
    vocab_sizes = {name: len(fitted[name]) + config.vocabulary.num_oov_buckets
                   for name in spec.categorical_names}
    dense = sorted(name for name in train if name not in vocab_sizes
                   and name not in features.LABELS)
    model = model_lib.compile_model(
        model_lib.build_model(model_config, vocab_sizes, dense, spec.embedding_dims,
                              spec.input_entities), model_config)
    rows = len(train_frame)
    epochs = -(-train_steps * model_config.batch_size // rows)
    batches = (in_memory.epoch_batches(train, model_config.batch_size, model_config.seed)
               .repeat(epochs).take(train_steps).map(labels.split_labels))
    model.fit(batches, verbose=0)
    lap('train')
    predictions = shared.predict(model, test)
    aucs = {output: roc_auc_score(test[features.OUTPUT_LABELS[output]], predictions[output][:, 0])
            for output in (features.P_CLICK, features.P_CONVERSION)}
    lap('evaluate')
    model.save(model_dir, save_format='tf')
    lap('save')
    return {'stage_seconds': seconds, 'auc': aucs,
            'train_rows': rows, 'trained_examples': train_steps * model_config.batch_size}


def main():
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True, help='folder of impression CSVs')
    parser.add_argument('--train-steps', type=int, required=True,
                        help="batches to train on (the pipeline run's train_steps)")
    parser.add_argument('--model-dir', required=True, help='where the trained model is saved')
    parser.add_argument('--out', required=True, help='the JSON file of the results')
    args = parser.parse_args()
    result = json.dumps(run(args.data, args.train_steps, args.model_dir))
    with open(args.out, 'w') as f:
        f.write(result)
    print(result)


if __name__ == '__main__':
    main()
