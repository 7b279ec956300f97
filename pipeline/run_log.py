"""A local run's terminal and its full log.

TFX, Beam and TensorFlow log thousands of lines in a run (each artifact's protobuf among them),
which bury the components' progress and the one error a user needs. While a RunLog is open:

- everything goes to one file per run, <output_root>/logs/<pipeline>/<time>-<pid>.log, whose
  path is printed first: every logger's records, and whatever is written to this process's
  stdout and stderr (file descriptors 1 and 2: Keras's epoch lines, C++ logs, subprocesses);
- the terminal shows one line per component as it starts and as it ends (its duration and what
  ML Metadata says it made), a line a minute for a component that runs longer without one (with
  the time left estimated from its last complete run), the project's progress lines (loggers
  named `funnel.*`, e.g. the Trainer's steps with the time left), the project's warnings, any
  error without its traceback, and how many warnings of other libraries the log holds.

RunConfig.full_log_to_terminal (FUNNEL_RUN_FULL_LOG_TO_TERMINAL=true) leaves stdout and stderr
on the terminal and shows every record there as well.
"""

import logging
import os
import sys
import threading
import time
from typing import Callable, Optional, Tuple, Type

from absl import logging as absl_logging

PROGRESS = 'funnel'  # prefix of the loggers whose records are meant for the terminal
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_FORMAT = '%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] %(message)s'
# LocalDagRunner's records around each component (tfx/orchestration/local/local_dag_runner.py).
STARTED, FINISHED = 'Component %s is running.', 'Component %s is finished.'
HEARTBEAT_SECONDS = 60  # a line for a running component after this long without one


def _project_code(path: str) -> bool:
    return path.startswith(REPO_ROOT + os.sep) and 'site-packages' not in path


class TerminalHandler(logging.Handler):
    """Writes the records a person at the terminal needs, one short line each.

    `describe(component)` says what a finished component made; `last_seconds(component)` how
    long its last complete run took, for the estimate of the time left in heartbeat lines."""

    def __init__(self, stream, describe: Optional[Callable[[str], str]] = None,
                 last_seconds: Optional[Callable[[str], Optional[float]]] = None):
        super().__init__(logging.INFO)
        self.stream = stream
        self.describe = describe
        self.last_seconds = last_seconds
        self.started = {}
        self.running = None  # the component that started and has not finished
        self.previous = None  # how long the running component's last complete run took
        self.other_warnings = 0
        self.written = time.time()  # when the last line was written
        self.write_lock = threading.Lock()  # Handler.lock is logging's own

    def line(self, record: logging.LogRecord) -> Optional[str]:
        message = record.getMessage().strip()
        if record.msg == STARTED:
            self.running = record.args[0]
            self.started[self.running] = time.time()
            self.previous = self.last_seconds(self.running) if self.last_seconds else None
            return f'{self.running:<22} running'
        if record.msg == FINISHED:
            name = record.args[0]
            self.running = None
            took = time.time() - self.started.pop(name, time.time())
            facts = self.describe(name) if self.describe else ''
            return f'{name:<22} done in {took:.1f} s' + (f': {facts}' if facts else '')
        level = {logging.WARNING: 'warning: ', logging.ERROR: 'error: ',
                 logging.CRITICAL: 'error: '}.get(record.levelno, '')
        if record.name.startswith(PROGRESS):
            return level + message
        if record.levelno >= logging.ERROR or (record.levelno >= logging.WARNING
                                               and _project_code(record.pathname)):
            return level + message  # the message only: a traceback stays in the full log
        if record.levelno >= logging.WARNING:
            self.other_warnings += 1
        return None

    def write(self, line: str) -> None:
        with self.write_lock:
            self.stream.write(f'{time.strftime("%H:%M:%S")} {line}\n')
            self.stream.flush()
            self.written = time.time()

    def heartbeat(self, every: float) -> None:
        """A line for the running component when the terminal has had none for `every`
        seconds: how long it has run and, from its last complete run (ML Metadata), about how
        long it has left. Beam's stages report no progress of their own to go by."""
        running, now = self.running, time.time()
        if running is None or now - self.written < every:
            return
        elapsed = now - self.started.get(running, now)
        estimate = ''
        if self.previous:
            estimate = (f' (its last complete run took {self.previous:.0f} s: about '
                        f'{self.previous - elapsed:.0f} s left)' if elapsed < self.previous else
                        f' (longer than its last complete run, {self.previous:.0f} s)')
        self.write(f'{running:<22} running for {elapsed:.0f} s{estimate}')

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.line(record)
            if line:
                self.write(line)
        except Exception:  # noqa: BLE001 (logging must not break the run)
            self.handleError(record)


