"""Checks of kubeflow/Dockerfile, which cannot be built here (no docker engine): one Python 3.11
stack installing the pinned files the way the Makefile does, a non-root user, GPU through
TensorFlow's own CUDA wheels, nothing downloaded but pinned packages and pinned base images."""

import re
from importlib import metadata

from conftest import REPO
from packaging.requirements import Requirement

DOCKERFILE = (REPO / 'kubeflow' / 'Dockerfile').read_text()
INSTRUCTIONS = re.sub(r'\\\n\s*', ' ', re.sub(r'^\s*#.*\n', '', DOCKERFILE, flags=re.M))


def _pin(package: str) -> str:
    return re.search(rf'^{package}==(\S+)$', (REPO / 'requirements.txt').read_text(), re.M)[1]


def _lines(instruction: str):
    return re.findall(rf'^{instruction} (.*)$', INSTRUCTIONS, re.M)


def test_one_python_311_stack():
    """The official Python 3.11 image (a patch version pinned) and Beam's boot from the pinned
    Beam's SDK image; no second Python (the venv uses the image's, downloads are off)."""
    assert _lines('FROM') == [f'apache/beam_python3.11_sdk:{_pin("apache-beam")} AS beam',
                              'python:3.11.11-slim-bookworm']
    assert 'uv venv --seed --python /usr/local/bin/python3.11 ' in INSTRUCTIONS
    assert 'UV_PYTHON_DOWNLOADS=never' in INSTRUCTIONS


def test_installs_the_pinned_requirements_and_the_project():
    assert '--no-deps -r requirements.txt' in INSTRUCTIONS
    assert '--no-deps -e .' in INSTRUCTIONS and 'uv pip check' in INSTRUCTIONS


def test_nothing_downloaded_but_pinned_packages():
    """No curl, wget or remote ADD; every install names a pinned file, an exact version or
    the project itself."""
    assert not re.search(r'\b(curl|wget)\b|^ADD ', INSTRUCTIONS, re.M)
    for install in re.findall(r'pip install ([^&;]*)', INSTRUCTIONS):
        assert re.search(r'-r \S+\.txt|==\$\{\w+\}|-e \.', install), install


def test_runs_as_an_unprivileged_user():
    [user] = _lines('USER')
    assert re.search(rf'useradd --uid (\d+) --user-group --create-home {user}\b', INSTRUCTIONS)
    assert int(re.search(r'useradd --uid (\d+)', INSTRUCTIONS)[1]) > 0
    assert INSTRUCTIONS.index(f'USER {user}') < INSTRUCTIONS.index('uv venv')  # owns the venv


def test_gpu_wheels_are_tensorflows_own_cuda_pins():
    """requirements-gpu.txt is exactly the `and-cuda` extra of the pinned TensorFlow."""
    extra = {}
    for text in metadata.requires('tensorflow'):
        requirement = Requirement(text)
        if 'extra' in str(requirement.marker) and requirement.marker.evaluate(
                {'extra': 'and-cuda'}):
            extra[requirement.name] = str(requirement.specifier)
    pinned = dict(re.findall(r'^(\S+)(==\S+)$', (REPO / 'kubeflow' / 'requirements-gpu.txt')
                             .read_text(), re.M))
    assert extra and pinned == extra
    assert metadata.version('tensorflow') == _pin('tensorflow')
    assert '-r requirements-gpu.txt' in INSTRUCTIONS and 'ARG GPU=false' in INSTRUCTIONS


def test_versions_agree_with_the_pins():
    makefile_uv = re.search(r'^UV_VERSION := (\S+)$', (REPO / 'Makefile').read_text(), re.M)[1]
    assert f'ARG UV_VERSION={makefile_uv}\n' in DOCKERFILE


def test_sets_legacy_keras():
    assert re.search(r'^ENV .*\bTF_USE_LEGACY_KERAS=1\b', INSTRUCTIONS, re.M)


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO / '.dockerignore').read_text().split()
    assert {'.venv', '.uv', 'data', 'outputs', '.bench-venv', '.tool-venv'} <= set(ignored)
