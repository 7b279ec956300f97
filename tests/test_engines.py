"""The `beam` section -> Beam's pipeline arguments (pipeline/engines.py), checked against Beam's
own option parsing and job-server selection, the errors of a missing JDK or jar, and the wait
for Beam's LOOPBACK workers on Beam's embedded job server."""

import os
import sys
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
)
from apache_beam.runners.portability import flink_runner, spark_runner

from pipeline import engines
from pipeline.config import REPO_ROOT, BeamConfig, ConfigError, load_config


def _options(beam: BeamConfig, extra=()) -> PipelineOptions:
    return PipelineOptions(engines.pipeline_args(beam, extra))


def test_a_default_run_passes_no_beam_arguments():
    """No Beam argument: the in-process DirectRunner, and no sdist of TFX built by each Beam
    component for remote workers (TFX builds one whenever there are Beam arguments)."""
    from pipeline.graph import create_pipeline

    config = load_config(env={})
    assert config.beam.runner == 'direct'
    assert create_pipeline(config).beam_pipeline_args == []
    config = load_config(env={'FUNNEL_BEAM_PIPELINE_ARGS': '--direct_num_workers=2'})
    assert create_pipeline(config).beam_pipeline_args == ['--direct_num_workers=2']


def test_flink_arguments_reach_beams_flink_runner_with_the_pinned_jar(tmp_path):
    options = _options(BeamConfig(runner='flink', parallelism=2))
    assert options.view_as(StandardOptions).runner == 'FlinkRunner'
    flink = options.view_as(FlinkRunnerOptions)
    assert (flink.flink_master, flink.flink_version, flink.parallelism) == ('[local]', '1.19', 2)
    assert flink.flink_job_server_jar == os.path.join(
        REPO_ROOT, '.cache', 'jars', 'beam-runners-flink-1.19-job-server-2.61.0.jar')
    assert options.view_as(PortableOptions).environment_type == 'LOOPBACK'
    # Beam's own choice of job server: the jar given, not a download from Maven Central.
    jar = tmp_path / 'flink-job-server.jar'
    jar.touch()
    options = _options(BeamConfig(runner='flink', job_server_jar=str(jar)))
    server = flink_runner.FlinkRunner().default_job_server(options)
    assert server._job_server.path_to_jar() == str(jar)  # pylint: disable=protected-access


def test_spark_arguments_reach_beams_spark_runner(tmp_path):
    options = _options(BeamConfig(runner='spark', parallelism=3))
    assert options.view_as(StandardOptions).runner == 'SparkRunner'
    assert options.view_as(SparkRunnerOptions).spark_master_url == 'local[3]'
    assert options.view_as(SparkRunnerOptions).spark_job_server_jar == engines.jar_path('spark')
    jar = tmp_path / 'spark-job-server.jar'
    jar.touch()
    spark = _options(BeamConfig(runner='spark', spark_master_url='spark://host:7077',
                                job_server_jar=str(jar)))
    assert spark.view_as(SparkRunnerOptions).spark_master_url == 'spark://host:7077'
    server = spark_runner.SparkRunner().default_job_server(spark)
    assert server._job_server.path_to_jar() == str(jar)  # pylint: disable=protected-access


def test_a_running_job_server_and_a_worker_pool():
    beam = BeamConfig(runner='flink', job_endpoint='flink-js:8099', environment_type='EXTERNAL',
                      environment_config='localhost:50000')
    options = _options(beam, ['--parallelism=8'])
    assert options.view_as(StandardOptions).runner == 'PortableRunner'
    portable = options.view_as(PortableOptions)
    assert (portable.job_endpoint, portable.environment_type, portable.environment_config) == (
        'flink-js:8099', 'EXTERNAL', 'localhost:50000')
    assert options.view_as(FlinkRunnerOptions).parallelism == 8  # a later argument wins
    engines.check_runner(beam)  # no local job server: nothing to check


_TORN_DOWN = []  # the LOOPBACK worker runs in this process: its DoFn appends here


class _SlowTeardown(beam.DoFn):
    def process(self, element):
        yield element

    def teardown(self):
        time.sleep(2)
        _TORN_DOWN.append(True)


def test_a_loopback_run_ends_after_its_sdk_workers():
    # Beam's embedded job server: the Runner API and LOOPBACK worker of a Flink or Spark job.
    options = PipelineOptions(['--runner=PortableRunner', '--job_endpoint=embed',
                               '--environment_type=LOOPBACK'])
    with beam.Pipeline(options=options) as pipeline:
        _ = pipeline | beam.Create([1, 2, 3]) | beam.ParDo(_SlowTeardown())
    engines.wait_for_loopback_workers()
    # The worker thread tore its DoFn down and ended: Python can exit without aborting.
    assert _TORN_DOWN
    assert not [thread.name for thread in threading.enumerate()
                if thread.name.startswith(engines.LOOPBACK_WORKER_THREAD_PREFIX)]


