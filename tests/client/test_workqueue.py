from __future__ import annotations

import asyncio

import pytest

from microkube.client.workqueue import WorkQueue

pytestmark = pytest.mark.anyio


async def test_dedup_and_dirty_while_processing() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert q.pending() == ["a", "b"]
    k = await q.get()
    assert k == "a"
    q.add("a")  # while processing: not handed out again
    assert q.pending() == ["b"]
    q.done("a")
    assert q.pending() == ["b", "a"]


async def test_backoff_doubles_and_caps() -> None:
    q = WorkQueue()
    delays = [q.when("k") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    q.forget("k")
    assert q.when("k") == 0.005


async def test_add_after_fires() -> None:
    q = WorkQueue()
    q.add_after("x", 0.01)
    assert q.pending() == []
    assert await asyncio.wait_for(q.get(), 1) == "x"


async def test_shutdown_unblocks() -> None:
    from microkube.client.workqueue import ShutDown

    q = WorkQueue()
    t = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await q.shutdown()
    with pytest.raises(ShutDown):
        await t
