"""A run's terminal and full log (pipeline/run_log.py) and one run at a time (pipeline/run_lock.py).

The terminal tests run RunLog in this process, as `make run` does, and read what reached this
process's stdout and stderr (pytest's capfd); the lock tests hold the lock in real separate
processes and start the real runner against it.
"""

import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import pytest

from pipeline import run_lock, run_log
from pipeline.config import REPO_ROOT

RUNNER_LOG = logging.getLogger('absl')  # LocalDagRunner logs through absl's logger


def _components_then(work):
    """A work function that logs a component's start and end as LocalDagRunner does, then
    calls work()."""
    def run(log):
        RUNNER_LOG.info(run_log.STARTED, 'StatisticsGen')
        RUNNER_LOG.info('Using deployment config:\n %s', 'executor_specs { ... }')
        RUNNER_LOG.info(run_log.FINISHED, 'StatisticsGen')
        RUNNER_LOG.info(run_log.STARTED, 'Trainer')
        work(log)
    return run


def test_terminal_shows_components_progress_and_warnings_the_log_holds_everything(tmp_path,
                                                                                   capfd):
    def work(log):
        print('Epoch 1/6 - 3s - loss: 0.2')  # Keras's fit(verbose=2) writes to stdout
        os.write(2, b'E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479]\n')
        logging.getLogger('funnel.trainer').info('Trainer: step 300 of 1500 (20%%), about %d s '
                                                 'left.', 100)
        library = logging.getLogger('tensorflow')  # a record as TensorFlow's own code logs it
        library.handle(library.makeRecord(
            'tensorflow', logging.WARNING, '/venv/lib/site-packages/tensorflow/x.py', 1,
            '5 out of the last 5 calls triggered retracing', (), None))
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.warn('a library deprecation', FutureWarning, stacklevel=1)
        logging.warning('A warning of the project, in plain words.')
        RUNNER_LOG.info(run_log.FINISHED, 'Trainer')
        log.print('| task | AUC |')

    code = run_log.logged(str(tmp_path / 'logs'), False, _components_then(work), lambda: (),
                          describe=lambda name: 'rows train 8' if name == 'StatisticsGen' else '')
    assert code == 0
    out, err = capfd.readouterr()
    lines = [line.split(' ', 1)[1] if line[:2].isdigit() else line
             for line in err.splitlines()]
    [path] = [str(p) for p in (tmp_path / 'logs').iterdir()]
    assert lines[0] == f'Full log: {path}'
    assert lines[1] == 'StatisticsGen          running'
    assert lines[2].startswith('StatisticsGen          done in ') and lines[2].endswith(
        's: rows train 8')
    assert lines[3] == 'Trainer                running'
    assert lines[4] == 'Trainer: step 300 of 1500 (20%), about 100 s left.'
    assert lines[5] == 'warning: A warning of the project, in plain words.'
    assert lines[6].startswith('Trainer                done in ')
    assert lines[7] == (f'2 warning(s) of TFX, Beam or TensorFlow are in the full log: {path}')
    assert len(lines) == 8
    assert out == '| task | AUC |\n'
    full = open(path).read()
    for text in ('Epoch 1/6', 'cuda_fft.cc', 'Using deployment config', 'retracing',
                 'a library deprecation', 'Trainer: step 300', 'Component Trainer is finished.'):
        assert text in full, text
    # The terminal is restored: this process writes to it again.
    print('after the run')
    assert capfd.readouterr().out == 'after the run\n'


def test_a_failing_run_shows_its_error_and_the_log_not_the_traceback(tmp_path, capfd):
    def work(log):
        raise ValueError('Cannot fit the calibration: the validation split has 0 conversions.')

    code = run_log.logged(str(tmp_path / 'logs'), False, _components_then(work), lambda: ())
    assert code == 1
    err = capfd.readouterr().err
    [path] = [str(p) for p in (tmp_path / 'logs').iterdir()]
    assert ('Trainer failed: ValueError: Cannot fit the calibration: the validation split has '
            '0 conversions.') in err
    assert 'Traceback' not in err and err.rstrip().endswith(f'Full log: {path}')
    full = open(path).read()
    assert 'Traceback (most recent call last)' in full and 'raise ValueError' in full


def test_a_user_error_stops_with_code_2_and_its_message(tmp_path, capfd):
    class InputError(ValueError):
        pass

    def work(log):
        raise InputError('data/x.csv line 3, column click: value 2 is not 0 or 1.\nFix it.')

    assert run_log.logged(str(tmp_path / 'logs'), False, work, lambda: (InputError,)) == 2
    err = capfd.readouterr().err
    assert 'error: data/x.csv line 3, column click: value 2 is not 0 or 1.\nFix it.' in err
    assert 'Traceback' not in err


