"""Checks of kubeflow/Dockerfile, which cannot be built here (no docker engine): it installs the
pinned files the way the Makefile does, and its versions agree with those pins."""

import re

from conftest import REPO

DOCKERFILE = (REPO / 'kubeflow' / 'Dockerfile').read_text()


def _pin(package: str) -> str:
    return re.search(rf'^{package}==(\S+)$', (REPO / 'requirements.txt').read_text(), re.M)[1]


def test_builds_on_the_official_tfx_image():
    assert re.search(rf'^FROM gcr\.io/tfx-oss-public/tfx:{_pin("tfx")}$', DOCKERFILE, re.M)


def test_installs_the_pinned_requirements_and_the_project():
    assert 'COPY requirements.txt .' in DOCKERFILE
    assert '--no-deps -r requirements.txt' in DOCKERFILE
    assert '--no-deps -e .' in DOCKERFILE
    assert 'uv pip check' in DOCKERFILE


def test_versions_agree_with_the_pins():
    """The same uv as the Makefile, Python 3.11 like requirements.txt, the pinned Beam's boot."""
    makefile_uv = re.search(r'^UV_VERSION := (\S+)$', (REPO / 'Makefile').read_text(), re.M)[1]
    assert f'ARG UV_VERSION={makefile_uv}\n' in DOCKERFILE
    assert '--python 3.11 ' in DOCKERFILE
    assert f'FROM apache/beam_python3.11_sdk:{_pin("apache-beam")} AS beam' in DOCKERFILE


def test_sets_legacy_keras():
    assert re.search(r'^ENV .*\bTF_USE_LEGACY_KERAS=1\b', DOCKERFILE, re.M)


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO / '.dockerignore').read_text().split()
    assert {'.venv', '.uv', 'data', 'outputs'} <= set(ignored)
