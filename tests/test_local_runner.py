"""Bad input stops the local runner with one clear message and writes nothing to serve."""

import os
import sys
from unittest import mock

import pytest

from pipeline import local_runner


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith('FUNNEL_')]:
        monkeypatch.delenv(name)
    monkeypatch.setenv('FUNNEL_OUTPUT_ROOT', str(tmp_path / 'outputs'))
    return tmp_path / 'outputs'


def _run_main(capfd) -> tuple:
    """local_runner.main() as `python -m pipeline.local_runner` runs it: with a bare command line
    (ExampleGen's Beam executor parses sys.argv with absl, and must not see pytest's flags).
    Returns its exit code and what it wrote to the terminal's stderr."""
    capfd.readouterr()
    with mock.patch.object(sys, 'argv', sys.argv[:1]):
        code = local_runner.main()
    return code, capfd.readouterr().err


def test_missing_input_folder(outputs, monkeypatch, capfd, tmp_path):
    monkeypatch.setenv('FUNNEL_DATA_ROOT', str(tmp_path / 'nowhere'))
    code, message = _run_main(capfd)
    assert code == 2
    assert str(tmp_path / 'nowhere') in message and 'does not exist' in message
    assert os.listdir(outputs) == ['logs']  # the run's log only
    assert 'Traceback' not in message and 'Full log: ' in message


def test_empty_data_file(outputs, monkeypatch, capfd, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'impressions.csv').write_text('')
    monkeypatch.setenv('FUNNEL_DATA_ROOT', str(data))
    code, message = _run_main(capfd)
    assert code == 2
    assert 'impressions.csv is empty' in message  # found by the input check in ExampleGen
    assert 'Traceback' not in message
    assert not (outputs / 'serving_model').exists()


def test_malformed_configuration(outputs, monkeypatch, capfd):
    monkeypatch.setenv('FUNNEL_MODEL_NUM_EXPERTS', 'four')
    code, message = _run_main(capfd)
    assert code == 2
    assert 'FUNNEL_MODEL_NUM_EXPERTS' in message and "'four'" in message
    assert not outputs.exists()


def test_validate_only_flag(outputs, monkeypatch, capfd):
    """`--validate-only` (make validate) runs the pipeline up to the gate and says the data
    passed; without it, all of it."""
    from pipeline import local_pipeline

    calls = []
    monkeypatch.setattr(local_pipeline, 'run', lambda config, validate_only: calls.append(
        validate_only))
    with mock.patch.object(sys, 'argv', ['local_runner.py', '--validate-only']):
        assert local_runner.main() == 0
        assert sys.argv == ['local_runner.py']  # what the Beam executors will parse
        assert capfd.readouterr().out == ('The data passed: the input check, the schema and '
                                          'the drift comparison found no anomaly.\n')
        assert local_runner.main([]) == 0
    assert calls == [True, False]
