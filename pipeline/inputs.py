"""Checks on the input folder before a run, so bad input fails fast with a clear message.

What the curated schema can say (types, domains, presence) is checked by TFDV inside the
pipeline (ExampleValidator and components/anomalies_gate.py). What it cannot say is checked
here, where each problem can still be named by file and line: files that are empty, CSV rows
with the wrong number of fields (a truncated last line), and the funnel rule that a conversion
needs a click, which relates two columns of one row.
"""

import csv
import os
import re
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from trainer import features


MAX_LISTED = 5  # offending lines named per problem and file
TFRECORD_BATCH = 10_000
Labels = Tuple[str, str]  # the raw (click, conversion) columns


class InputDataError(ValueError):
    """The input folder is missing, empty, or holds a file that cannot be used as it is."""


def _listed(positions: List[int]) -> str:
    more = f' and {len(positions) - MAX_LISTED} more' if len(positions) > MAX_LISTED else ''
    return ', '.join(map(str, positions[:MAX_LISTED])) + more


def _funnel_problem(path: str, labels: Labels, where: str, positions: List[int]) -> str:
    click, conversion = labels
    return (f'Input file {path}: {len(positions)} row(s) with {conversion} = 1 but '
            f'{click} = 0 at {where} {_listed(positions)}; a conversion can only follow '
            'a click. Fix the labels upstream.')


def _csv_problems(path: str, labels: Labels) -> List[str]:
    """Rows whose field count differs from the header's, and conversions without a click."""
    with tf.io.gfile.GFile(path) as f:
        reader = csv.reader(f)
        header = next(reader, [])
        click, conversion = (header.index(name) if name in header else None
                             for name in labels)
        rows, malformed, unclicked = 0, [], []
        for row in filter(None, reader):  # blank lines are not rows
            rows += 1
            if len(row) != len(header):
                malformed.append((reader.line_num, len(row)))
            elif (click is not None and conversion is not None
                  and row[conversion].strip() == '1' and row[click].strip() == '0'):
                unclicked.append(reader.line_num)
    if not rows:
        return [f'Input file {path} has a header ({",".join(header)[:80]!r}) but no data rows. '
                'Remove it or add rows.']
    problems = []
    if malformed:
        line, fields = malformed[0]
        problems.append(
            f'Input file {path}: {len(malformed)} row(s) do not have the header\'s '
            f'{len(header)} fields, at line(s) {_listed([line for line, _ in malformed])} '
            f'(line {line} has {fields}); a truncated or malformed row. Repair or remove it.')
    if unclicked:
        problems.append(_funnel_problem(path, labels, 'line(s)', unclicked))
    return problems


def _tfrecord_problems(path: str, labels: Labels) -> List[str]:
    """Conversions without a click in a (gzipped) TFRecord file of tf.Examples."""
    spec = {name: tf.io.FixedLenFeature([], tf.int64, default_value=-1)
            for name in labels}
    compression = 'GZIP' if path.endswith('.gz') else None
    unclicked, offset = [], 0
    try:
        for batch in tf.data.TFRecordDataset(path, compression).batch(TFRECORD_BATCH):
            click, conversion = (tf.io.parse_example(batch, spec)[name].numpy()
                                 for name in labels)
            bad = (conversion == 1) & (click == 0)
            unclicked += (np.flatnonzero(bad) + offset).tolist()
            offset += len(batch)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        return [f'Input file {path} is not a {"gzipped " if compression else ""}TFRecord file '
                f'of tf.Examples after record {offset}: {e.message.splitlines()[0]}']
    return [_funnel_problem(path, labels, 'record(s)', unclicked)] if unclicked else []


def check_input_files(data_root: str, data_format: str, labels: Labels) -> List[str]:
    """Returns the input files under `data_root`, or raises InputDataError saying what is wrong.

    `labels` are the raw (click, conversion) columns of the feature spec.

    ExampleGen reads every file directly in `data_root`; an empty file (or a CSV with only a
    header) would otherwise fail deep inside Beam or, worse, train on nothing, and a truncated
    row fails inside ExampleGen without naming its file.
    """
    how_to_fix = ('Point FUNNEL_DATA_ROOT at a folder of input files, or run `make data` to '
                  'generate the default simulated data.')
    if not tf.io.gfile.isdir(data_root):
        raise InputDataError(f'Input folder {data_root} does not exist. {how_to_fix}')
    files = sorted(os.path.join(data_root, name) for name in tf.io.gfile.listdir(data_root)
                   if not tf.io.gfile.isdir(os.path.join(data_root, name)))
    if not files:
        raise InputDataError(f'Input folder {data_root} holds no files. {how_to_fix}')
    problems = []
    for path in files:
        if tf.io.gfile.stat(path).length == 0:
            problems.append(f'Input file {path} is empty. Remove it or replace it with '
                            f'{data_format.upper()} data.')
        elif data_format == 'csv':
            problems += _csv_problems(path, labels)
        else:
            problems += _tfrecord_problems(path, labels)
    if problems:
        raise InputDataError('\n'.join(problems))
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
    missing = [name for name in spec.columns if name not in known]
    if missing:
        raise features.FeatureSpecError(
            f'Column(s) {missing} of the feature spec are not in the schema {schema_path} '
            f'(which has {sorted(known)}). Fix the spec, or infer a schema for your data with '
            '`make schema` (see README).')
