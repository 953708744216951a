"""Garbage collector: background, foreground and orphan cascades, live with the RS controller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.garbagecollector import GarbageCollector
from microkube.controllers.replicaset import ReplicaSetController
from tests.controllers.test_replicaset import rs_body

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(client: LocalClient, informers: InformerFactory) -> AsyncIterator[Callable]:
    gc = GarbageCollector(client, informers)
    rc = ReplicaSetController(client, informers)
    tasks = [*informers.start(), asyncio.create_task(gc.run()), asyncio.create_task(rc.run())]

    async def wait(pred: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not pred():  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    yield wait
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await informers.stop()


def pods(client: LocalClient) -> list[dict]:
    return client.list(client.resource("", "pods"), "default").items


async def start_rs(client: LocalClient, live) -> dict:
    rs_rt = client.resource("apps", "replicasets")
    rs = await client.create(rs_rt, "default", rs_body(replicas=2))
    await live(lambda: len(pods(client)) == 2)
    return rs


async def test_background(client: LocalClient, live) -> None:
    await start_rs(client, live)
    await client.delete(client.resource("apps", "replicasets"), "default", "web")
    await live(lambda: not pods(client))


async def test_foreground(client: LocalClient, live) -> None:
    rs_rt = client.resource("apps", "replicasets")
    await start_rs(client, live)
    out = await client.delete(rs_rt, "default", "web", propagation_policy="Foreground")
    assert "foregroundDeletion" in out["metadata"]["finalizers"]
    await live(lambda: client.try_get(rs_rt, "default", "web") is None)
    assert not pods(client)


async def test_orphan(client: LocalClient, live) -> None:
    rs_rt = client.resource("apps", "replicasets")
    await start_rs(client, live)
    await client.delete(rs_rt, "default", "web", propagation_policy="Orphan")
    await live(lambda: client.try_get(rs_rt, "default", "web") is None)
    await asyncio.sleep(0.1)
    left = pods(client)
    assert len(left) == 2
    assert all("ownerReferences" not in p["metadata"] for p in left)


async def test_dangling_reference_removed_when_other_owner_lives(client, live) -> None:
    cm_rt = client.resource("", "configmaps")
    owner = await client.create(cm_rt, "default", {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    gone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "nope"}
    await client.create(
        cm_rt, "default", {"metadata": {"name": "dep", "ownerReferences": [ref, gone]}}
    )
    await live(lambda: client.get(cm_rt, "default", "dep")["metadata"]["ownerReferences"] == [ref])
