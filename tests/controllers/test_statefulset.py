"""StatefulSet controller: ordered identities, PVCs, scale-down, rolling update, revisions."""

from __future__ import annotations

from typing import Any

import pytest

from microkube import errors
from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import history
from microkube.controllers.statefulset import StatefulSetController

pytestmark = pytest.mark.anyio


def sts_body(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
            **spec,
        },
    }


@pytest.fixture
def ctl(client: LocalClient, informers: InformerFactory) -> StatefulSetController:
    return StatefulSetController(client, informers)


def pods(client: LocalClient) -> dict[str, dict[str, Any]]:
    return {
        p["metadata"]["name"]: p for p in client.list(client.resource("", "pods"), "default").items
    }


def pvcs(client: LocalClient) -> list[str]:
    rt = client.resource("", "persistentvolumeclaims")
    return sorted(p["metadata"]["name"] for p in client.list(rt, "default").items)


def sts(client: LocalClient) -> dict[str, Any]:
    return client.get(client.resource("apps", "statefulsets"), "default", "web")


async def ready(client: LocalClient, name: str) -> None:
    def f(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        return p

    await client.mutate(client.resource("", "pods"), "default", name, f, subresource="status")


async def settle(client: LocalClient, ctl: StatefulSetController, rounds: int = 12) -> None:
    """Sync, making every live pod Running+Ready, until nothing changes."""
    for _ in range(rounds):
        await ctl.sync("default", "web")
        for name, p in pods(client).items():
            if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") != "Running":
                await ready(client, name)


async def test_ordered_creation_identity_and_pvcs(client, ctl) -> None:
    await client.create(client.resource("apps", "statefulsets"), "default", sts_body())
    await ctl.sync("default", "web")
    assert list(pods(client)) == ["web-0"]
    assert pvcs(client) == ["data-web-0"]
    await ctl.sync("default", "web")  # web-0 not ready: OrderedReady waits
    assert list(pods(client)) == ["web-0"]
    await ready(client, "web-0")
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0", "web-1"]
    await ready(client, "web-1")
    await ctl.sync("default", "web")
    p = pods(client)["web-2"]
    labels = p["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-2"
    assert labels["apps.kubernetes.io/pod-index"] == "2"
    assert p["spec"]["hostname"] == "web-2" and p["spec"]["subdomain"] == "nginx"
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}} in p["spec"][
        "volumes"
    ]
    assert pvcs(client) == ["data-web-0", "data-web-1", "data-web-2"]
    await ready(client, "web-2")
    await ctl.sync("default", "web")
    st = sts(client)["status"]
    rev = labels[history.REVISION_HASH_LABEL]
    assert rev.startswith("web-")
    assert st["replicas"] == 3 and st["readyReplicas"] == 3 and st["availableReplicas"] == 3
    assert st["currentRevision"] == st["updateRevision"] == rev
    assert st["updatedReplicas"] == 3 and st["currentReplicas"] == 3
    assert st["observedGeneration"] == 1 and st["collisionCount"] == 0
    crs = client.list(client.resource("apps", "controllerrevisions"), "default").items
    assert [c["metadata"]["name"] for c in crs] == [rev]
    assert crs[0]["revision"] == 1


async def test_containers_may_mount_claim_templates_only(client) -> None:
    rt = client.resource("apps", "statefulsets")
    body = sts_body(1)
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}
    ]
    await client.create(rt, "default", body)
    body["metadata"]["name"] = "bad"
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "nope"
    with pytest.raises(errors.Invalid) as exc:
        await client.create(rt, "default", body)
    assert [c.field for c in exc.value.causes] == [
        "spec.template.spec.containers[0].volumeMounts[0].name"
    ]


async def test_pod_deletion_keeps_pvc_and_recreates_pod(client, ctl) -> None:
    await client.create(client.resource("apps", "statefulsets"), "default", sts_body(1))
    await settle(client, ctl)
    old_uid = pods(client)["web-0"]["metadata"]["uid"]
    await client.delete(client.resource("", "pods"), "default", "web-0")
    assert pods(client) == {} and pvcs(client) == ["data-web-0"]
    await ctl.sync("default", "web")
    assert pods(client)["web-0"]["metadata"]["uid"] != old_uid
    assert pvcs(client) == ["data-web-0"]


