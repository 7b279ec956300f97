"""Bad input stops the local runner with one clear message and writes nothing to serve."""

import logging
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


def _run_main(caplog) -> tuple:
    """local_runner.main() as `python -m pipeline.local_runner` runs it: with a bare command line
    (ExampleGen's Beam executor parses sys.argv with absl, and must not see pytest's flags)."""
    with caplog.at_level(logging.ERROR), mock.patch.object(sys, 'argv', sys.argv[:1]):
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
    assert 'impressions.csv is empty' in message  # found by the input check in ExampleGen
    assert not (outputs / 'serving_model').exists()


def test_malformed_configuration(outputs, monkeypatch, caplog):
    monkeypatch.setenv('FUNNEL_MODEL_NUM_EXPERTS', 'four')
    code, message = _run_main(caplog)
    assert code == 2
    assert 'FUNNEL_MODEL_NUM_EXPERTS' in message and "'four'" in message
    assert not outputs.exists()



def test_validate_only_flag(monkeypatch):
    """`--validate-only` (make validate) runs the pipeline up to the gate; without it, all of it."""
    calls = []
    monkeypatch.setattr(local_runner, 'run', lambda config, validate_only: calls.append(
        validate_only))
    with mock.patch.object(sys, 'argv', ['local_runner.py', '--validate-only']):
        assert local_runner.main() == 0
        assert sys.argv == ['local_runner.py']  # what the Beam executors will parse
        assert local_runner.main([]) == 0
    assert calls == [True, False]
