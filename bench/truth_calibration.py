"""What a perfect model's calibration would be on each of ExampleGen's splits of simulated data.

    python -m bench.truth_calibration --data data/simulated-300000-seed0

The simulator writes the true probabilities of every row (`truth/truth.csv`, row-aligned with
`examples/`). Each row is decoded as ExampleGen decodes it and given the split ExampleGen's hash
gives it (TFX's partition function on the same bytes, the configuration's hash buckets). Per
split: mean true probability / label rate for click and conversion, the calibration the
Evaluator would report for the true probabilities. Its distance from 1 is the sampling noise of
that split's labels, which no model fitted on other rows can remove.
"""

import argparse
import glob
import os

import numpy as np
import pandas as pd
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from components.example_gen import csv_examples_in_order
from pipeline.config import load_config

SPLITS = ('train', 'validation', 'eval')


def split_of_each_row(files, labels, buckets) -> np.ndarray:
    """ExampleGen's split index (0, 1, 2 = SPLITS) of every row of `files`, in their order."""
    cumulative = list(np.cumsum(buckets))
    return np.array([
        base_example_gen_executor._PartitionFn(record, len(cumulative), cumulative,
                                               example_gen_pb2.SplitConfig())
        for record in csv_examples_in_order(files, labels)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', required=True, help='a simulated data set (`make data`)')
    args = parser.parse_args()
    config = load_config({'FUNNEL_DATA_ROOT': os.path.join(args.data, 'examples')})
    click, conversion = config.feature_spec.label_columns
    files = sorted(glob.glob(os.path.join(args.data, 'examples', '*.csv')))
    rows = pd.concat([pd.read_csv(path, usecols=[click, conversion]) for path in files])
    truth = pd.read_csv(os.path.join(args.data, 'truth', 'truth.csv'))
    split = split_of_each_row(files, (click, conversion), (
        config.train_hash_buckets, config.validation_hash_buckets, config.eval_hash_buckets))
    print(f'True-probability calibration (mean true probability / label rate) per split of '
          f'{args.data}\n\n| split | rows | clicks | conversions | click | conversion |\n'
          + '|---' * 6 + '|')
    for index, name in enumerate(SPLITS):
        chosen = split == index
        clicks, conversions = rows[click].values[chosen], rows[conversion].values[chosen]
        print(f'| {name} | {chosen.sum():,} | {clicks.sum():,} | {conversions.sum():,} | '
              f'{truth.p_click.values[chosen].mean() / clicks.mean():.3f} | '
              f'{truth.p_conversion.values[chosen].mean() / conversions.mean():.3f} |')


if __name__ == '__main__':
    main()
