"""Tests of kubeflow/submit.py against a fake Kubeflow Pipelines API on 127.0.0.1 (in a thread):
the requests kfp-server-api sends for a one-off run and for a daily recurring run, read back
with the client's own request models."""

import contextlib
import http.server
import json
import threading
from types import SimpleNamespace

import kfp_server_api
import pytest
import yaml

from kubeflow import submit

# The shape of the KFP package kubeflow/runner.py writes (tests/test_kubeflow_compile.py checks
# the real one).
SPEC = {'pipelineInfo': {'name': 'funnel-mmoe'}, 'schemaVersion': '2.1.0',
        'defaultPipelineRoot': 'gs://bucket/funnel/pipelines/funnel-mmoe',
        'root': {'inputDefinitions': {'parameters': {'data_root': {
            'parameterType': 'STRING', 'defaultValue': 'gs://bucket/funnel/examples',
            'isOptional': True}}}}}


def _as_model(body: dict, model: str):
    """A request body decoded by kfp-server-api into its model (`V2beta1Run`, ...)."""
    return kfp_server_api.ApiClient().deserialize(SimpleNamespace(data=json.dumps(body)), model)


@contextlib.contextmanager
def _serve(handler):
    """Serves `handler` on 127.0.0.1 at a free port, in a thread; yields the endpoint URL."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def kfp_api():
    """A fake KFP API on a free port; yields (endpoint, received requests)."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            received.append({'method': self.command, 'path': self.path, 'body': body,
                             'authorization': self.headers.get('Authorization')})
            reply = {'recurring_run_id': 'rr-1'} if 'recurringruns' in self.path else {
                'run_id': 'run-1'}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    with _serve(Handler) as endpoint:
        yield endpoint, received


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / 'funnel-mmoe.yaml'
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_one_off_run(kfp_api, spec_file, capsys, monkeypatch):
    """POST /apis/v2beta1/runs with the spec inline and the compiled run parameters."""
    monkeypatch.delenv('KFP_BEARER_TOKEN', raising=False)
    endpoint, received = kfp_api
    assert submit.main(['--endpoint', endpoint, '--package', str(spec_file)]) == 0
    [request] = received
    assert request['method'] == 'POST' and request['path'] == '/apis/v2beta1/runs'
    assert _as_model(request['body'], 'V2beta1Run') == kfp_server_api.V2beta1Run(
        display_name='funnel-mmoe', pipeline_spec=SPEC,
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(
            parameters={'data_root': 'gs://bucket/funnel/examples'},
            pipeline_root='gs://bucket/funnel/pipelines/funnel-mmoe'))
    assert request['authorization'] is None
    assert 'run-1' in capsys.readouterr().out


def test_daily_recurring_run_with_overrides(kfp_api, spec_file, capsys, monkeypatch):
    """POST /apis/v2beta1/recurringruns with a cron trigger; run parameters, pipeline root,
    experiment and bearer token as given."""
    monkeypatch.setenv('KFP_BEARER_TOKEN', 'test-token')
    endpoint, received = kfp_api
    assert submit.main(['--endpoint', endpoint + '/', '--package', str(spec_file),
                        '--cron', '0 0 2 * * *', '--name', 'funnel-daily',
                        '--experiment-id', 'exp-7', '--parameter', 'data_root=gs://other/data',
                        '--pipeline-root', 'gs://other/root']) == 0
    [request] = received
    assert request['method'] == 'POST' and request['path'] == '/apis/v2beta1/recurringruns'
    run = _as_model(request['body'], 'V2beta1RecurringRun')
    assert run.trigger.cron_schedule.cron == '0 0 2 * * *'
    assert run.mode == 'ENABLE' and run.max_concurrency == '1' and run.no_catchup
    assert run.pipeline_spec == SPEC
    assert run.runtime_config == kfp_server_api.V2beta1RuntimeConfig(
        parameters={'data_root': 'gs://other/data'}, pipeline_root='gs://other/root')
    assert run.display_name == 'funnel-daily' and run.experiment_id == 'exp-7'
    assert request['authorization'] == 'Bearer test-token'
    assert 'recurring run rr-1' in capsys.readouterr().out


def test_refusal_is_reported(spec_file, capsys):
    """An error reply from the API ends the command with its message and exit code 1."""
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_error(400, 'invalid pipeline spec')

        def log_message(self, *args):
            pass

    with _serve(Refuse) as endpoint:
        assert submit.main(['--endpoint', endpoint, '--package', str(spec_file)]) == 1
    assert '400' in capsys.readouterr().err


def test_a_pipeline_job_is_not_a_package(tmp_path, capsys):
    """The Vertex PipelineJob (JSON) is refused with a message naming the file and the fix."""
    job = tmp_path / 'funnel-mmoe.pipeline-job.json'
    job.write_text(json.dumps({'displayName': 'funnel-mmoe', 'pipelineSpec': SPEC}))
    assert submit.main(['--endpoint', 'http://127.0.0.1:9', '--package', str(job)]) == 2
    assert 'is not a KFP package' in capsys.readouterr().err
