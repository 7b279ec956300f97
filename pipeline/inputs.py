"""Checks on the input folder before a run, so a bad path fails fast with a clear message."""

import os
from typing import List

import tensorflow as tf


class InputDataError(ValueError):
    """The input folder is missing, empty or holds an empty file."""


def check_input_files(data_root: str, data_format: str) -> List[str]:
    """Returns the input files under `data_root`, or raises InputDataError saying what is wrong.

    ExampleGen reads every file directly in `data_root`; an empty file (or a CSV with only a
    header) would otherwise fail deep inside Beam or, worse, train on nothing.
    """
    how_to_fix = ('Point FUNNEL_DATA_ROOT at a folder of input files, or run `make data` to '
                  'generate the default simulated data.')
    if not tf.io.gfile.isdir(data_root):
        raise InputDataError(f'Input folder {data_root} does not exist. {how_to_fix}')
    files = sorted(os.path.join(data_root, name) for name in tf.io.gfile.listdir(data_root)
                   if not tf.io.gfile.isdir(os.path.join(data_root, name)))
    if not files:
        raise InputDataError(f'Input folder {data_root} holds no files. {how_to_fix}')
    for path in files:
        if tf.io.gfile.stat(path).length == 0:
            raise InputDataError(f'Input file {path} is empty. Remove it or replace it with '
                                 f'{data_format.upper()} data.')
        if data_format == 'csv':
            with tf.io.gfile.GFile(path) as f:
                header, first_row = f.readline(), f.readline()
            if not first_row.strip():
                raise InputDataError(f'Input file {path} has a header ({header.strip()[:80]!r}) '
                                     'but no data rows. Remove it or add rows.')
    return files
