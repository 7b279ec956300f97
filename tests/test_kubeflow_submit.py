"""Tests of kubeflow/submit.py against a fake Kubeflow Pipelines API on 127.0.0.1 (in a thread):
the requests it sends for a one-off run and for a daily recurring run."""

import contextlib
import http.server
import json
import threading

import pytest

from kubeflow import submit

# The shape kubeflow/runner.py writes (tests/test_kubeflow_compile.py checks the real one).
JOB = {
    'displayName': 'funnel-mmoe',
    'pipelineSpec': {'pipelineInfo': {'name': 'funnel-mmoe'}, 'schemaVersion': '2.1.0',
                     'root': {'inputDefinitions': {'parameters': {
                         'data_root': {'parameterType': 'STRING'}}}}},
    'runtimeConfig': {'gcsOutputDirectory': 'gs://bucket/funnel/pipelines/funnel-mmoe',
                      'parameterValues': {'data_root': 'gs://bucket/funnel/examples'}},
}


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
    path = tmp_path / 'funnel-mmoe.json'
    path.write_text(json.dumps(JOB))
    return path


def test_one_off_run(kfp_api, spec_file, capsys, monkeypatch):
    """POST /apis/v2beta1/runs with the spec inline and the compiled run parameters."""
    monkeypatch.delenv('KFP_BEARER_TOKEN', raising=False)
    endpoint, received = kfp_api
    assert submit.main(['--endpoint', endpoint, '--spec', str(spec_file)]) == 0
    [request] = received
    assert request['method'] == 'POST' and request['path'] == '/apis/v2beta1/runs'
    assert request['body'] == {
        'display_name': 'funnel-mmoe',
        'pipeline_spec': JOB['pipelineSpec'],
        'runtime_config': {'parameters': {'data_root': 'gs://bucket/funnel/examples'},
                           'pipeline_root': 'gs://bucket/funnel/pipelines/funnel-mmoe'},
    }
    assert request['authorization'] is None
    assert 'run-1' in capsys.readouterr().out


def test_daily_recurring_run_with_overrides(kfp_api, spec_file, capsys, monkeypatch):
    """POST /apis/v2beta1/recurringruns with a cron trigger; run parameters, pipeline root,
    experiment and bearer token as given."""
    monkeypatch.setenv('KFP_BEARER_TOKEN', 'test-token')
    endpoint, received = kfp_api
    assert submit.main(['--endpoint', endpoint + '/', '--spec', str(spec_file),
                        '--cron', '0 0 2 * * *', '--name', 'funnel-daily',
                        '--experiment-id', 'exp-7', '--parameter', 'data_root=gs://other/data',
                        '--pipeline-root', 'gs://other/root']) == 0
    [request] = received
    assert request['method'] == 'POST' and request['path'] == '/apis/v2beta1/recurringruns'
    body = request['body']
    assert body['trigger'] == {'cron_schedule': {'cron': '0 0 2 * * *'}}
    assert body['mode'] == 'ENABLE' and body['max_concurrency'] == 1 and body['no_catchup']
    assert body['pipeline_spec'] == JOB['pipelineSpec']
    assert body['runtime_config'] == {'parameters': {'data_root': 'gs://other/data'},
                                      'pipeline_root': 'gs://other/root'}
    assert body['display_name'] == 'funnel-daily' and body['experiment_id'] == 'exp-7'
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
        assert submit.main(['--endpoint', endpoint, '--spec', str(spec_file)]) == 1
    assert '400' in capsys.readouterr().err
