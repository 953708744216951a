"""DaemonSet controller: pods per node, node pinning, taints, rolling update, status."""

from __future__ import annotations

from typing import Any

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import daemonset as dsc
from microkube.controllers import history

pytestmark = pytest.mark.anyio


def ds_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "agent:1"}]},
            },
            **spec,
        },
    }


async def add_node(client: LocalClient, name: str = "host", **spec: Any) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
    }
    await client.create(client.resource("", "nodes"), "", body)


@pytest.fixture
def ctl(client: LocalClient, informers: InformerFactory) -> dsc.DaemonSetController:
    return dsc.DaemonSetController(client, informers)


def pods(client: LocalClient) -> list[dict[str, Any]]:
    items = client.list(client.resource("", "pods"), "default").items
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def status(client: LocalClient) -> dict[str, Any]:
    return client.get(client.resource("apps", "daemonsets"), "default", "agent")["status"]


async def ready(client: LocalClient, pod: dict[str, Any]) -> None:
    def f(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        return p

    await client.mutate(
        client.resource("", "pods"), "default", pod["metadata"]["name"], f, subresource="status"
    )


async def test_no_node_no_pod_then_one_pinned_pod(client, ctl) -> None:
    await client.create(client.resource("apps", "daemonsets"), "default", ds_body())
    await ctl.sync("default", "agent")
    assert pods(client) == []
    assert status(client)["desiredNumberScheduled"] == 0
    await add_node(client)
    await ctl.sync("default", "agent")
    [p] = pods(client)
    assert dsc.pod_node(p) == "host"
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0] == {
        "key": "metadata.name",
        "operator": "In",
        "values": ["host"],
    }
    keys = {(t["key"], t["effect"]) for t in p["spec"]["tolerations"]}
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    h = p["metadata"]["labels"][history.REVISION_HASH_LABEL]
    crs = client.list(client.resource("apps", "controllerrevisions"), "default").items
    assert [c["metadata"]["name"] for c in crs] == [f"agent-{h}"]
    await ctl.sync("default", "agent")
    assert len(pods(client)) == 1  # idempotent
    st = status(client)
    assert st["desiredNumberScheduled"] == 1 and st["currentNumberScheduled"] == 1
    assert st["numberReady"] == 0 and st["numberUnavailable"] == 1
    await ready(client, p)
    await ctl.sync("default", "agent")
    st = status(client)
    assert st["numberReady"] == 1 and st["numberAvailable"] == 1
    assert st["updatedNumberScheduled"] == 1 and st["observedGeneration"] == 1


async def test_node_selector_and_taints(client, ctl) -> None:
    await add_node(client, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await client.create(client.resource("apps", "daemonsets"), "default", ds_body())
    await ctl.sync("default", "agent")
    assert pods(client) == []

    def tolerate(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
        ]
        return o

    await client.mutate(client.resource("apps", "daemonsets"), "default", "agent", tolerate)
    await ctl.sync("default", "agent")
    assert len(pods(client)) == 1

    def select(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
        return o

    await client.mutate(client.resource("apps", "daemonsets"), "default", "agent", select)
    await ctl.sync("default", "agent")
    assert pods(client) == []  # misscheduled pod removed


def test_should_run_affinity_and_tolerations() -> None:
    node = {"metadata": {"name": "n", "labels": {"zone": "a"}}, "spec": {}}
    aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
                ]
            }
        }
    }
    assert not dsc.should_run({"affinity": aff}, node)
    node["metadata"]["labels"]["zone"] = "b"
    assert dsc.should_run({"affinity": aff}, node)
    node["spec"]["unschedulable"] = True
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert dsc.should_run({}, node)  # DS pods tolerate cordoned nodes


async def test_rolling_update_replaces_pod(client, ctl) -> None:
    await add_node(client)
    await client.create(client.resource("apps", "daemonsets"), "default", ds_body())
    await ctl.sync("default", "agent")
    [old] = pods(client)
    await ready(client, old)

    def image(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
        return o

    await client.mutate(client.resource("apps", "daemonsets"), "default", "agent", image)
    await ctl.sync("default", "agent")  # maxUnavailable 1: old pod deleted
    await ctl.sync("default", "agent")  # new pod created
    [new] = pods(client)
    assert new["spec"]["containers"][0]["image"] == "agent:2"
    assert new["metadata"]["name"] != old["metadata"]["name"]
    crs = client.list(client.resource("apps", "controllerrevisions"), "default").items
    assert sorted(c["revision"] for c in crs) == [1, 2]


async def test_rolling_update_with_surge(client, ctl) -> None:
    await add_node(client)
    body = ds_body(
        updateStrategy={
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
    )
    await client.create(client.resource("apps", "daemonsets"), "default", body)
    await ctl.sync("default", "agent")
    [old] = pods(client)
    await ready(client, old)

    def image(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
        return o

    await client.mutate(client.resource("apps", "daemonsets"), "default", "agent", image)
    await ctl.sync("default", "agent")
    assert len(pods(client)) == 2  # surge pod next to the old one
    new = next(p for p in pods(client) if p["metadata"]["uid"] != old["metadata"]["uid"])
    await ready(client, new)
    await ctl.sync("default", "agent")
    assert [p["metadata"]["name"] for p in pods(client)] == [new["metadata"]["name"]]
