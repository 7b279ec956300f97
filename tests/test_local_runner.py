"""Bad input stops the local runner with one clear message and writes nothing to serve."""

import logging
import os

import pytest

from pipeline import local_runner


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith('FUNNEL_')]:
        monkeypatch.delenv(name)
    monkeypatch.setenv('FUNNEL_OUTPUT_ROOT', str(tmp_path / 'outputs'))
    return tmp_path / 'outputs'


def _run_main(caplog) -> tuple:
    with caplog.at_level(logging.ERROR):
        code = local_runner.main()
    return code, ' '.join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_missing_input_folder(outputs, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv('FUNNEL_DATA_ROOT', str(tmp_path / 'nowhere'))
    code, message = _run_main(caplog)
    assert code == 2
    assert str(tmp_path / 'nowhere') in message and 'does not exist' in message
    assert not outputs.exists()


def test_empty_data_file(outputs, monkeypatch, caplog, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'impressions.csv').write_text('')
    monkeypatch.setenv('FUNNEL_DATA_ROOT', str(data))
    code, message = _run_main(caplog)
    assert code == 2
    assert 'impressions.csv is empty' in message
    assert not outputs.exists()


def test_malformed_configuration(outputs, monkeypatch, caplog):
    monkeypatch.setenv('FUNNEL_MODEL_NUM_EXPERTS', 'four')
    code, message = _run_main(caplog)
    assert code == 2
    assert 'FUNNEL_MODEL_NUM_EXPERTS' in message and "'four'" in message
    assert not outputs.exists()


def test_conversion_without_click_in_tfrecords(tmp_path):
    """The funnel rule holds for TFRecord input too: the gzipped file and record are named."""
    import tensorflow as tf

    from pipeline import inputs
    from simulator.funnel import simulate
    from trainer.warmup import serialize_example

    rows, _ = simulate(30, seed=4)
    rows.loc[[3, 17], ['click', 'conversion']] = [0, 1]
    data = tmp_path / 'data'
    data.mkdir()
    with tf.io.TFRecordWriter(str(data / 'part-0.gz'), 'GZIP') as writer:
        for row in rows.to_dict('records'):
            writer.write(serialize_example(row))
    with pytest.raises(inputs.InputDataError, match=r'part-0.gz: 2 row\(s\) with conversion = 1 '
                                                    r'but click = 0 at record\(s\) 3, 17'):
        inputs.check_input_files(str(data), 'tfrecord')
