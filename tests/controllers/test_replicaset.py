"""ReplicaSet controller: preload objects, reconcile, assert the writes."""

from __future__ import annotations

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.replicaset import ReplicaSetController, pods_to_delete
from microkube.resources.registry import Registry
from tests.support.pods import mark_ready

pytestmark = pytest.mark.anyio


def rs_body(name: str = "web", replicas: int = 3, **spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
            **spec,
        },
    }


def pods(client: LocalClient) -> list[dict]:
    return client.list(client.resource("", "pods"), "default").items


async def sync(ctrl: ReplicaSetController, informers: InformerFactory, key: str) -> None:
    informers.prime()
    await ctrl.reconcile(key)
    informers.prime()


@pytest.fixture
def ctrl(client: LocalClient, informers: InformerFactory) -> ReplicaSetController:
    return ReplicaSetController(client, informers)


async def test_creates_pods_with_owner_and_events(ctrl, client, informers) -> None:
    rs = await client.create(ctrl.rs_rt, "default", rs_body())
    await sync(ctrl, informers, "default/web")
    ps = pods(client)
    assert len(ps) == 3
    for p in ps:
        assert p["metadata"]["name"].startswith("web-")
        assert p["metadata"]["labels"] == {"app": "web"}
        (ref,) = p["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web",
            "uid": rs["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    # status counts what the cache held at sync time (as upstream): next sync sees 3
    assert client.get(ctrl.rs_rt, "default", "web")["status"]["replicas"] == 0
    await sync(ctrl, informers, "default/web")
    assert len(pods(client)) == 3
    status = client.get(ctrl.rs_rt, "default", "web")["status"]
    assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 3
    assert status["observedGeneration"] == 1
    assert "readyReplicas" not in status
    evs = client.list(client.resource("", "events"), "default").items
    assert sorted(e["reason"] for e in evs) == ["SuccessfulCreate"] * 3
    assert evs[0]["message"].startswith("Created pod: web-")
    assert evs[0]["involvedObject"]["kind"] == "ReplicaSet"


async def test_expectations_prevent_overcreate(ctrl, client, informers) -> None:
    await client.create(ctrl.rs_rt, "default", rs_body())
    informers.prime()
    await ctrl.reconcile("default/web")
    # the cache has not seen the pods yet (no prime): a second sync must not create more
    await ctrl.reconcile("default/web")
    assert len(pods(client)) == 3


async def test_scale_down_prefers_not_ready_then_newest(
    ctrl, client, informers, registry: Registry
):
    await client.create(ctrl.rs_rt, "default", rs_body(replicas=4))
    await sync(ctrl, informers, "default/web")
    names = sorted(p["metadata"]["name"] for p in pods(client))
    for n in names[:3]:
        await mark_ready(registry, "default", n)
    await client.patch(ctrl.rs_rt, "default", "web", {"spec": {"replicas": 1}})
    await sync(ctrl, informers, "default/web")
    left = pods(client)
    assert len(left) == 1
    assert left[0]["metadata"]["name"] in names[:3]
    evs = client.list(client.resource("", "events"), "default").items
    assert sum(e["reason"] == "SuccessfulDelete" for e in evs) == 3
    # the not-ready pod went first
    assert any(e["message"] == f"Deleted pod: {names[3]}" for e in evs)


async def test_status_ready_and_available(ctrl, client, informers, registry) -> None:
    await client.create(ctrl.rs_rt, "default", rs_body(replicas=2))
    await sync(ctrl, informers, "default/web")
    for p in pods(client):
        await mark_ready(registry, "default", p["metadata"]["name"])
    await sync(ctrl, informers, "default/web")
    st = client.get(ctrl.rs_rt, "default", "web")["status"]
    assert (st["readyReplicas"], st["availableReplicas"]) == (2, 2)


async def test_min_ready_seconds_delays_availability(ctrl, client, informers, registry) -> None:
    await client.create(ctrl.rs_rt, "default", rs_body(replicas=1, minReadySeconds=30))
    await sync(ctrl, informers, "default/web")
    (p,) = pods(client)
    await mark_ready(registry, "default", p["metadata"]["name"])
    await sync(ctrl, informers, "default/web")
    st = client.get(ctrl.rs_rt, "default", "web")["status"]
    assert st["readyReplicas"] == 1 and "availableReplicas" not in st
    assert "default/web" in ctrl.queue.delayed()


async def test_adopts_orphans_and_releases_non_matching(ctrl, client, informers) -> None:
    pod_rt = client.resource("", "pods")
    orphan = {
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    await client.create(pod_rt, "default", orphan)
    rs = await client.create(ctrl.rs_rt, "default", rs_body(replicas=1))
    await sync(ctrl, informers, "default/web")
    (p,) = pods(client)
    assert p["metadata"]["name"] == "orphan"
    assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    # relabel: released, and a replacement is created
    await client.patch(pod_rt, "default", "orphan", {"metadata": {"labels": {"app": "other"}}})
    await sync(ctrl, informers, "default/web")
    await sync(ctrl, informers, "default/web")
    released = client.get(pod_rt, "default", "orphan")
    assert "ownerReferences" not in released["metadata"]
    assert len(pods(client)) == 2


def test_rank_order() -> None:
    def pod(name, node="", phase="Pending", ready=False, created="2024-01-01T00:00:00Z"):
        conds = [{"type": "Ready", "status": "True" if ready else "False"}]
        return {
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conds},
        }

    ps = [
        pod("ready-old", "n", "Running", True, "2024-01-01T00:00:00Z"),
        pod("ready-new", "n", "Running", True, "2024-01-02T00:00:00Z"),
        pod("running-notready", "n", "Running"),
        pod("pending", "n", "Pending"),
        pod("unscheduled"),
    ]
    order = [p["metadata"]["name"] for p in pods_to_delete(ps, 5)]
    assert order == ["unscheduled", "pending", "running-notready", "ready-new", "ready-old"]
