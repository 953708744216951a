"""Fixtures: one real microkube server per module, and kubectl of several versions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Kubectl, Server, kubectl_binary

# The oldest and newest kubectl on the machine, plus the one /version selects.
KUBECTL_VERSIONS = ["1.27", "1.32", "1.33"]


def serve(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Iterator[Server]:
    """A module's server: ``fake`` runs simulated pods, ``none`` runs no node at all."""
    base = tmp_path_factory.mktemp("mk")
    srv = Server(base / "state", extra_args=["--no-registry", "--runtime", runtime]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, "fake")


@pytest.fixture(scope="module")
def kubeconfig(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return server.kubeconfig(tmp_path_factory.mktemp("kc"))


def make_kubectl(version: str, kubeconfig: Path, home: Path) -> Kubectl:
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} is not installed")
    home.mkdir(parents=True, exist_ok=True)
    return Kubectl(binary, kubeconfig, home)


@pytest.fixture(params=KUBECTL_VERSIONS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return make_kubectl(request.param, kubeconfig, tmp_path / "home")


@pytest.fixture
def kubectl132(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return make_kubectl("1.32", kubeconfig, tmp_path / "home")
