"""One run at a time per pipeline and output root: a lock file beside the ML Metadata store.

Two runs of one pipeline share its ML Metadata, its drift baseline, its production model and its
serving folder; a second run started while one is running stops at once, naming the running one
(or waits for it: RunConfig.wait_for_running_run). The lock is fcntl.flock on
<output_root>/metadata/<pipeline>/run.lock: the kernel releases it when the holding process
ends, however it ends (SIGKILL included), so a killed run never leaves a stale lock behind.
"""

import contextlib
import datetime
import fcntl
import logging
import os
import sys

LOCK_FILE = 'run.lock'


class RunLockedError(RuntimeError):
    """Another run of the same pipeline holds the lock; the message names it."""


def lock_path(metadata_path: str) -> str:
    return os.path.join(os.path.dirname(metadata_path), LOCK_FILE)


def _command() -> str:
    """This process's command line as started (the runner resets sys.argv for TFX's executors)."""
    try:
        with open('/proc/self/cmdline', 'rb') as f:
            return ' '.join(part.decode(errors='replace') for part in f.read().split(b'\0') if part)
    except OSError:
        return ' '.join(sys.argv)


@contextlib.contextmanager
def pipeline_lock(metadata_path: str, pipeline_name: str, wait: bool = False):
    """Holds the pipeline's run lock for the block; raises RunLockedError if another process
    holds it (or waits for it to be released when `wait`)."""
    path = lock_path(metadata_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors='replace').strip() or 'unknown'
            if not wait:
                raise RunLockedError(
                    f'Pipeline {pipeline_name} is already running with the same outputs '
                    f'({holder}; lock {path}). Wait for it to finish or stop it (kill <pid>); '
                    'FUNNEL_RUN_WAIT_FOR_RUNNING_RUN=true makes a new run wait for it '
                    'instead.') from None
            logging.getLogger('funnel.run').warning(
                'Pipeline %s is already running (%s): waiting for it to finish.', pipeline_name,
                holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f'pid {os.getpid()}, started '
                       f'{datetime.datetime.now().isoformat(sep=" ", timespec="seconds")}, '
                       f'command: {_command()}\n').encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
