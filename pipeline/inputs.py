"""Checks on the input folder before a run, so a bad path fails fast with a clear message."""

import os
import re
from typing import Dict, List

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from trainer import features


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


def find_spans(data_root: str, span_folder: str) -> Dict[int, str]:
    """The span folders under `data_root` named like `span_folder` ('span-{SPAN}'), by span.

    Raises InputDataError when there is none, or when two folders hold the same span (e.g.
    span-1 and span-01), which ExampleGen would read as one.
    """
    prefix, suffix = span_folder.split('{SPAN}')
    pattern = re.compile(re.escape(prefix) + r'(\d+)' + re.escape(suffix))
    names = tf.io.gfile.listdir(data_root) if tf.io.gfile.isdir(data_root) else []
    spans = {}
    for name in sorted(name.rstrip('/') for name in names):
        match = pattern.fullmatch(name)
        if match:
            span = int(match.group(1))
            if span in spans:
                raise InputDataError(f'Folders {os.path.basename(spans[span])} and {name} in '
                                     f'{data_root} both hold span {span}; keep one.')
            spans[span] = os.path.join(data_root, name)
    if not spans:
        raise InputDataError(f'No span folder named like {span_folder!r} in {data_root} '
                             '(daily data: one folder per span, e.g. span-1/, span-2/).')
    return dict(sorted(spans.items()))


def check_spec_in_schema(spec: features.FeatureSpec, schema_path: str) -> None:
    """Every column the feature spec names must be in the schema the pipeline validates against;
    otherwise the Transform would fail deep inside Beam."""
    schema = schema_pb2.Schema()
    with tf.io.gfile.GFile(schema_path) as f:
        text_format.Parse(f.read(), schema)
    known = {feature.name for feature in schema.feature}
    columns = (*spec.categorical_names, *spec.dense_names, *spec.raw_labels.values())
    missing = [name for name in columns if name not in known]
    if missing:
        raise features.FeatureSpecError(
            f'Column(s) {missing} of the feature spec are not in the schema {schema_path} '
            f'(which has {sorted(known)}). Fix the spec, or infer a schema for your data with '
            '`make schema` (see README).')
