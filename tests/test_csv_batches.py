"""ExampleGen's batched CSV decoding (components/csv_batches.py) against TFX's own
CsvExampleGen decoding, on files written to be awkward rather than to suit either.

Both decode the same files in one Beam pipeline each; the tf.Examples must be byte-equal when
serialized deterministically (the hash split's key, so every row keeps its split).
"""

import random
import subprocess

import apache_beam as beam
import pandas as pd
import pytest
import tensorflow as tf
from tfx.components.example_gen.csv_example_gen import executor as csv_executor

from components import csv_batches
from components.example_gen import CsvToExample, csv_examples_in_order

HEADER = 'user_id,note,price,count,mixed,big,clicked,bought'
ROWS = [
    'u1,plain,1.5,3,7,1,1,1',
    '"u,2","line\nbreak",2,-4,0.25,2,0,0',
    'ü3,"quote ""inside""",,0012,abc,9223372036854775807,1,0',
    ' u4 ,  spaced  ,1e-3, 5,1e5,9223372036854775808,0,0',
    'u5,,nan,,-0,3,0,0',
    '',
    'u6,emoji 🎯,inf,7,,4,1,0',
    'u7,日本,-3.5e38,8,1.0000001,5,0,0',
]


def _serialized(example) -> bytes:
    return example if isinstance(example, bytes) else example.SerializeToString(
        deterministic=True)


def _decode(files, transform) -> list:
    """The deterministic serializations of the tf.Examples `transform` makes of `files`."""
    path = str(files[0].parent / f'decoded-{len(list(files[0].parent.iterdir()))}')
    with beam.Pipeline() as pipeline:
        _ = (pipeline | transform | beam.Map(_serialized)
             | beam.io.WriteToTFRecord(path, shard_name_template=''))
    return [record.numpy() for record in tf.data.TFRecordDataset(path)]


def _tfx_decoding(files):
    pattern = str(files[0].parent / '*.csv')
    return csv_executor._CsvToExample({'input_base': ''}, pattern)


@pytest.mark.parametrize('batch_lines', [2, csv_batches.BATCH_LINES])
def test_batched_decoding_gives_tfx_examples_byte_for_byte(tmp_path, monkeypatch, batch_lines):
    """Quoted commas and line breaks, non-ASCII text, spaces, leading zeros, int64's largest
    value and one past it (STRING), nan / inf / float32 overflow, blank cells, a blank line,
    and types decided across two files: the same tf.Examples as TFX's CsvExampleGen decodes,
    in batches of 2 lines and of the default size."""
    monkeypatch.setattr(csv_batches, 'BATCH_LINES', batch_lines)
    first, second = tmp_path / 'a.csv', tmp_path / 'b.csv'
    first.write_text('\n'.join([HEADER, *ROWS[:4]]) + '\n', encoding='utf-8')
    second.write_text('\n'.join([HEADER, *ROWS[4:]]) + '\n', encoding='utf-8')
    files = [first, second]
    batched = _decode(files, CsvToExample([str(f) for f in files], ('clicked', 'bought')))
    tfx = _decode(files, _tfx_decoding(files))
    assert len(batched) == 7 and sorted(batched) == sorted(tfx)
    example = tf.train.Example.FromString(batched[0]).features.feature
    kinds = {name: feature.WhichOneof('kind') for name, feature in example.items()}
    assert kinds == {'user_id': 'bytes_list', 'note': 'bytes_list', 'price': 'float_list',
                     'count': 'int64_list', 'mixed': 'bytes_list', 'big': 'bytes_list',
                     'clicked': 'int64_list', 'bought': 'int64_list'}


def test_a_column_blank_everywhere_is_a_feature_of_no_kind(tmp_path):
    """TFX writes a column with no value in any file as a feature of no kind (the Arrow
    encoder cannot type it): the batched decoding gives the same."""
    path = tmp_path / 'logs.csv'
    path.write_text('user,empty,clicked\nu1,,1\nu2,,0\n')
    batched = _decode([path], CsvToExample([str(path)], ('clicked',)))
    assert sorted(batched) == sorted(_decode([path], _tfx_decoding([path])))
    assert tf.train.Example.FromString(batched[0]).features.feature['empty'] == tf.train.Feature()


def test_batched_decoding_on_many_random_rows(tmp_path, monkeypatch):
    """5,000 rows of random cells (ids with a Zipf-like tail, floats of every magnitude, 10%
    blank cells) in batches of 333: the same tf.Examples as TFX's decoding."""
    monkeypatch.setattr(csv_batches, 'BATCH_LINES', 333)
    rng = random.Random(7)

    def cell(kind):
        if rng.random() < 0.1:
            return ''
        if kind == 'id':
            return f'u{int(rng.paretovariate(1.2))}'
        if kind == 'float':
            return repr(rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30))
        return str(rng.randint(-10**6, 10**6))
    lines = [','.join(cell(kind) for kind in ('id', 'float', 'int', 'int', 'id')) for _ in
             range(5000)]
    path = tmp_path / 'logs.csv'
    path.write_text('\n'.join(['user,price,count,clicked,item', *lines]) + '\n')
    batched = _decode([path], CsvToExample([str(path)], ()))
    assert sorted(batched) == sorted(_decode([path], _tfx_decoding([path])))
    in_order = list(csv_examples_in_order([str(path)], ()))  # bench/truth_calibration.py
    assert sorted(in_order) == sorted(batched)
    users = [tf.train.Example.FromString(record).features.feature['user'].bytes_list.value
             for record in in_order]
    assert [list(user) for user in users] == [
        [line.split(',')[0].encode()] if line.split(',')[0] else [] for line in lines]


def test_gzip_files_decode_as_the_plain_file(tmp_path):
    """A daily dump compressed by pandas (`to_csv(compression='gzip')`) and by the `gzip` CLI
    (several gzip members: two files concatenated with `cat`) gives the tf.Examples of the
    plain file; TFX's own reader cannot iterate Beam's decompressing file (TypeError)."""
    plain = tmp_path / 'plain' / 'logs.csv'
    plain.parent.mkdir()
    plain.write_text('\n'.join([HEADER, *ROWS]) + '\n', encoding='utf-8')
    pandas_gz = tmp_path / 'pandas' / 'logs.csv.gz'
    pandas_gz.parent.mkdir()
    pd.read_csv(plain, dtype=str, keep_default_na=False).to_csv(pandas_gz, index=False,
                                                                compression='gzip')
    cli_gz = tmp_path / 'cli' / 'logs.csv.gz'
    cli_gz.parent.mkdir()
    halves = [tmp_path / 'cli' / name for name in ('a.csv', 'b.csv')]
    halves[0].write_text('\n'.join([HEADER, *ROWS[:4]]) + '\n', encoding='utf-8')
    halves[1].write_text('\n'.join(ROWS[4:]) + '\n', encoding='utf-8')
    subprocess.run(['gzip', *map(str, halves)], check=True)
    cli_gz.write_bytes(b''.join(path.with_suffix('.csv.gz').read_bytes() for path in halves))
    for path in halves:
        path.with_suffix('.csv.gz').unlink()
    expected = sorted(_decode([plain], CsvToExample([str(plain)], ('clicked', 'bought'))))
    for path in (pandas_gz, cli_gz):
        assert sorted(_decode([path], CsvToExample([str(path)], ('clicked', 'bought')))) == \
            expected, path
    with pytest.raises(TypeError, match='not iterable'):
        list(csv_executor._ReadCsvRecordsFromTextFile().process(str(cli_gz)))