def test_runner_settings_from_the_environment():
    config = load_config(env={'FUNNEL_BEAM_RUNNER': 'spark', 'FUNNEL_BEAM_PARALLELISM': '4'})
    assert (config.beam.runner, config.beam.parallelism) == ('spark', 4)
    with pytest.raises(ConfigError, match=r"beam.runner.*'dask'.*must be one of"):
        load_config(env={'FUNNEL_BEAM_RUNNER': 'dask'})
    with pytest.raises(ConfigError, match='beam.environment_config.*EXTERNAL'):
        load_config(env={'FUNNEL_BEAM_ENVIRONMENT_TYPE': 'EXTERNAL'})


def test_pipeline_and_kubeflow_beam_steps_get_the_runner_arguments():
    from kubeflow.runner import kubeflow_beam_args
    from pipeline.graph import create_pipeline

    config = load_config(env={'FUNNEL_BEAM_RUNNER': 'flink',
                              'FUNNEL_BEAM_PIPELINE_ARGS': '--max_parallelism=8'})
    args = create_pipeline(config).beam_pipeline_args
    assert args[0] == '--runner=FlinkRunner' and args[-1] == '--max_parallelism=8'
    with pytest.raises(ConfigError, match='FUNNEL_BEAM_JOB_ENDPOINT'):
        kubeflow_beam_args(config)
    cluster = load_config(env={'FUNNEL_BEAM_RUNNER': 'flink',
                               'FUNNEL_BEAM_JOB_ENDPOINT': 'flink-js:8099',
                               'FUNNEL_BEAM_ENVIRONMENT_TYPE': 'EXTERNAL',
                               'FUNNEL_BEAM_ENVIRONMENT_CONFIG': 'localhost:50000'})
    assert kubeflow_beam_args(cluster)[:2] == ['--runner=PortableRunner',
                                               '--job_endpoint=flink-js:8099']
    assert kubeflow_beam_args(load_config(env={})) == list(
        load_config(env={}).kubeflow.beam_pipeline_args)


def test_missing_jar_or_jdk_stops_the_run_saying_what_to_install(tmp_path, monkeypatch):
    """local_pipeline.run with runner flink and no jar / no java: the error, before any Beam
    step runs (local_runner.main prints it and exits 2)."""
    from pipeline import local_pipeline

    config = load_config(env={'FUNNEL_BEAM_RUNNER': 'flink', 'FUNNEL_OUTPUT_ROOT': str(tmp_path),
                              'FUNNEL_BEAM_JOB_SERVER_JAR': str(tmp_path / 'no.jar')})
    with pytest.raises(engines.EngineError,
                       match=f'The flink job server jar {tmp_path / "no.jar"} is missing'):
        local_pipeline.run(config)
    monkeypatch.setenv('PATH', os.path.dirname(sys.executable))
    with pytest.raises(engines.EngineError,
                       match='no `java` is on PATH: install a JDK 17 and Maven'):
        local_pipeline.run(config)
    assert not os.listdir(tmp_path)  # nothing ran


def test_default_jar_missing_names_make_jars(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, 'JAR_DIR', str(tmp_path))
    with pytest.raises(engines.EngineError, match=r'run `make jars` \(it fetches '
                       r'org.apache.beam:beam-runners-spark-3-job-server:2.61.0'):
        engines.check_runner(BeamConfig(runner='spark'))


def test_make_jars_keeps_a_fetched_jar_and_needs_maven(tmp_path, monkeypatch, capsys):
    """`python -m pipeline.engines fetch`: a jar already there is not fetched again; without
    Maven, or for an unknown runner, it stops saying why."""
    monkeypatch.setattr(engines, 'JAR_DIR', str(tmp_path))
    open(engines.jar_path('flink'), 'w').close()
    monkeypatch.setenv('PATH', str(tmp_path))  # no mvn, no java: only the cached jar can answer
    assert engines.main(['fetch', 'flink']) == 0
    assert capsys.readouterr().out.split() == [engines.jar_path('flink')]
    assert engines.main(['fetch', 'spark']) == 2
    assert 'fetches the job servers with Maven: install a JDK 17 and Maven' in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        engines.main(['fetch', 'dask'])
    assert "unknown runner(s) ['dask']" in capsys.readouterr().err
