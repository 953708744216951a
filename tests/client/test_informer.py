from __future__ import annotations

import asyncio

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient

pytestmark = pytest.mark.anyio


def cm(name: str) -> dict:
    return {"metadata": {"name": name}, "data": {"k": name}}


async def test_list_watch_and_handlers(client: LocalClient, informers: InformerFactory) -> None:
    rt = client.resource("", "configmaps")
    await client.create(rt, "default", cm("one"))
    inf = informers.informer(rt)
    seen: list[tuple[str, str]] = []
    inf.add_handler(
        on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
        on_update=lambda old, new: seen.append(("update", new["metadata"]["name"])),
        on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])),
    )
    informers.start()
    try:
        await informers.wait_synced(5)
        assert inf.get("default", "one") is not None
        await client.create(rt, "default", cm("two"))
        await client.mutate(rt, "default", "one", lambda o: {**o, "data": {"k": "x"}})
        await client.delete(rt, "default", "two")
        for _ in range(100):
            if ("delete", "two") in seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [("add", "one"), ("add", "two"), ("update", "one"), ("delete", "two")]
        assert inf.get("default", "one")["data"] == {"k": "x"}
        assert [o["metadata"]["name"] for o in inf.list("default")] == ["one"]
    finally:
        await informers.stop()


async def test_prime_diffs(client: LocalClient, informers: InformerFactory) -> None:
    rt = client.resource("", "configmaps")
    inf = informers.informer(rt)
    await client.create(rt, "default", cm("a"))
    informers.prime()
    assert inf.keys() == ["default/a"]
    await client.delete(rt, "default", "a")
    informers.prime()
    assert inf.keys() == []