async def test_scale_down_deletes_highest_first_and_keeps_pvcs(client, ctl) -> None:
    await client.create(client.resource("apps", "statefulsets"), "default", sts_body())
    await settle(client, ctl)
    assert sorted(pods(client)) == ["web-0", "web-1", "web-2"]

    def scale(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["replicas"] = 1
        return o

    await client.mutate(client.resource("apps", "statefulsets"), "default", "web", scale)
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0", "web-1"]  # one at a time, web-2 first
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0"]
    assert pvcs(client) == ["data-web-0", "data-web-1", "data-web-2"]


async def test_parallel_creates_all_at_once(client, ctl) -> None:
    body = sts_body(podManagementPolicy="Parallel")
    await client.create(client.resource("apps", "statefulsets"), "default", body)
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0", "web-1", "web-2"]


async def test_rolling_update_with_partition(client, ctl) -> None:
    body = sts_body(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    await client.create(client.resource("apps", "statefulsets"), "default", body)
    await settle(client, ctl)
    first = sts(client)["status"]["currentRevision"]

    def new_image(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        return o

    await client.mutate(client.resource("apps", "statefulsets"), "default", "web", new_image)
    await ctl.sync("default", "web")
    assert "web-2" not in pods(client) or pods(client)["web-2"]["metadata"].get("deletionTimestamp")
    assert "web-1" in pods(client)  # one at a time, highest first
    await settle(client, ctl)
    ps = pods(client)
    st = sts(client)["status"]
    second = st["updateRevision"]
    assert second != first
    images = {n: p["spec"]["containers"][0]["image"] for n, p in ps.items()}
    assert images == {"web-0": "nginx:1", "web-1": "nginx:2", "web-2": "nginx:2"}
    assert ps["web-0"]["metadata"]["labels"][history.REVISION_HASH_LABEL] == first
    assert st["currentRevision"] == first and st["updatedReplicas"] == 2
    assert st["currentReplicas"] == 1
    crs = client.list(client.resource("apps", "controllerrevisions"), "default").items
    assert sorted(c["revision"] for c in crs) == [1, 2]


async def test_on_delete_does_not_replace(client, ctl) -> None:
    body = sts_body(1, updateStrategy={"type": "OnDelete"})
    await client.create(client.resource("apps", "statefulsets"), "default", body)
    await settle(client, ctl)

    def new_image(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        return o

    await client.mutate(client.resource("apps", "statefulsets"), "default", "web", new_image)
    await settle(client, ctl)
    assert pods(client)["web-0"]["spec"]["containers"][0]["image"] == "nginx:1"
    await client.delete(client.resource("", "pods"), "default", "web-0")
    await ctl.sync("default", "web")
    assert pods(client)["web-0"]["spec"]["containers"][0]["image"] == "nginx:2"


def test_revision_hash_is_stable_and_safe() -> None:
    a = history.compute_hash({"spec": {"template": {"x": 1}}})
    assert a == history.compute_hash({"spec": {"template": {"x": 1}}})
    assert a != history.compute_hash({"spec": {"template": {"x": 1}}}, 1)
    assert set(a) <= set("bcdfghjklmnpqrstvwxz2456789")


async def ready_since(client: LocalClient, name: str, since: str) -> None:
    def f(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": since}],
        }
        return p

    await client.mutate(client.resource("", "pods"), "default", name, f, subresource="status")


async def test_min_ready_seconds_gates_ordered_creation(client, informers) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)]
    ctl = StatefulSetController(client, informers, clock=lambda: now[0])
    await client.create(
        client.resource("apps", "statefulsets"), "default", sts_body(2, minReadySeconds=10)
    )
    await ctl.sync("default", "web")
    await ready_since(client, "web-0", "2030-01-01T12:00:00Z")
    await ctl.sync("default", "web")
    assert list(pods(client)) == ["web-0"]  # Ready, but not yet available
    st = sts(client)["status"]
    assert st["readyReplicas"] == 1 and st["availableReplicas"] == 0
    assert ctl.queue.delayed()  # synced again when web-0 becomes available
    now[0] += timedelta(seconds=11)
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0", "web-1"]
    assert sts(client)["status"]["availableReplicas"] == 1


async def test_max_unavailable_rolls_several_at_once(client, ctl) -> None:
    body = sts_body(
        4,
        podManagementPolicy="Parallel",
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
    )
    await client.create(client.resource("apps", "statefulsets"), "default", body)
    await settle(client, ctl)
    rev1 = sts(client)["status"]["currentRevision"]

    def new_image(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        return o

    await client.mutate(client.resource("apps", "statefulsets"), "default", "web", new_image)
    await ctl.sync("default", "web")
    assert sorted(pods(client)) == ["web-0", "web-1"]  # web-3 and web-2 together
    await ctl.sync("default", "web")  # recreated at the new revision, not ready: budget spent
    ps = pods(client)
    assert sorted(ps) == ["web-0", "web-1", "web-2", "web-3"]
    assert ps["web-1"]["metadata"]["labels"][history.REVISION_HASH_LABEL] == rev1
    await settle(client, ctl)
    images = {n: p["spec"]["containers"][0]["image"] for n, p in pods(client).items()}
    assert set(images.values()) == {"nginx:2"}


async def test_min_ready_and_max_unavailable_are_validated(client) -> None:
    rt = client.resource("apps", "statefulsets")
    path = "spec.updateStrategy.rollingUpdate.maxUnavailable"
    for value, message in (
        (0, "cannot be 0"),
        ("150%", "must not be greater than 100%"),
        ("x", "percent"),
    ):
        body = sts_body(
            1, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": value}}
        )
        with pytest.raises(errors.Invalid) as exc:
            await client.create(rt, "default", body)
        (cause,) = exc.value.causes
        assert cause.field == path and message in cause.message
    with pytest.raises(errors.Invalid) as exc:
        await client.create(rt, "default", sts_body(1, minReadySeconds=-1))
    assert [c.field for c in exc.value.causes] == ["spec.minReadySeconds"]
    ok = sts_body(
        1, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}
    )
    await client.create(rt, "default", ok)