def test_full_log_to_terminal_shows_every_record(tmp_path, capfd):
    def work(log):
        RUNNER_LOG.info('Using deployment config:\n %s', 'executor_specs { ... }')
        print('Epoch 1/6')

    assert run_log.logged(str(tmp_path / 'logs'), True, work, lambda: ()) == 0
    out, err = capfd.readouterr()
    assert 'Using deployment config' in err and 'Epoch 1/6' in out
    [path] = list((tmp_path / 'logs').iterdir())
    assert 'Using deployment config' in path.read_text()


# --- One run at a time ---------------------------------------------------------------------------

HOLD = ('import sys, time; from pipeline import run_lock\n'
        'with run_lock.pipeline_lock(sys.argv[1], "funnel-mmoe"):\n'
        '    print("locked", flush=True); time.sleep(600)\n')


def _holder(metadata_path: str) -> subprocess.Popen:
    """A separate process that holds the pipeline's run lock until killed."""
    process = subprocess.Popen([sys.executable, '-c', HOLD, metadata_path], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == 'locked\n'
    return process


def test_a_second_run_stops_naming_the_running_one(tmp_path):
    """The real runner (`python -m pipeline.local_runner`) on valid input, while another process
    of the same pipeline and output root holds the lock: it stops with code 2, naming the
    running one's pid and command, before running anything."""
    from simulator.funnel import write_dataset

    write_dataset(tmp_path / 'data', rows=200, seed=0)
    outputs = tmp_path / 'outputs'
    metadata = outputs / 'metadata' / 'funnel-mmoe' / 'metadata.db'
    holder = _holder(str(metadata))
    try:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith('FUNNEL_')},
               'FUNNEL_DATA_ROOT': str(tmp_path / 'data' / 'examples'),
               'FUNNEL_OUTPUT_ROOT': str(outputs)}
        second = subprocess.run([sys.executable, '-m', 'pipeline.local_runner', '--summary'],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=600)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr[-3000:]
    assert (f'error: Pipeline funnel-mmoe is already running with the same outputs (pid '
            f'{holder.pid}, started ') in second.stderr
    assert f'command: {sys.executable} -c import sys, time' in second.stderr
    assert not metadata.exists()  # it ran nothing
    assert 'Full log: ' in second.stderr


def test_a_killed_run_releases_the_lock_and_a_waiting_run_goes_on(tmp_path):
    metadata = str(tmp_path / 'metadata' / 'p' / 'metadata.db')
    holder = _holder(metadata)
    with pytest.raises(run_lock.RunLockedError, match=f'pid {holder.pid}'):
        with run_lock.pipeline_lock(metadata, 'p'):
            pass
    start = time.time()
    killer = subprocess.Popen(['sh', '-c', f'sleep 2; kill -KILL {holder.pid}'])
    with run_lock.pipeline_lock(metadata, 'p', wait=True):  # waits for the holder to die
        waited = time.time() - start
        assert holder.wait() == -signal.SIGKILL
        with open(run_lock.lock_path(metadata)) as f:
            assert f.read().startswith(f'pid {os.getpid()}, started ')
    killer.wait()
    assert waited >= 1.5
    with run_lock.pipeline_lock(metadata, 'p'):  # released: taken again at once
        pass


def test_a_long_silent_component_gets_a_line_with_the_time_left(tmp_path, capfd):
    """No line for `heartbeat_seconds`: a line with the time run so far and the time left,
    estimated from the component's last complete run (here 100 s, from last_seconds)."""
    def work(log):
        RUNNER_LOG.info(run_log.STARTED, 'Transform')
        time.sleep(1.0)
        RUNNER_LOG.info(run_log.FINISHED, 'Transform')

    with run_log.RunLog(str(tmp_path / 'logs'), last_seconds=lambda name: 100.0,
                        heartbeat_seconds=0.4) as log:
        work(log)
    lines = [line.split(' ', 1)[1] for line in capfd.readouterr().err.splitlines()[1:]]
    assert lines[0] == 'Transform              running'
    beats = lines[1:-1]
    assert 1 <= len(beats) <= 3, lines
    for beat in beats:
        assert re.fullmatch(r'Transform              running for [01] s \(its last complete '
                            r'run took 100 s: about (99|100) s left\)', beat), beat
    assert lines[-1].startswith('Transform              done in 1.')
