"""Deployment controller: pure helpers, one reconcile, and live rollouts with the RS controller."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.deployment import DeploymentController, util
from microkube.controllers.replicaset import ReplicaSetController
from microkube.resources.registry import Registry
from tests.support.pods import mark_all_ready

pytestmark = pytest.mark.anyio


def deploy(name: str = "web", replicas: int = 3, image: str = "nginx:1", **spec: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {util.CHANGE_CAUSE: "first"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def test_safe_encode_and_hash() -> None:
    assert util.safe_encode("0123456789") == "bcdfghjklm"[:0] + "".join(
        "bcdfghjklmnpqrstvwxz2456789"[ord(c) % 27] for c in "0123456789"
    )
    t = deploy()["spec"]["template"]
    h = util.compute_hash(t, None)
    assert h == util.compute_hash(copy.deepcopy(t), None)
    assert h != util.compute_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10


def test_hash_steps_match_upstream() -> None:
    # FNV-1a 32 reference vectors (Go's hash/fnv New32a)
    assert util.fnv32a(b"") == 0x811C9DC5
    assert util.fnv32a(b"a") == 0xE40C292C
    assert util.fnv32a(b"foobar") == 0xBF9CF968
    # SafeEncodeString maps each character of the decimal Sum32 (rune % 27)
    assert util.safe_encode("4293255478") == "".join(
        "bcdfghjklmnpqrstvwxz2456789"[ord(c) % 27] for c in "4293255478"
    )
    # collisionCount: 8 bytes after the template, the count little-endian first
    t = deploy()["spec"]["template"]
    body = json.dumps(t, sort_keys=True, separators=(",", ":")).encode()
    want = util.safe_encode(str(util.fnv32a(body + bytes([5, 0, 0, 0, 0, 0, 0, 0]))))
    assert util.compute_hash(t, 5) == want


def test_fenceposts_round_as_upstream() -> None:
    d = deploy(replicas=10)
    d["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert util.resolve_fenceposts(d) == (3, 2)  # surge rounds up, unavailable down
    d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 0, "maxUnavailable": 0}
    assert util.resolve_fenceposts(d) == (0, 1)
    d["spec"]["strategy"] = {"type": "Recreate"}
    assert util.max_surge(d) == 0 and util.max_unavailable(d) == 0


async def test_first_reconcile_creates_hashed_rs(client: LocalClient, informers) -> None:
    dc = DeploymentController(client, informers)
    d = await client.create(dc.d_rt, "default", deploy())
    informers.prime()
    await dc.reconcile("default/web")
    (rs,) = client.list(dc.rs_rt, "default").items
    h = rs["metadata"]["labels"][util.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", util.HASH_LABEL: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", util.HASH_LABEL: h}
    assert rs["spec"]["replicas"] == 3
    ann = rs["metadata"]["annotations"]
    assert ann[util.REVISION] == "1"
    assert ann[util.DESIRED_REPLICAS] == "3" and ann[util.MAX_REPLICAS] == "4"
    assert ann[util.CHANGE_CAUSE] == "first"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    got = client.get(dc.d_rt, "default", "web")
    assert got["metadata"]["annotations"][util.REVISION] == "1"
    prog = util.get_condition(got["status"], "Progressing")
    assert prog["reason"] == util.NEW_RS_CREATED
    assert prog["message"] == f'Created new replica set "web-{h}"'
    evs = client.list(client.resource("", "events"), "default").items
    assert [e["message"] for e in evs] == [f"Scaled up replica set web-{h} to 3 from 0"]


@pytest.fixture
async def live(
    client: LocalClient, informers: InformerFactory, registry: Registry
) -> AsyncIterator[Callable[..., object]]:
    dc = DeploymentController(client, informers)
    rc = ReplicaSetController(client, informers)
    tasks = [*informers.start(), asyncio.create_task(dc.run()), asyncio.create_task(rc.run())]

    async def kubelet() -> None:
        while True:
            await mark_all_ready(registry)
            await asyncio.sleep(0.02)

    tasks.append(asyncio.create_task(kubelet()))

    async def wait(pred: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not pred():  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    yield wait
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await informers.stop()


def complete(client: LocalClient, name: str = "web") -> bool:
    d = client.get(client.resource("apps", "deployments"), "default", name)
    st = d.get("status") or {}
    n = d["spec"]["replicas"]
    return (
        st.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and st.get("updatedReplicas", 0) == n
        and st.get("replicas", 0) == n
        and st.get("availableReplicas", 0) == n
    )


def rss(client: LocalClient) -> dict[str, dict]:
    items = client.list(client.resource("apps", "replicasets"), "default").items
    return {rs["metadata"]["annotations"][util.REVISION]: rs for rs in items}


async def test_rolling_update_and_undo(client: LocalClient, live) -> None:
    d_rt = client.resource("apps", "deployments")
    await client.create(d_rt, "default", deploy())
    await live(lambda: complete(client))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}
    await client.patch(d_rt, "default", "web", patch, patch_type="strategic")
    await live(lambda: complete(client) and set(rss(client)) == {"1", "2"})
    await live(lambda: rss(client)["1"]["spec"]["replicas"] == 0)
    by_rev = rss(client)
    assert by_rev["2"]["spec"]["replicas"] == 3
    pods = client.list(client.resource("", "pods"), "default").items
    await live(lambda: len(client.list(client.resource("", "pods"), "default").items) == 3)
    pods = client.list(client.resource("", "pods"), "default").items
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:2"}
    d = client.get(d_rt, "default", "web")
    assert d["metadata"]["annotations"][util.REVISION] == "2"
    conds = {c["type"]: c["reason"] for c in d["status"]["conditions"]}
    assert conds == {"Available": util.MIN_AVAILABLE, "Progressing": util.NEW_RS_AVAILABLE}
    # undo as kubectl does: copy revision 1's template (without the hash label) back
    old_template = util.template_without_hash(by_rev["1"]["spec"]["template"])
    await client.patch(
        d_rt, "default", "web",
        [{"op": "replace", "path": "/spec/template", "value": old_template}],
        patch_type="json",
    )  # fmt: skip
    await live(lambda: complete(client) and set(rss(client)) == {"2", "3"})
    back = rss(client)["3"]
    assert back["metadata"]["name"] == by_rev["1"]["metadata"]["name"]
    assert back["metadata"]["annotations"][util.REVISION_HISTORY] == "1"


async def test_scale_paused_and_recreate(client: LocalClient, live) -> None:
    d_rt = client.resource("apps", "deployments")
    await client.create(d_rt, "default", deploy(strategy={"type": "Recreate"}))
    await live(lambda: complete(client))
    await client.patch(d_rt, "default", "web", {"spec": {"paused": True, "replicas": 5}})
    await live(lambda: complete(client))
    d = client.get(d_rt, "default", "web")
    assert util.get_condition(d["status"], "Progressing")["reason"] == util.PAUSED
    patch = {"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}}
    await client.patch(d_rt, "default", "web", patch)
    await asyncio.sleep(0.2)
    assert len(rss(client)) == 1  # paused: no rollout
    await client.patch(d_rt, "default", "web", {"spec": {"paused": False, "replicas": 1}})
    await live(lambda: complete(client) and set(rss(client)) == {"1", "2"})
    assert rss(client)["1"]["spec"]["replicas"] == 0
    assert rss(client)["2"]["spec"]["replicas"] == 1


async def test_progress_deadline_exceeded(client: LocalClient, informers, registry) -> None:
    from datetime import timedelta

    from microkube.controllers.base import utcnow

    offset = [timedelta(0)]
    dc = DeploymentController(client, informers, clock=lambda: utcnow() + offset[0])
    await client.create(dc.d_rt, "default", deploy(progressDeadlineSeconds=10))
    informers.prime()
    await dc.reconcile("default/web")
    offset[0] = timedelta(seconds=30)
    informers.prime()
    await dc.reconcile("default/web")
    d = client.get(dc.d_rt, "default", "web")
    prog = util.get_condition(d["status"], "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", util.TIMED_OUT)
    assert prog["message"].endswith("has timed out progressing.")


async def test_stale_old_status_never_scales_old_up(client: LocalClient, informers) -> None:
    """An old RS whose status still counts pods we already scaled away is left alone."""
    dc = DeploymentController(client, informers)
    await client.create(dc.d_rt, "default", deploy(replicas=10))
    informers.prime()
    await dc.reconcile("default/web")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}
    await client.patch(dc.d_rt, "default", "web", patch, patch_type="strategic")
    informers.prime()
    await dc.reconcile("default/web")
    by_rev = rss(client)

    async def set_rs(rev: str, replicas: int, available: int) -> None:
        rs = by_rev[rev]

        def size(o: dict) -> dict:
            o["spec"]["replicas"] = replicas
            return o

        def status(o: dict) -> dict:
            o["status"] = {
                "replicas": max(replicas, available),
                "readyReplicas": available,
                "availableReplicas": available,
                "observedGeneration": o["metadata"]["generation"],
            }
            return o

        await client.mutate(dc.rs_rt, "default", rs["metadata"]["name"], size)
        await client.mutate(
            dc.rs_rt, "default", rs["metadata"]["name"], status, subresource="status"
        )

    # mid-rollout: the old RS was just scaled 5 -> 2, its status still says 5 available
    await set_rs("1", 2, 5)
    await set_rs("2", 10, 9)
    informers.prime()
    await dc.reconcile("default/web")
    assert rss(client)["1"]["spec"]["replicas"] == 2
    # once its status catches up, the rollout goes on (down to the 8 that must stay available)
    await set_rs("1", 2, 2)
    informers.prime()
    await dc.reconcile("default/web")
    assert rss(client)["1"]["spec"]["replicas"] == 0
