"""What the benchmark commands share around their results: the date and machine they name, the
log set-up, and writing the markdown they print."""

import datetime
import logging
import os
import platform


def utc_now() -> str:
    return f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC'


def machine() -> str:
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), platform.processor())
    return f'{platform.node()}, {os.cpu_count()} CPU cores ({cpu}), {platform.platform()}'


def configure_logging() -> None:
    """Timestamped progress lines; the libraries' own INFO logs left out."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    for noisy in ('apache_beam', 'tensorflow', 'absl'):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
