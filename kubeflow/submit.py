"""Submits the compiled pipeline to Kubeflow Pipelines: one run now, or a recurring (cron) run.

    python -m kubeflow.submit --endpoint http://kfp:8888 --spec kubeflow/build/funnel-mmoe.json
    python -m kubeflow.submit --endpoint ... --spec ... --cron '0 0 2 * * *'  # daily, 02:00 UTC

It talks to the KFP v2beta1 REST API with the standard library: the `kfp` 2.x SDK does not fit
the pinned stack (each kfp 2.x release pins an older kfp-pipeline-spec than the pinned 0.7.0 or
needs protobuf >= 6). The spec goes inline with the run, so no pipeline upload is needed. Run
parameters and the pipeline root default to those compiled into the spec; `--parameter
data_root=gs://...` and `--pipeline-root` override them for this run. If the endpoint needs a
bearer token, put it in KFP_BEARER_TOKEN.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Dict, Optional

TIMEOUT_SECONDS = 60


def run_body(job: dict, display_name: Optional[str] = None,
             parameters: Optional[Dict[str, str]] = None, pipeline_root: Optional[str] = None,
             experiment_id: Optional[str] = None, cron: Optional[str] = None) -> dict:
    """The v2beta1 Run (or, with `cron`, RecurringRun) for the compiled pipeline job `job`."""
    compiled = job.get('runtimeConfig', {})
    body = {
        'display_name': display_name or job['displayName'],
        'pipeline_spec': job['pipelineSpec'],
        'runtime_config': {
            'parameters': {**compiled.get('parameterValues', {}), **(parameters or {})},
            'pipeline_root': pipeline_root or compiled.get('gcsOutputDirectory', ''),
        },
    }
    if experiment_id:
        body['experiment_id'] = experiment_id
    if cron:
        body.update(trigger={'cron_schedule': {'cron': cron}}, mode='ENABLE',
                    max_concurrency=1, no_catchup=True)
    return body


def submit(endpoint: str, body: dict, token: Optional[str] = None) -> dict:
    """POSTs `body` to /apis/v2beta1/runs, or /recurringruns if it has a trigger; the reply."""
    path = '/apis/v2beta1/recurringruns' if 'trigger' in body else '/apis/v2beta1/runs'
    headers = {'Content-Type': 'application/json'}
    if token:
        headers['Authorization'] = f'Bearer {token}'
    request = urllib.request.Request(endpoint.rstrip('/') + path, method='POST', headers=headers,
                                     data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return json.load(response)


def _parameter(text: str):
    name, sep, value = text.partition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
    return name, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--endpoint', required=True,
                        help='Kubeflow Pipelines API, e.g. http://localhost:8888')
    parser.add_argument('--spec', required=True, help='file written by kubeflow.runner')
    parser.add_argument('--cron', help="recurring run schedule; KFP's cron has a seconds field "
                                       "first, e.g. '0 0 2 * * *' is daily at 02:00 UTC")
    parser.add_argument('--name', help='display name (default: the pipeline job name)')
    parser.add_argument('--experiment-id', help='KFP experiment (default: the default one)')
    parser.add_argument('--parameter', type=_parameter, action='append', default=[],
                        metavar='NAME=VALUE', help='run parameter, e.g. data_root=gs://b/data')
    parser.add_argument('--pipeline-root', help='pipeline root override for this run')
    args = parser.parse_args(argv)

    with open(args.spec) as f:
        job = json.load(f)
    body = run_body(job, args.name, dict(args.parameter), args.pipeline_root,
                    args.experiment_id, args.cron)
    try:
        reply = submit(args.endpoint, body, os.environ.get('KFP_BEARER_TOKEN'))
    except urllib.error.HTTPError as e:
        print(f'Kubeflow Pipelines refused the run ({e.code}): {e.read().decode()[:2000]}',
              file=sys.stderr)
        return 1
    except urllib.error.URLError as e:
        print(f'Cannot reach {args.endpoint}: {e.reason}', file=sys.stderr)
        return 1
    created = next((reply[key] for key in ('recurring_run_id', 'run_id', 'recurringRunId', 'runId')
                    if key in reply), '?')
    print(f"Created {'recurring run' if args.cron else 'run'} {created} at {args.endpoint}.")
    return 0


if __name__ == '__main__':
    sys.exit(main())
