"""imagePullSecrets: keyring matching (pure) and the kubelet passing credentials to the pull."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from microkube.kubelet import pullsecrets
from microkube.kubelet import runtime as rt
from microkube.kubelet.fake import FakeRuntime
from microkube.resources.registry import Registry
from tests.kubelet.test_kubelet_sync import NET, Clock, c, create, make_kubelet, pod_body, reasons

pytestmark = pytest.mark.anyio


def dockerconfigjson(auths: dict[str, dict[str, str]], name: str = "s") -> dict[str, Any]:
    raw = json.dumps({"auths": auths}).encode()
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(raw).decode()},
    }


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_matching_by_host_path_and_docker_hub_aliases() -> None:
    secret = dockerconfigjson(
        {
            "localhost:5000": {"username": "any", "password": "1"},
            "localhost:5000/team": {"auth": b64("team:2")},
            "https://index.docker.io/v1/": {"username": "hub", "password": "3"},
            "*.example.com": {"username": "glob", "password": "4"},
            "other:5000": {"username": "no", "password": "5"},
        }
    )
    users = [a.username for a in pullsecrets.matching("localhost:5000/team/app:1", [secret])]
    assert users == ["team", "any"]  # the most specific path first
    assert [a.username for a in pullsecrets.matching("localhost:5000/teamx/app", [secret])] == [
        "any"
    ]
    assert [a.username for a in pullsecrets.matching("nginx", [secret])] == ["hub"]
    assert [a.username for a in pullsecrets.matching("docker.io/me/app", [secret])] == ["hub"]
    assert [
        a.username for a in pullsecrets.matching("r.example.com/x@sha256:" + "a" * 64, [secret])
    ] == ["glob"]
    assert pullsecrets.matching("quay.io/x/y", [secret]) == []
    assert pullsecrets.matching("localhost:5000/team/app:1", [secret])[0] == rt.RegistryAuth(
        "team", "2"
    )


def test_dockercfg_and_garbage() -> None:
    legacy = {
        "type": "kubernetes.io/dockercfg",
        "data": {".dockercfg": b64(json.dumps({"r:1": {"username": "u", "password": "p"}}))},
    }
    assert pullsecrets.matching("r:1/a", [legacy]) == [rt.RegistryAuth("u", "p")]
    broken = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "!!"}}
    opaque = {"type": "Opaque", "data": {".dockerconfigjson": b64("{}")}}
    assert pullsecrets.matching("r:1/a", [broken, opaque]) == []


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_kubelet_pulls_with_the_pod_secret(
    registry: Registry, clock: Clock, tmp_path: Path
) -> None:
    private = "localhost:5000/private/app:1"
    runtime = FakeRuntime("mkt", clock=clock, private={private: rt.RegistryAuth("alice", "pw")})
    await runtime.ensure_network(NET, "10.214.7.0/24", "10.214.7.1")
    sa = registry.catalog.get("", "v1", "serviceaccounts")
    await registry.create(sa, "default", {"metadata": {"name": "default"}})
    secrets = registry.catalog.get("", "v1", "secrets")
    await registry.create(
        secrets,
        "default",
        dockerconfigjson(
            {
                "localhost:5000/private": {"username": "bob", "password": "wrong"},
                "localhost:5000": {"username": "alice", "password": "pw"},
            },
            "regcred",
        ),
    )
    pods = registry.catalog.get("", "v1", "pods")
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await create(registry, pod_body("anon", [c(image=private)]))
    await create(
        registry,
        pod_body(
            "authed",
            [c(image=private)],
            imagePullSecrets=[{"name": "missing"}, {"name": "regcred"}],
        ),
    )
    for name in ("anon", "authed"):
        p = registry.get(pods, "default", name)
        k.pods[p["metadata"]["uid"]] = p
        await k.sync_pod(p["metadata"]["uid"])
    anon = registry.get(pods, "default", "anon")["status"]["containerStatuses"][0]
    assert anon["state"]["waiting"]["reason"] == "ErrImagePull"
    assert "authentication required" in anon["state"]["waiting"]["message"]
    authed = registry.get(pods, "default", "authed")["status"]["containerStatuses"][0]
    assert "running" in authed["state"]
    # the more specific entry was tried first, then the one that works
    assert [a.username if a else None for _, a in runtime.pull_auths] == [None, "bob", "alice"]
    assert "FailedToRetrieveImagePullSecret" in reasons(registry, "authed")
