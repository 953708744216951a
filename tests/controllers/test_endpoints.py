"""Endpoints/EndpointSlice controller: preload services and pods, sync, assert the writes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from microkube.controllers import endpoints, endpointset
from microkube.objects import meta
from microkube.resources.registry import DeleteOptions, Registry

pytestmark = pytest.mark.anyio

NODE_IP = "192.0.2.10"


@pytest.fixture
def ctl(registry: Registry) -> endpoints.EndpointsController:
    return endpoints.EndpointsController(
        registry, api_address=("192.0.2.10", 16443), node_ip=NODE_IP
    )


def rt(reg: Registry, group: str, plural: str) -> Any:
    r = reg.catalog.get(group, "v1", plural)
    assert r is not None
    return r


async def make_service(reg: Registry, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("selector", {"app": name})
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    if spec["selector"] is None:
        del spec["selector"]
    body = {"metadata": {"name": name, "labels": {"tier": "web"}}, "spec": spec}
    return await reg.create(rt(reg, "", "services"), "default", body)


async def make_pod(
    reg: Registry,
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    **spec: Any,
) -> dict[str, Any]:
    pods = rt(reg, "", "pods")
    body = {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {
            "nodeName": "node1",
            "containers": [{"name": "c", "image": "nginx", "ports": ports or []}],
            **spec,
        },
    }
    await reg.create(pods, "default", body)

    def status(obj: dict[str, Any]) -> dict[str, Any]:
        obj["status"]["phase"] = phase
        if ip:
            obj["status"]["podIP"] = ip
            obj["status"]["podIPs"] = [{"ip": ip}]
        obj["status"]["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False"},
        ]
        return obj

    out = await reg.guaranteed_update(pods, "default", name, status, subresource="status")
    assert out is not None
    return out


def get_ep(reg: Registry, name: str) -> dict[str, Any] | None:
    return reg.try_get(rt(reg, "", "endpoints"), "default", name)


def slices(reg: Registry, name: str) -> list[dict[str, Any]]:
    return [
        s
        for s in reg.list(rt(reg, "discovery.k8s.io", "endpointslices"), "default").items
        if s["metadata"]["labels"].get(endpointset.SERVICE_NAME_LABEL) == name
    ]


async def test_ready_and_not_ready_addresses(registry, ctl) -> None:
    await make_service(registry, "web")
    await make_pod(registry, "a", "10.1.0.5")
    await make_pod(registry, "b", "10.1.0.4")
    await make_pod(registry, "c", "10.1.0.6", ready=False)
    await make_pod(registry, "pending", None)
    await make_pod(registry, "done", "10.1.0.9", phase="Succeeded")
    await make_pod(registry, "other", "10.1.0.7", labels={"app": "other"})
    await ctl.sync("default", "web")
    ep = get_ep(registry, "web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"tier": "web"}
    (subset,) = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.1.0.4", "10.1.0.5"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.1.0.6"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    addr = subset["addresses"][0]
    assert addr["nodeName"] == "node1"
    assert addr["targetRef"]["kind"] == "Pod" and addr["targetRef"]["name"] == "b"

    (sl,) = slices(registry, "web")
    labels = sl["metadata"]["labels"]
    assert labels[endpointset.MANAGED_BY_LABEL] == "endpointslice-controller.k8s.io"
    assert labels["tier"] == "web"
    assert sl["metadata"]["name"].startswith("web-")
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conds = {e["addresses"][0]: e["conditions"] for e in sl["endpoints"]}
    assert conds == {
        "10.1.0.4": {"ready": True, "serving": True, "terminating": False},
        "10.1.0.5": {"ready": True, "serving": True, "terminating": False},
        "10.1.0.6": {"ready": False, "serving": False, "terminating": False},
    }
    (owner,) = sl["metadata"]["ownerReferences"]
    assert owner["kind"] == "Service" and owner["name"] == "web" and owner["controller"]

    # A resync with nothing changed writes nothing.
    rv_ep, rv_sl = ep["metadata"]["resourceVersion"], sl["metadata"]["resourceVersion"]
    await ctl.sync("default", "web")
    assert get_ep(registry, "web")["metadata"]["resourceVersion"] == rv_ep
    assert slices(registry, "web")[0]["metadata"]["resourceVersion"] == rv_sl


async def test_publish_not_ready_and_hostname(registry, ctl) -> None:
    await make_service(registry, "db", clusterIP="None", publishNotReadyAddresses=True)
    await make_pod(
        registry,
        "db-0",
        "10.1.0.8",
        ready=False,
        labels={"app": "db"},
        hostname="db-0",
        subdomain="db",
    )
    await ctl.sync("default", "db")
    (subset,) = get_ep(registry, "db")["subsets"]
    assert subset["addresses"][0]["hostname"] == "db-0"
    assert "notReadyAddresses" not in subset
    (sl,) = slices(registry, "db")
    assert sl["metadata"]["labels"][endpointset.HEADLESS_LABEL] == ""
    (e,) = sl["endpoints"]
    assert e["hostname"] == "db-0"
    assert e["conditions"]["ready"] is True and e["conditions"]["serving"] is False


async def test_named_target_port_splits_subsets(registry, ctl) -> None:
    await make_service(registry, "web", ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    await make_pod(registry, "a", "10.1.0.5", ports=[{"name": "web", "containerPort": 8080}])
    await make_pod(registry, "b", "10.1.0.6", ports=[{"name": "web", "containerPort": 9090}])
    await make_pod(registry, "c", "10.1.0.7", ports=[{"name": "other", "containerPort": 1}])
    await ctl.sync("default", "web")
    subsets = get_ep(registry, "web")["subsets"]
    got = {s["ports"][0]["port"]: [a["ip"] for a in s["addresses"]] for s in subsets}
    assert got == {8080: ["10.1.0.5"], 9090: ["10.1.0.6"]}
    got_slices = {
        s["ports"][0]["port"]: [e["addresses"][0] for e in s["endpoints"]]
        for s in slices(registry, "web")
    }
    assert got_slices == {8080: ["10.1.0.5"], 9090: ["10.1.0.6"]}


async def test_terminating_pod(registry, ctl) -> None:
    await make_service(registry, "web")
    await make_pod(registry, "a", "10.1.0.5")

    def deleting(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].setdefault("finalizers", []).append("test/hold")
        return obj

    pods = rt(registry, "", "pods")
    await registry.guaranteed_update(pods, "default", "a", deleting)
    await registry.delete(pods, "default", "a", DeleteOptions(grace_period_seconds=0))
    assert meta.is_deleting(registry.get(pods, "default", "a"))
    await ctl.sync("default", "web")
    assert "subsets" not in get_ep(registry, "web")
    (sl,) = slices(registry, "web")
    (e,) = sl["endpoints"]
    assert e["conditions"] == {"ready": False, "serving": True, "terminating": True}


async def test_selectorless_service_is_mirrored_and_user_endpoints_kept(registry, ctl) -> None:
    await make_service(registry, "ext", selector=None, ports=[{"port": 5432}])
    await registry.create(
        rt(registry, "", "endpoints"),
        "default",
        {
            "metadata": {"name": "ext"},
            "subsets": [{"addresses": [{"ip": "192.0.2.50"}], "ports": [{"port": 5432}]}],
        },
    )
    await ctl.sync("default", "ext")
    (sl,) = slices(registry, "ext")
    assert sl["metadata"]["labels"][endpointset.MANAGED_BY_LABEL] == endpointset.MIRROR_MANAGED_BY
    assert [e["addresses"] for e in sl["endpoints"]] == [["192.0.2.50"]]
    assert sl["ports"] == [{"name": "", "port": 5432, "protocol": "TCP"}]
    # User endpoints are not overwritten.
    assert get_ep(registry, "ext")["subsets"][0]["addresses"] == [{"ip": "192.0.2.50"}]


async def test_kubernetes_service_and_load_balancer(registry, ctl) -> None:
    await make_service(
        registry,
        "kubernetes",
        selector=None,
        ports=[{"name": "https", "port": 443, "targetPort": 16443}],
    )
    await ctl.sync("default", "kubernetes")
    ep = get_ep(registry, "kubernetes")
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "192.0.2.10"}],
            "ports": [{"name": "https", "port": 16443, "protocol": "TCP"}],
        }
    ]
    (sl,) = slices(registry, "kubernetes")
    assert sl["metadata"]["name"] == "kubernetes"
    assert sl["endpoints"][0]["addresses"] == ["192.0.2.10"]

    await make_service(registry, "lb", type="LoadBalancer")
    await ctl.sync("default", "lb")
    svc = registry.get(rt(registry, "", "services"), "default", "lb")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": NODE_IP, "ipMode": "VIP"}]


async def test_watch_loop_follows_pods_and_service_deletion(registry, ctl) -> None:
    task = asyncio.create_task(ctl.run())
    try:
        await make_service(registry, "web")
        await make_pod(registry, "a", "10.1.0.5")

        async def wait_for(pred: Any) -> None:
            for _ in range(200):
                if pred():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("condition not reached")

        def ips() -> list[str]:
            ep = get_ep(registry, "web")
            if not ep:
                return []
            return [a["ip"] for s in ep.get("subsets", []) for a in s.get("addresses", [])]

        await wait_for(lambda: ips() == ["10.1.0.5"])
        # Relabelling the pod away removes it.
        pods = rt(registry, "", "pods")

        def relabel(obj: dict[str, Any]) -> dict[str, Any]:
            obj["metadata"]["labels"] = {"app": "elsewhere"}
            return obj

        await registry.guaranteed_update(pods, "default", "a", relabel)
        await wait_for(lambda: get_ep(registry, "web") is not None and ips() == [])
        await wait_for(
            lambda: slices(registry, "web") and slices(registry, "web")[0]["endpoints"] == []
        )
        await registry.delete(rt(registry, "", "services"), "default", "web", DeleteOptions())
        await wait_for(lambda: get_ep(registry, "web") is None and not slices(registry, "web"))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
