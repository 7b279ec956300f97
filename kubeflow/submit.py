"""Submits the KFP package to Kubeflow Pipelines: one run now, or a recurring (cron) run.

    python -m kubeflow.submit --endpoint http://kfp:8888 --package kubeflow/build/funnel-mmoe.yaml
    python -m kubeflow.submit --endpoint ... --package ... --cron '0 0 2 * * *'  # daily, 02:00 UTC

It talks to the KFP v2beta1 REST API through `kfp-server-api`, the API's generated client (it
needs no protobuf, so it installs beside the pinned TFX stack, which the `kfp` SDK does not).
The pipeline spec goes inline with the run, so no upload is needed. Run parameters and the
pipeline root default to those compiled into the package; `--parameter data_root=gs://...` and
`--pipeline-root` override them for this run. If the endpoint needs a bearer token, put it in
KFP_BEARER_TOKEN.
"""

import argparse
import os
import sys
from typing import Dict, Optional, Union

import kfp_server_api
import urllib3
import yaml

TIMEOUT_SECONDS = 60
Request = Union[kfp_server_api.V2beta1Run, kfp_server_api.V2beta1RecurringRun]


def read_package(path: str) -> dict:
    """The pipeline spec of a KFP package (the YAML kubeflow/runner.py writes)."""
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, dict) or 'pipelineInfo' not in spec:
        raise ValueError(f'{path} is not a KFP package (a pipeline spec with pipelineInfo); '
                         'compile one with python -m kubeflow.runner --output <file>.yaml')
    return spec


def run_request(spec: dict, display_name: Optional[str] = None,
                parameters: Optional[Dict[str, str]] = None, pipeline_root: Optional[str] = None,
                experiment_id: Optional[str] = None, cron: Optional[str] = None) -> Request:
    """The v2beta1 Run (or, with `cron`, RecurringRun) of the pipeline spec `spec`."""
    defaults = {name: parameter['defaultValue'] for name, parameter in
                spec['root'].get('inputDefinitions', {}).get('parameters', {}).items()
                if 'defaultValue' in parameter}
    fields = dict(
        display_name=display_name or spec['pipelineInfo']['name'], pipeline_spec=spec,
        experiment_id=experiment_id,
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(
            parameters={**defaults, **(parameters or {})},
            pipeline_root=pipeline_root or spec.get('defaultPipelineRoot')))
    if not cron:
        return kfp_server_api.V2beta1Run(**fields)
    return kfp_server_api.V2beta1RecurringRun(
        **fields, mode=kfp_server_api.RecurringRunMode.ENABLE, max_concurrency='1',
        no_catchup=True, trigger=kfp_server_api.V2beta1Trigger(
            cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)))


def submit(endpoint: str, request: Request, token: Optional[str] = None) -> str:
    """Creates the run or recurring run at `endpoint`; returns its id."""
    client = kfp_server_api.ApiClient(
        kfp_server_api.Configuration(host=endpoint.rstrip('/')),
        *(('Authorization', f'Bearer {token}') if token else ()))
    with client:
        if isinstance(request, kfp_server_api.V2beta1RecurringRun):
            api = kfp_server_api.RecurringRunServiceApi(client)
            return api.recurring_run_service_create_recurring_run(
                request, _request_timeout=TIMEOUT_SECONDS).recurring_run_id
        return kfp_server_api.RunServiceApi(client).run_service_create_run(
            request, _request_timeout=TIMEOUT_SECONDS).run_id


def _parameter(text: str):
    name, sep, value = text.partition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
    return name, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--endpoint', required=True,
                        help='Kubeflow Pipelines API, e.g. http://localhost:8888')
    parser.add_argument('--package', required=True, help='KFP package written by kubeflow.runner')
    parser.add_argument('--cron', help="recurring run schedule; KFP's cron has a seconds field "
                                       "first, e.g. '0 0 2 * * *' is daily at 02:00 UTC")
    parser.add_argument('--name', help='display name (default: the pipeline name)')
    parser.add_argument('--experiment-id', help='KFP experiment (default: the default one)')
    parser.add_argument('--parameter', type=_parameter, action='append', default=[],
                        metavar='NAME=VALUE', help='run parameter, e.g. data_root=gs://b/data')
    parser.add_argument('--pipeline-root', help='pipeline root override for this run')
    args = parser.parse_args(argv)

    try:
        request = run_request(read_package(args.package), args.name, dict(args.parameter),
                              args.pipeline_root, args.experiment_id, args.cron)
        created = submit(args.endpoint, request, os.environ.get('KFP_BEARER_TOKEN'))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    except kfp_server_api.ApiException as e:
        print(f'Kubeflow Pipelines refused the run ({e.status}): {str(e.body)[:2000]}',
              file=sys.stderr)
        return 1
    except urllib3.exceptions.HTTPError as e:
        print(f'Cannot reach {args.endpoint}: {e}', file=sys.stderr)
        return 1
    print(f"Created {'recurring run' if args.cron else 'run'} {created} at {args.endpoint}.")
    return 0


if __name__ == '__main__':
    sys.exit(main())
