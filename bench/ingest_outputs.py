"""Do two runs of bench/ingest_component.py write the same outputs? (bench/ingest_cost.py)

Records are compared as sets of parsed protos (the record order and a proto's map order are
not part of the output: TFX's own ExampleGen shuffles before writing); statistics as protos with
the features in name order; the Transform's outputs as sets of transformed examples (when it
materializes them) and the vocabulary files' contents.
"""

import collections
import glob
import math
import os
from typing import List, Optional

SPLITS = ('train', 'validation', 'eval')


def _records(folder: str) -> collections.Counter:
    """The tf.Examples of one split folder, as a multiset of deterministic serializations."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(folder, '*')))
    return collections.Counter(
        tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
        for record in tf.data.TFRecordDataset(files, compression_type='GZIP'))


def _records_difference(reference: str, other: str) -> Optional[str]:
    splits = [sorted(os.listdir(root)) for root in (reference, other)]
    if splits[0] != splits[1]:
        return f'splits {splits[0]} vs {splits[1]}'
    for split in splits[0]:
        a, b = (_records(os.path.join(root, split)) for root in (reference, other))
        if a != b:
            return (f'{split}: {sum((a - b).values())} records only in the reference, '
                    f'{sum((b - a).values())} only in the other ({sum(a.values())} vs '
                    f'{sum(b.values())})')
    return None


# Statistics TFDV computes from sketches whose result depends on the order of the records, which
# TFX's ExampleGen shuffled: compared only between runs that read the same files.
SKETCHED = ('histograms', 'num_values_histogram', 'weighted_histograms', 'median')


def _without_sketches(message):
    for field, value in list(message.ListFields()):
        if field.name in SKETCHED:
            message.ClearField(field.name)
        elif field.message_type:
            for item in (value if field.label == field.LABEL_REPEATED else [value]):
                _without_sketches(item)


def _statistics(path: str, sketches: bool) -> List[str]:
    """The statistics as text lines, features in name order, the sketches dropped or kept."""
    from google.protobuf import text_format
    from tensorflow_data_validation import load_stats_binary
    stats = load_stats_binary(path)
    for dataset in stats.datasets:
        features = sorted(dataset.features, key=lambda f: f.path.SerializeToString())
        del dataset.features[:]
        dataset.features.extend(features)
    if not sketches:
        _without_sketches(stats)
    return text_format.MessageToString(stats).splitlines()


def _close(line: str, other: str) -> bool:
    """Equal lines, or the same field with floats equal to 1e-9 (a sum in another order)."""
    (key, _, value), (other_key, _, other_value) = line.partition(': '), other.partition(': ')
    try:
        return key == other_key and math.isclose(float(value), float(other_value),
                                                 rel_tol=1e-9)
    except ValueError:
        return line == other


def _statistics_difference(reference: str, other: str) -> Optional[str]:
    differences = []
    for split in SPLITS:
        paths = [os.path.join(root, f'Split-{split}', 'FeatureStats.pb')
                 for root in (reference, other)]
        if _statistics(paths[0], True) == _statistics(paths[1], True):
            continue
        a, b = (_statistics(path, False) for path in paths)
        if len(a) != len(b) or not all(map(_close, a, b)):
            return f'{split}: the statistics differ'
        differences.append(split)
    return (f'same, but for the order-dependent sketches {SKETCHED} and float sums within '
            f'1e-9 ({", ".join(differences)})') if differences else None


def _transform_difference(reference: str, other: str) -> Optional[str]:
    examples = [os.path.join(root, 'transformed_examples') for root in (reference, other)]
    if any(map(os.path.isdir, examples)):  # none when the Transform does not materialize
        difference = _records_difference(*examples)
        if difference:
            return difference
    assets = [os.path.join(root, 'transform_graph', 'transform_fn', 'assets')
              for root in (reference, other)]
    names = [sorted(os.listdir(folder)) for folder in assets]
    if names[0] != names[1]:
        return f'vocabulary files {names[0]} vs {names[1]}'
    for name in names[0]:
        contents = []
        for folder in assets:
            with open(os.path.join(folder, name), 'rb') as f:
                contents.append(f.read())
        if contents[0] != contents[1]:
            return f'vocabulary {name} differs'
    return None


def difference(component: str, reference: str, other: str) -> Optional[str]:
    """None if `component` wrote the same outputs under both run folders, else what differs."""
    folders = [os.path.join(root, component) for root in (reference, other)]
    if component == 'CsvExampleGen':
        return _records_difference(*(os.path.join(f, 'examples') for f in folders))
    if component == 'StatisticsGen':
        return _statistics_difference(*(os.path.join(f, 'statistics') for f in folders))
    return _transform_difference(*folders)
