"""Log set-up for pipeline runs: timestamps, and each component's duration when it finishes.

LocalDagRunner logs 'Component X is running.' and 'Component X is finished.' but not how long
X took; ComponentTimer adds that to the second line.
"""

import logging
import time

from absl import logging as absl_logging


class ComponentTimer(logging.Filter):
    """Appends '(took N s)' to LocalDagRunner's 'Component ... is finished.' log records."""

    def __init__(self):
        super().__init__()
        self.started = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == 'Component %s is running.':
            self.started[record.args[0]] = time.time()
        elif record.msg == 'Component %s is finished.' and record.args[0] in self.started:
            took = time.time() - self.started.pop(record.args[0])
            record.msg = 'Component %s is finished (took %.1f s).'
            record.args = (record.args[0], took)
        return True


def configure_logging() -> None:
    """INFO logs with timestamps on stderr, with component durations."""
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.use_absl_handler()
    absl_logging.get_absl_handler().addFilter(ComponentTimer())
