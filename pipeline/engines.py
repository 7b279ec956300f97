"""The `beam` section of the configuration as Beam's pipeline arguments, and the job-server jars
Beam's Flink and Spark runners start.

    python -m pipeline.engines fetch [flink] [spark]   (`make jars`: the pinned jars, with Maven)

Beam's FlinkRunner and SparkRunner start a job server (a Java process) from the jar given by
--flink_job_server_jar / --spark_job_server_jar; without one, Beam 2.61 downloads it from Maven
Central at run time. The jars are fetched at install instead, pinned, into .cache/jars/, and
passed explicitly, so that a run downloads nothing and a missing jar is an error saying what to
run. Both runners (pipeline/local_runner.py, kubeflow/runner.py) take their Beam arguments from
pipeline_args.
"""

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Iterable, List, Optional, Sequence

from pipeline.config import REPO_ROOT, BeamConfig

JAR_DIR = os.path.join(REPO_ROOT, '.cache', 'jars')
MAVEN_DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1'
FLINK_VERSION = '1.19'  # Beam 2.61's newest Flink; a Flink cluster must run the same minor version
# The job servers of requirements.txt's apache-beam (2.61.0): group:artifact:version.
JOB_SERVERS = {
    'flink': f'org.apache.beam:beam-runners-flink-{FLINK_VERSION}-job-server:2.61.0',
    'spark': 'org.apache.beam:beam-runners-spark-3-job-server:2.61.0',
}
INSTALL_JAVA = 'install a JDK 17 and Maven (Debian: apt-get install openjdk-17-jdk-headless maven)'
# The threads of Beam's LOOPBACK SDK workers (apache_beam/runners/worker/worker_pool_main.py).
LOOPBACK_WORKER_THREAD_PREFIX = 'run_worker_'
LOOPBACK_WORKER_WAIT_SECONDS = 60.0


class EngineError(RuntimeError):
    """Something the configured Beam runner needs is missing on this machine."""


def jar_path(runner: str) -> str:
    """Where `make jars` puts the pinned job server of `runner` ('flink' or 'spark')."""
    _, artifact, version = JOB_SERVERS[runner].split(':')
    return os.path.join(JAR_DIR, f'{artifact}-{version}.jar')


def job_server_jar(beam: BeamConfig) -> str:
    return beam.job_server_jar or jar_path(beam.runner)


def runner_args(beam: BeamConfig) -> List[str]:
    """The Beam arguments that select beam.runner; none for the DirectRunner."""
    if beam.runner == 'direct':
        return []
    args = [f'--environment_type={beam.environment_type}']
    if beam.environment_config:
        args.append(f'--environment_config={beam.environment_config}')
    if beam.runner == 'flink':
        args.append(f'--parallelism={beam.parallelism}')
    if beam.job_endpoint:
        return ['--runner=PortableRunner', f'--job_endpoint={beam.job_endpoint}', *args]
    if beam.runner == 'flink':
        return ['--runner=FlinkRunner', f'--flink_master={beam.flink_master}',
                f'--flink_version={FLINK_VERSION}',
                f'--flink_job_server_jar={job_server_jar(beam)}', *args]
    return ['--runner=SparkRunner',
            f'--spark_master_url={beam.spark_master_url or f"local[{beam.parallelism}]"}',
            f'--spark_job_server_jar={job_server_jar(beam)}', *args]


def pipeline_args(beam: BeamConfig, extra: Iterable[str] = ()) -> List[str]:
    """runner_args, then `extra` (a later argument wins: a user's own flags override)."""
    return runner_args(beam) + list(extra)


def check_runner(beam: BeamConfig) -> None:
    """Raises EngineError naming what to install when the job server cannot start here."""
    if beam.runner == 'direct' or beam.job_endpoint:
        return
    if shutil.which('java') is None:
        raise EngineError(f"beam.runner={beam.runner} starts Beam's {beam.runner} job server, "
                          f'a Java process, and no `java` is on PATH: {INSTALL_JAVA}.')
    jar = job_server_jar(beam)
    if not os.path.isfile(jar):
        how = (f'run `make jars` (it fetches {JOB_SERVERS[beam.runner]} with Maven)'
               if not beam.job_server_jar else "set FUNNEL_BEAM_JOB_SERVER_JAR to the jar's path")
        raise EngineError(f'The {beam.runner} job server jar {jar} is missing: {how}.')


def wait_for_loopback_workers(timeout_seconds: float = LOOPBACK_WORKER_WAIT_SECONDS) -> None:
    """Waits for the LOOPBACK SDK workers of finished Beam jobs to end. They are daemon threads
    that still tear down their DoFns after the job is done, and Python exiting while one is in a
    TensorFlow call aborted successful runs (SIGABRT, `FATAL: exception not rethrown`; measured
    in docs/scaling.md). Nothing to wait for on the DirectRunner."""
    deadline = time.monotonic() + timeout_seconds
    for thread in threading.enumerate():
        if thread.name.startswith(LOOPBACK_WORKER_THREAD_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logging.getLogger('funnel.run').warning(  # a terminal line (run_log.py)
                    'Beam SDK worker %s still running after %.0f s: not waiting longer.',
                    thread.name, timeout_seconds)


def fetch(runners: Sequence[str]) -> List[str]:
    """Copies the pinned job servers of `runners` into JAR_DIR with Maven (those not there yet);
    returns their paths. Raises EngineError with Maven's own words when it cannot."""
    paths = []
    for runner in runners:
        path = jar_path(runner)
        if not os.path.isfile(path):
            if shutil.which('mvn') is None:
                raise EngineError(f'`make jars` fetches the job servers with Maven: '
                                  f'{INSTALL_JAVA}.')
            result = subprocess.run(
                ['mvn', '-B', '-q', '-U', f'{MAVEN_DEPENDENCY_PLUGIN}:copy',
                 f'-Dartifact={JOB_SERVERS[runner]}', f'-DoutputDirectory={JAR_DIR}'],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
            if result.returncode or not os.path.isfile(path):
                errors = [re.sub(r'\x1b\[[0-9;]*m', '', line)  # without Maven's colours
                          for line in result.stdout.splitlines() if 'ERROR' in line]
                raise EngineError(
                    f'Maven could not fetch {JOB_SERVERS[runner]} (the {runner} job server) '
                    f'into {JAR_DIR}: {" ".join(errors[:1]) or result.stdout[-2000:]}')
        paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Fetches the pinned Beam job-server jars.')
    parser.add_argument('command', choices=['fetch'])
    parser.add_argument('runners', nargs='*', help=f'some of {list(JOB_SERVERS)} (default: all)')
    args = parser.parse_args(argv)
    unknown = sorted(set(args.runners) - set(JOB_SERVERS))
    if unknown:
        parser.error(f'unknown runner(s) {unknown}: the job servers are {list(JOB_SERVERS)}')
    try:
        for path in fetch(args.runners or list(JOB_SERVERS)):
            print(path)
    except EngineError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
