"""The TF Serving manifests and models.config in kubeflow/serving/ agree with the pipeline's
configuration (model name, where the Pusher writes) and with each other (ports, probe)."""

import os
import posixpath
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline.config import load_config

SERVING = Path(__file__).resolve().parents[1] / 'kubeflow' / 'serving'
DEPLOYMENTS = ('deployment.yaml', 'deployment-gpu.yaml')
GRPC_PORT, REST_PORT = 8500, 8501


@pytest.fixture(scope='module')
def config():
    return load_config(env={})


@pytest.fixture(scope='module')
def model_config():
    """The one model of models.config, parsed as TF Serving parses it."""
    server_config = text_format.Parse((SERVING / 'models.config').read_text(),
                                      model_server_config_pb2.ModelServerConfig())
    [model] = server_config.model_config_list.config
    return model


def _load(name):
    return yaml.safe_load((SERVING / name).read_text())


def _container(deployment):
    [container] = deployment['spec']['template']['spec']['containers']
    return container


def _flags(container):
    return dict(arg.removeprefix('--').split('=', 1) for arg in container['args'])


def _port(container, name_or_number):
    ports = {port['name']: port['containerPort'] for port in container['ports']}
    return ports.get(name_or_number, name_or_number)


def test_models_config_serves_the_pipelines_model(model_config, config):
    assert model_config.name == config.pipeline_name
    assert model_config.model_platform == 'tensorflow'
    assert model_config.model_version_policy.latest.num_versions == 2


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_base_path_is_the_pushers_directory_as_mounted(manifest, model_config, config):
    """The `models` volume is the pipeline's output_root; with its subPath at mountPath, the
    Pusher's serving_model_dir (<output_root>/serving_model/<pipeline_name>) is base_path."""
    mount = {m['name']: m for m in _container(_load(manifest))['volumeMounts']}['models']
    pushed = os.path.relpath(config.serving_model_dir,
                             os.path.join(config.output_root, mount['subPath']))
    assert posixpath.join(mount['mountPath'], pushed) == model_config.base_path
    assert mount['readOnly'] is True


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_server_reads_models_config_and_listens_on_grpc_and_rest(manifest):
    deployment = _load(manifest)
    container = _container(deployment)
    flags = _flags(container)
    assert (flags['port'], flags['rest_api_port']) == (str(GRPC_PORT), str(REST_PORT))
    assert (_port(container, 'grpc'), _port(container, 'http')) == (GRPC_PORT, REST_PORT)
    mount = {m['name']: m for m in container['volumeMounts']}['config']
    assert flags['model_config_file'] == posixpath.join(mount['mountPath'], 'models.config')
    volumes = {v['name']: v for v in deployment['spec']['template']['spec']['volumes']}
    assert volumes['config']['configMap']['name'] == 'funnel-mmoe-serving-config'  # README


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_ready_when_the_model_status_endpoint_answers(manifest, config):
    container = _container(_load(manifest))
    probe = container['readinessProbe']['httpGet']
    assert probe['path'] == f'/v1/models/{config.pipeline_name}'
    assert _port(container, probe['port']) == REST_PORT


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_resources_are_requested_and_limited(manifest):
    resources = _container(_load(manifest))['resources']
    for kind in ('requests', 'limits'):
        assert {'cpu', 'memory'} <= set(resources[kind])


def test_gpu_variant_differs_only_in_image_gpu_and_scheduling():
    cpu, gpu = (_load(name) for name in DEPLOYMENTS)
    cpu_container, gpu_container = _container(cpu), _container(gpu)
    assert cpu_container['image'] == 'tensorflow/serving:2.16.1'
    assert gpu_container['image'] == 'tensorflow/serving:2.16.1-gpu'
    assert int(gpu_container['resources']['limits']['nvidia.com/gpu']) >= 1
    assert 'nvidia.com/gpu' not in cpu_container['resources']['limits']
    assert gpu['spec']['template']['spec']['tolerations'][0]['key'] == 'nvidia.com/gpu'
    for container in (cpu_container, gpu_container):
        del container['image'], container['resources']
    assert cpu_container == gpu_container
    assert (cpu['spec']['template']['spec']['volumes']
            == gpu['spec']['template']['spec']['volumes'])


def test_service_routes_grpc_and_rest_to_either_deployment():
    service = _load('service.yaml')
    ports = {port['name']: (port['port'], port['targetPort']) for port in service['spec']['ports']}
    assert ports == {'grpc': (GRPC_PORT, 'grpc'), 'http': (REST_PORT, 'http')}
    for name in DEPLOYMENTS:
        deployment = _load(name)
        labels = deployment['spec']['template']['metadata']['labels']
        assert service['spec']['selector'].items() <= labels.items()
        assert deployment['spec']['selector']['matchLabels'].items() <= labels.items()
        assert {port['name'] for port in _container(deployment)['ports']} == set(ports)
