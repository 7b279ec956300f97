"""The quality benchmark's code path end to end on tiny data: simulator, tf.Transform, the
project's models (not DeepCTR, whose venv CI does not have), scores and the markdown table."""

import re

from bench import quality

SYSTEMS = ('MMoE + ESMM', 'MMoE + naive')


def _table_rows(text: str, heading: str):
    """The data rows of the markdown table under `heading`, as lists of cells."""
    section = text.split(heading, 1)[1].split('\n## ', 1)[0]
    rows = [line.strip('|').split('|') for line in section.splitlines() if line.startswith('|')]
    return [[cell.strip() for cell in row] for row in rows]


def test_quality_benchmark_writes_every_row_and_column(tmp_path):
    out = tmp_path / 'quality.md'
    text = quality.main(['--grid-rows', '3000', '--curve-rows', '', '--seeds', '1',
                         '--epochs', '3000:1', '--systems', ','.join(SYSTEMS),
                         '--data-root', str(tmp_path / 'data'), '--out', str(out)])
    assert out.read_text() == text

    header, _, bayes, *systems = _table_rows(text, '## 3,000 rows')
    expected_columns = (['system'] + [f'{t} AUC' for t, *_ in quality.TASKS]
                        + [f'{t} AUC / Bayes' for t, *_ in quality.TASKS]
                        + [f'{t} calibration' for t, *_ in quality.TASKS[:3]] + ['examples/s'])
    assert header == expected_columns
    assert [row[0] for row in systems] == list(SYSTEMS)
    assert all(0.0 < float(value) < 1.0 for value in bayes[1:1 + len(quality.TASKS)])
    for row in systems:
        assert len(row) == len(expected_columns)
        aucs = [float(cell) for cell in row[1:1 + len(quality.TASKS)]]
        assert all(0.0 < auc < 1.0 for auc in aucs), row
        assert float(row[-1]) > 0  # examples/s

    curve = _table_rows(text, '## Learning curve of MMoE + ESMM')
    assert curve[2][0] == '3,000'
    targets = text.split('## Targets', 1)[1]
    assert re.search(r'- (met|MISSED): ESMM beats the naive loss', targets)
