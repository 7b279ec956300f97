"""The TF Serving manifests and models.config in kubeflow/serving/ agree with the pipeline's
configuration (model name, where the Pusher writes on Kubeflow) and with each other (ports,
probes), pass the Kubernetes schema of several versions (kubernetes-validate, offline) and the
"restricted" Pod Security Standard."""

import dataclasses
import posixpath
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline.config import load_config

SERVING = Path(__file__).resolve().parents[1] / 'kubeflow' / 'serving'
DEPLOYMENTS = ('deployment.yaml', 'deployment-gpu.yaml')
MANIFESTS = DEPLOYMENTS + ('service.yaml', 'serviceaccount.yaml')
# The oldest and newest Kubernetes versions whose schemas kubernetes-validate ships, and one
# between.
KUBERNETES_VERSIONS = ('1.25.0', '1.31.0', '1.37.0')
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


def test_base_path_is_where_the_pusher_writes_on_kubeflow(model_config, config):
    """No volume to fill: TF Serving reads the folder the Kubeflow Pusher writes in the object
    store (<FUNNEL_KUBEFLOW_OUTPUT_ROOT>/serving_model/<pipeline_name>)."""
    kubeflow = dataclasses.replace(config, output_root=config.kubeflow.output_root)
    assert model_config.base_path == kubeflow.serving_model_dir
    assert model_config.base_path.startswith('gs://')


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_reads_the_bucket_as_the_workload_identity_service_account(manifest):
    pod = _load(manifest)['spec']['template']['spec']
    account = _load('serviceaccount.yaml')
    assert pod['serviceAccountName'] == account['metadata']['name']
    assert account['metadata']['annotations']['iam.gke.io/gcp-service-account'].endswith(
        '.iam.gserviceaccount.com')
    assert {v['name'] for v in pod['volumes']} == {'config', 'tmp'}  # no model volume


@pytest.mark.parametrize('manifest', MANIFESTS)
@pytest.mark.parametrize('version', KUBERNETES_VERSIONS)
def test_manifest_passes_the_kubernetes_schema(manifest, version):
    """Strict: an unknown or misplaced field is an error, as `kubectl apply --validate=strict`
    would make it."""
    kubernetes_validate.validate(_load(manifest), version, strict=True)


def test_the_schema_check_can_fail():
    deployment = _load('deployment.yaml')
    _container(deployment)['livenesProbe'] = _container(deployment).pop('livenessProbe')
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize('manifest', DEPLOYMENTS)
def test_pod_meets_the_restricted_pod_security_standard(manifest):
    """Non-root, no privilege escalation, every capability dropped, the runtime's seccomp
    profile (the "restricted" profile's rules), and a read-only root filesystem."""
    pod = _load(manifest)['spec']['template']['spec']
    assert pod['securityContext']['runAsNonRoot'] is True
    assert pod['securityContext']['runAsUser'] > 0
    assert pod['securityContext']['seccompProfile'] == {'type': 'RuntimeDefault'}
    container = _container(_load(manifest))['securityContext']
    assert container == {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True,
                         'capabilities': {'drop': ['ALL']}}


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
def test_started_ready_and_alive_probes(manifest, config):
    """Started and ready when the model status endpoint answers (after the first load and
    warmup, up to 5 minutes); alive while the gRPC port accepts connections."""
    container = _container(_load(manifest))
    for probe in ('startupProbe', 'readinessProbe'):
        check = container[probe]['httpGet']
        assert check['path'] == f'/v1/models/{config.pipeline_name}'
        assert _port(container, check['port']) == REST_PORT
    startup = container['startupProbe']
    assert startup['periodSeconds'] * startup['failureThreshold'] >= 300
    assert _port(container, container['livenessProbe']['tcpSocket']['port']) == GRPC_PORT


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
    cpu_pod, gpu_pod = (d['spec']['template']['spec'] for d in (cpu, gpu))
    assert gpu_pod.pop('tolerations')[0]['key'] == 'nvidia.com/gpu'
    for container in (cpu_container, gpu_container):
        del container['image'], container['resources']
    assert cpu_pod == gpu_pod


def test_cpu_and_gpu_variants_cannot_serve_side_by_side():
    """One Deployment in two variants (same name, namespace and selector): applying one
    replaces the other's pods, so the Service never routes to both."""
    cpu, gpu = (_load(name) for name in DEPLOYMENTS)
    assert cpu['metadata'] == gpu['metadata']
    assert cpu['spec']['selector'] == gpu['spec']['selector']
    assert cpu['spec']['template']['metadata']['labels']['variant'] == 'cpu'
    assert gpu['spec']['template']['metadata']['labels']['variant'] == 'gpu'


def test_service_routes_grpc_and_rest_to_the_deployment():
    service = _load('service.yaml')
    ports = {port['name']: (port['port'], port['targetPort']) for port in service['spec']['ports']}
    assert ports == {'grpc': (GRPC_PORT, 'grpc'), 'http': (REST_PORT, 'http')}
    for name in DEPLOYMENTS:
        deployment = _load(name)
        labels = deployment['spec']['template']['metadata']['labels']
        assert service['spec']['selector'].items() <= labels.items()
        assert deployment['spec']['selector']['matchLabels'].items() <= labels.items()
        assert {port['name'] for port in _container(deployment)['ports']} == set(ports)