class RunLog:
    """The context of one run's logging (the module docstring); `print` writes to the terminal."""

    def __init__(self, log_dir: str, full_log_to_terminal: bool = False,
                 describe: Optional[Callable[[str], str]] = None,
                 last_seconds: Optional[Callable[[str], Optional[float]]] = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        self.full = full_log_to_terminal
        self.path = os.path.join(log_dir, f'{time.strftime("%Y%m%d-%H%M%S")}-{os.getpid()}.log')
        self.describe, self.last_seconds = describe, last_seconds
        self.heartbeat_seconds = heartbeat_seconds

    def __enter__(self) -> 'RunLog':
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved_fds = os.dup(1), os.dup(2)
        self.out = os.fdopen(os.dup(1), 'w', buffering=1)
        self.terminal = os.fdopen(os.dup(2), 'w', buffering=1)
        self.file = open(self.path, 'a', buffering=1)
        self._saved_streams = sys.stdout, sys.stderr
        if not self.full:
            os.dup2(self.file.fileno(), 1)
            os.dup2(self.file.fileno(), 2)
            sys.stdout = sys.stderr = self.file
        root = logging.getLogger()
        self._saved_root = root.level, list(root.handlers)
        for handler in self._saved_root[1]:
            root.removeHandler(handler)
        self.handler = TerminalHandler(self.terminal, self.describe, self.last_seconds)
        handlers = [logging.StreamHandler(self.file), self.handler]
        if self.full:
            handlers.append(logging.StreamHandler(self.terminal))
        for handler in handlers[:1] + handlers[2:]:
            handler.setFormatter(logging.Formatter(FULL_FORMAT))
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(logging.INFO)
        absl_logging.set_verbosity(absl_logging.INFO)
        logging.captureWarnings(True)
        self.terminal.write(f'Full log: {self.path}\n')
        self._stop = threading.Event()
        self._heartbeats = threading.Thread(target=self._beat, daemon=True)
        self._heartbeats.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds / 4):
            self.handler.heartbeat(self.heartbeat_seconds)

    def _report_warnings(self) -> None:
        """How many warnings of other libraries went to the log since the last report."""
        if self.handler.other_warnings:
            with self.handler.write_lock:
                self.terminal.write(f'{self.handler.other_warnings} warning(s) of TFX, Beam or '
                                    f'TensorFlow are in the full log: {self.path}\n')
                self.terminal.flush()
            self.handler.other_warnings = 0

    def print(self, text: str) -> None:
        """Writes text (e.g. the summary) to the terminal's stdout, after the warnings' count."""
        self._report_warnings()
        self.out.write(text + '\n')
        self.out.flush()

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._heartbeats.join()
        self._report_warnings()
        logging.captureWarnings(False)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(self._saved_root[0])
        for handler in self._saved_root[1]:
            root.addHandler(handler)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._saved_streams
        for fd, saved in zip((1, 2), self._saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        for stream in (self.file, self.out, self.terminal):
            stream.close()


def logged(log_dir: str, full_log_to_terminal: bool, work: Callable[[RunLog], None],
           user_errors: Callable[[], Tuple[Type[Exception], ...]],
           describe: Optional[Callable[[str], str]] = None,
           last_seconds: Optional[Callable[[str], Optional[float]]] = None) -> int:
    """Runs work(log) in a RunLog; returns the exit code: 0 when it returns, 2 for one of
    user_errors() (bad input or settings: their message says what to do; a function, so that
    the modules that define them are imported once the log is open), 1 for any other
    exception (on the terminal its message and the component it stopped, in the log its
    traceback). A failed run ends with the log's path."""
    with RunLog(log_dir, full_log_to_terminal, describe, last_seconds) as log:
        try:
            work(log)
            return 0
        except user_errors() as e:
            logging.error('%s', e)
            code = 2
        except Exception as e:  # noqa: BLE001 (the terminal gets the message, the log the rest)
            running = log.handler.running
            logging.error('%s%s: %s', f'{running} failed: ' if running else '',
                          type(e).__name__, e, exc_info=True)
            code = 1
    print(f'Full log: {log.path}', file=sys.stderr)
    return code


def configure_logging() -> None:
    """INFO logs with timestamps on stderr (commands other than runs, e.g. `make report`)."""
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.use_absl_handler()
