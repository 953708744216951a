"""metrics.k8s.io/v1beta1 over HTTP: discovery, NodeMetrics/PodMetrics from a provider, read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from microkube.api import app as api_app
from microkube.api import requestinfo
from microkube.api.context import ApiContext
from microkube.auth import aggregation, bootstrap_rbac, rbac
from microkube.resources import metrics
from microkube.resources.registry import Registry
from tests.support.registry import open_registry

pytestmark = pytest.mark.anyio
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass
class U:
    cpu_nanocores: int
    memory_bytes: int
    name: str = ""
    timestamp: datetime = AT
    window: float = 10.04


class Provider:
    def __init__(self) -> None:
        self.nodes: dict[str, U] = {}
        self.pods: dict[str, list[U]] = {}

    def node_usage(self, name: str) -> U | None:
        return self.nodes.get(name)

    def pod_usage(self, uid: str) -> list[U] | None:
        return self.pods.get(uid)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, ("default", "dev")) as reg:
        yield reg


async def add_pod(
    reg: Registry, name: str, *, ns: str = "default", phase: str = "Running", **labels: str
) -> dict[str, Any]:
    pods = reg.catalog.get("", "v1", "pods")
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "x"}, {"name": "side", "image": "x"}]},
    }
    await reg.create(pods, ns, body)

    def st(o: dict[str, Any]) -> dict[str, Any]:
        o["status"] = {"phase": phase}
        return o

    out = await reg.guaranteed_update(pods, ns, name, st, subresource="status")
    assert out is not None
    return out


@pytest.fixture
async def env(registry: Registry) -> AsyncIterator[tuple[httpx.AsyncClient, Provider]]:
    nodes = registry.catalog.get("", "v1", "nodes")
    await registry.create(nodes, "", {"metadata": {"name": "n1", "labels": {"role": "a"}}})
    await registry.create(nodes, "", {"metadata": {"name": "n2"}})
    provider = Provider()
    provider.nodes["n1"] = U(250_000_000, 512 * 2**20)
    metrics.install(registry, provider)
    app = api_app.create_app(ApiContext(registry, registry.catalog))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, provider


BASE = "/apis/metrics.k8s.io/v1beta1"


async def test_discovery_lists_read_only_kinds(env: Any) -> None:
    client, _ = env
    doc = (await client.get(BASE)).json()
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["nodes"]["kind"] == "NodeMetrics" and not by_name["nodes"]["namespaced"]
    assert by_name["pods"]["kind"] == "PodMetrics" and by_name["pods"]["namespaced"]
    assert by_name["pods"]["verbs"] == ["get", "list"]
    groups = (await client.get("/apis")).json()["groups"]
    assert {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"} in [
        v for g in groups for v in g["versions"]
    ]


async def test_node_metrics(env: Any) -> None:
    client, _ = env
    items = (await client.get(f"{BASE}/nodes")).json()["items"]
    assert len(items) == 1  # n2 has no usage yet: left out, as metrics-server does
    (n1,) = items
    assert n1["kind"] == "NodeMetrics" and n1["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert n1["metadata"]["name"] == "n1" and n1["metadata"]["labels"] == {"role": "a"}
    assert n1["timestamp"] == "2026-01-02T03:04:05Z" and n1["window"] == "10.04s"
    assert n1["usage"] == {"cpu": "250m", "memory": "512Mi"}
    assert (await client.get(f"{BASE}/nodes?labelSelector=role%3Db")).json()["items"] == []
    assert (await client.get(f"{BASE}/nodes/n1")).json()["usage"]["cpu"] == "250m"
    missing = await client.get(f"{BASE}/nodes/n2")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'nodemetrics.metrics.k8s.io "n2" not found'
    assert (await client.get(f"{BASE}/nodes/nope")).status_code == 404


async def test_pod_metrics_selectors_and_containers(env: Any, registry: Registry) -> None:
    client, provider = env
    a = await add_pod(registry, "a", app="web")
    b = await add_pod(registry, "b", app="db")
    c = await add_pod(registry, "c", ns="dev", app="web")
    pending = await add_pod(registry, "d", phase="Pending", app="web")
    for pod in (a, b, c, pending):
        provider.pods[pod["metadata"]["uid"]] = [
            U(1_234_567, 3 * 2**20 + 4096, name="side", timestamp=AT.replace(second=9)),
            U(12_345_678, 20 * 2**20, name="app"),
        ]
    body = (await client.get(f"{BASE}/namespaces/default/pods?labelSelector=app%3Dweb")).json()
    assert body["kind"] == "PodMetricsList"
    (pa,) = body["items"]  # d is Pending: no metrics (upstream skips non-Running pods)
    assert pa["metadata"]["name"] == "a" and pa["metadata"]["namespace"] == "default"
    assert pa["containers"] == [
        {"name": "app", "usage": {"cpu": "12345678n", "memory": "20Mi"}},
        {"name": "side", "usage": {"cpu": "1234567n", "memory": "3076Ki"}},
    ]
    assert pa["timestamp"] == "2026-01-02T03:04:05Z"  # the oldest container sample
    every = (await client.get(f"{BASE}/pods")).json()["items"]
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in every) == [
        ("default", "a"),
        ("default", "b"),
        ("dev", "c"),
    ]
    by_field = await client.get(f"{BASE}/pods?fieldSelector=metadata.namespace%3Ddev")
    assert [p["metadata"]["name"] for p in by_field.json()["items"]] == ["c"]
    missing = await client.get(f"{BASE}/namespaces/default/pods/d")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'podmetrics.metrics.k8s.io "default/d" not found'
    table = await client.get(f"{BASE}/namespaces/default/pods", headers={"accept": TABLE})
    t = table.json()
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "cpu", "memory", "Window"]
    assert t["rows"][0]["cells"] == ["a", "13580245n", "23556Ki", "10.04s"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/namespaces/default/pods"),
        ("DELETE", "/namespaces/default/pods/a"),
        ("PUT", "/nodes/n1"),
        ("PATCH", "/nodes/n1"),
        ("DELETE", "/nodes"),
        ("GET", "/pods?watch=true"),
    ],
)
async def test_read_only(env: Any, method: str, path: str) -> None:
    client, _ = env
    resp = await client.request(
        method, BASE + path, content=b"{}", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 405
    assert resp.json()["reason"] == "MethodNotAllowed"


async def test_view_role_may_read_metrics(registry: Registry) -> None:
    await bootstrap_rbac.ensure(registry)
    await aggregation.sync_all(registry)
    await registry.create(
        registry.catalog.get("rbac.authorization.k8s.io", "v1", "rolebindings"),
        "dev",
        {
            "metadata": {"name": "bob-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "User", "name": "bob"}],
        },
    )
    authz = rbac.RBACAuthorizer(registry)
    bob = {"username": "bob", "groups": ["system:authenticated"]}
    authz.authorize(bob, requestinfo.parse("GET", f"{BASE}/namespaces/dev/pods", {}))
    with pytest.raises(Exception, match="forbidden"):
        authz.authorize(bob, requestinfo.parse("GET", f"{BASE}/namespaces/default/pods", {}))


def test_go_duration() -> None:
    assert metrics.go_duration(10.04) == "10.04s"
    assert metrics.go_duration(15) == "15s"
    assert metrics.go_duration(60.5) == "1m0.5s"
    assert metrics.go_duration(0.5) == "500ms"
