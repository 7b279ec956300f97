"""The input check's time on files shaped to be hard for it, against one read of each file.

    python -m bench.input_check [--rows 1000000]       (make bench-input)

The input check (pipeline/inputs.py) must cost time linear in a file's size whatever the file
holds: an earlier duplicate-header check counted every name against every other, so a file with
classic Mac line ends (one line to a reader splitting at \\n: a header of every cell) ran for
minutes. Each kind of file below is written to a temporary folder; the table gives its size,
the seconds of reading its bytes once (through the file layer the check uses, in chunks), of
reading it once as CSV records (Python's csv module, which reads \\r line ends too: the least a
check of every row costs) and of the check, the check's time over the CSV read, and the first
words of the check's verdict. The valid rows are also timed gzip-compressed (`*.csv.gz`, read
decompressed: the reads decompress too) and as Parquet (read: pyarrow's read of the whole
table). tests/test_inputs.py checks the verdicts on the same kinds of files at a small size.
"""

import argparse
import csv
import gzip
import io
import logging
import os
import tempfile
import time
from typing import Dict

import pandas as pd
import pyarrow.parquet as pq
from tfx.dsl.io import fileio

from bench import results_file
from pipeline import inputs

LABELS = ('click', 'conversion')
DENSE = ('price',)
HEADER = 'user_id,price,click,conversion'
OUT = 'bench/results/input_check.md'


def _rows(rows: int, end: str = '\n') -> str:
    """`rows` valid impressions (a conversion only after a click), lines ended by `end`."""
    lines = [HEADER] + [f'u{i % 9973},{i % 97}.25,{int(i % 20 == 0)},{int(i % 200 == 0)}'
                        for i in range(rows)]
    return end.join(lines) + end


def _wide_header(names: int, duplicate: bool) -> str:
    """A header of `names` columns (every name twice if `duplicate`) and two rows."""
    columns = [f'c{i // 2 if duplicate else i}' for i in range(names)] + list(LABELS)
    cells = ','.join(['1'] * names)
    return '\n'.join([','.join(columns), cells + ',1,1', cells + ',0,0']) + '\n'


# name: (what the file is, a function of the row count giving its text[, the file's name: its
# format, CSV by default])
FILES: Dict[str, tuple] = {
    'rows': ('valid rows, \\n line ends', lambda rows: _rows(rows)),
    'gzip rows': ('the valid rows, gzip-compressed', lambda rows: _rows(rows), 'logs.csv.gz'),
    'parquet rows': ('the valid rows as Parquet', lambda rows: _rows(rows), 'logs.parquet'),
    'mac': ('the same rows with \\r line ends (classic Mac OS)', lambda rows: _rows(rows, '\r')),
    'appended mac': ('half \\n, then half \\r (a Mac export appended)',
                     lambda rows: _rows(rows // 2) + _rows(rows // 2, '\r').split('\r', 1)[1]),
    'wide header': ('a header of 100,000 names', lambda rows: _wide_header(100_000, False)),
    'duplicated header': ('a header of 100,000 names, each twice',
                          lambda rows: _wide_header(200_000, True)),
    'long row': ('a header, then one row of 40 MB',
                 lambda rows: HEADER + '\n' + 'u1,' + '7' * 40 * 2**20 + ',0,0\n'),
    'no line break': ('40 MB without a line break', lambda rows: 'x' * 40 * 2**20),
}


def bytes_read_seconds(path: str) -> float:
    """Seconds to read the file's bytes once, in chunks, through the file layer the check uses
    (decompressed, for *.gz)."""
    start = time.perf_counter()
    with fileio.open(path, 'rb') as raw:
        f = gzip.GzipFile(fileobj=raw) if path.endswith('.gz') else raw
        while f.read(inputs.READ_CHUNK):
            pass
    return time.perf_counter() - start


def csv_read_seconds(path: str) -> float:
    """Seconds to read the file once as CSV records with Python's csv module (to its end, or to
    the record it cannot read); for Parquet, pyarrow's read of the whole table."""
    start = time.perf_counter()
    if path.endswith('.parquet'):
        pq.read_table(path)
        return time.perf_counter() - start
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt', newline='', encoding='utf-8') as f:
        try:
            for _ in csv.reader(f):
                pass
        except csv.Error:
            pass
    return time.perf_counter() - start


def verdict(folder: str, data_format: str = 'csv') -> str:
    """The check's verdict on the folder: 'accepted', or its message."""
    try:
        inputs.check_input_files(folder, data_format, LABELS, DENSE)
        return 'accepted'
    except inputs.InputDataError as e:
        return str(e).replace(folder + '/', '')


def measure(kind: str, rows: int, work_dir: str) -> dict:
    folder = os.path.join(work_dir, kind.replace(' ', '-'))
    os.makedirs(folder)
    description, make, name = (*FILES[kind], 'logs.csv')[:3]
    path = os.path.join(folder, name)
    if name.endswith('.parquet'):
        pd.read_csv(io.StringIO(make(rows))).to_parquet(path, index=False)
    else:
        with (gzip.open if name.endswith('.gz') else open)(path, 'wt', newline='') as f:
            f.write(make(rows))
    read, csv_read = bytes_read_seconds(path), csv_read_seconds(path)
    start = time.perf_counter()
    outcome = verdict(folder, 'parquet' if name.endswith('.parquet') else 'csv')
    check = time.perf_counter() - start
    logging.info('%s: %.2f s (CSV read %.2f s): %s', kind, check, csv_read, outcome[:100])
    return {'kind': kind, 'file': description, 'mb': os.path.getsize(path) / 2**20,
            'read': read, 'csv_read': csv_read, 'check': check, 'verdict': outcome}


def table(results, rows: int) -> str:
    lines = [f'# The input check on hard files ({rows:,} rows where a file has rows)', '',
             f'`python -m bench.input_check --rows {rows}` on {results_file.machine()}, '
             f'{results_file.utc_now()}, load average {os.getloadavg()[0]:.1f} (other work '
             'on the machine slows the check and the reads alike).', '',
             '| file | MB | bytes read (s) | CSV read (s) | check (s) | check / CSV read '
             '| verdict |',
             '|---|---:|---:|---:|---:|---:|---|']
    for r in results:
        lines.append(f"| {r['file']} | {r['mb']:.1f} | {r['read']:.3f} | {r['csv_read']:.2f} | "
                     f"{r['check']:.2f} | {r['check'] / max(r['csv_read'], 1e-3):.1f}x | "
                     f"{r['verdict'][:90]}... |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=1_000_000)
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    results_file.configure_logging()
    with tempfile.TemporaryDirectory() as work_dir:
        results = [measure(kind, args.rows, work_dir) for kind in FILES]
    text = table(results, args.rows)
    print(text)
    results_file.write(args.out, text)


if __name__ == '__main__':
    main()
