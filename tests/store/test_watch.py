"""Watch: replay from a revision, live fan-out, ordering, Gone, slow watchers."""

from __future__ import annotations

import asyncio
import random

import pytest

from microkube import errors
from microkube.settings import StoreSettings
from microkube.store import api
from microkube.store.log import Store
from tests.store.conftest import obj

pytestmark = pytest.mark.anyio

P = "/registry/pods/default/"


async def collect(watch: api.Watch, until_revision: int) -> list[api.Event]:
    out: list[api.Event] = []
    async with asyncio.timeout(10):
        async for event in watch:
            out.append(event)
            if event.kv.revision >= until_revision:
                break
    return out


async def test_replay_then_live_with_types_and_prev(store: Store) -> None:
    a = await store.create(P + "a", obj("a", n=0))
    watch = store.watch(P, 0)
    await store.update(P + "a", obj("a", n=1), expected_revision=a.revision)
    await store.create("/registry/services/default/s", obj("s"))  # other prefix
    await store.delete(P + "a")
    events = await collect(watch, 4)
    watch.close()
    assert [(e.type, e.kv.revision) for e in events] == [
        ("ADDED", 1),
        ("MODIFIED", 2),
        ("DELETED", 4),
    ]
    assert events[1].prev is not None and events[1].prev.revision == 1
    assert events[2].kv.value == {"metadata": {"name": "a", "resourceVersion": "4"}, "n": 1}
    assert events[2].prev is not None and events[2].prev.revision == 2


async def test_watch_from_revision_skips_older_events(store: Store) -> None:
    for i in range(5):
        await store.create(f"{P}k{i}", obj(f"k{i}"))
    watch = store.watch(P, 3)
    await store.create(P + "k5", obj("k5"))
    events = await collect(watch, 6)
    watch.close()
    assert [e.kv.revision for e in events] == [4, 5, 6]


async def test_concurrent_writers_every_watcher_sees_each_change_once_in_order(
    store: Store,
) -> None:
    keys = [f"{P}w{i}" for i in range(8)]
    watchers = [store.watch(P, 0) for _ in range(10)]

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            key = rng.choice(keys)
            cur = store.get(key)
            try:
                if cur is None:
                    await store.create(key, obj(key))
                elif rng.random() < 0.2:
                    await store.delete(key, expected_revision=cur.revision)
                else:
                    await store.update(
                        key, obj(key, r=rng.random()), expected_revision=cur.revision
                    )
            except (errors.Conflict, errors.AlreadyExists, errors.NotFound):
                pass

    await asyncio.gather(*(writer(i) for i in range(12)))
    final = store.revision
    results = await asyncio.gather(*(collect(w, final) for w in watchers))
    expected = list(range(1, final + 1))
    for events in results:
        assert [e.kv.revision for e in events] == expected
    # per key, the event types follow a valid life cycle
    first = results[0]
    alive: dict[str, bool] = {}
    for e in first:
        was = alive.get(e.kv.key, False)
        assert e.type == ("MODIFIED" if was else "ADDED") or (was and e.type == "DELETED")
        alive[e.kv.key] = e.type != "DELETED"
    for w in watchers:
        w.close()


async def test_close_ends_iteration(store: Store) -> None:
    watch = store.watch(P, 0)

    async def consume() -> list[api.Event]:
        return [e async for e in watch]

    task = asyncio.create_task(consume())
    await store.create(P + "a", obj("a"))
    await asyncio.sleep(0.01)
    watch.close()
    async with asyncio.timeout(2):
        await task
    await store.create(P + "b", obj("b"))  # no error publishing after close


async def test_slow_watcher_is_ended_without_gaps(db_path) -> None:
    store = await Store.open(db_path, StoreSettings(compact_interval=3600))
    store._hub.max_pending = 5  # noqa: SLF001 - a tiny bound to overflow quickly
    try:
        watch = store.watch(P, 0)
        for i in range(20):
            await store.create(f"{P}k{i:02d}", obj("k"))
        events = [e async for e in watch]  # ends by itself
        assert [e.kv.revision for e in events] == [1, 2, 3, 4, 5]
        # the client re-watches from its last revision and misses nothing
        rest = await collect(store.watch(P, events[-1].kv.revision), 20)
        assert [e.kv.revision for e in rest] == list(range(6, 21))
    finally:
        await store.close()


async def test_store_close_ends_watches(db_path, settings) -> None:
    store = await Store.open(db_path, settings)
    watch = store.watch(P, 0)
    task = asyncio.create_task(collect(watch, 10**9))
    await asyncio.sleep(0)
    await store.close()
    async with asyncio.timeout(2):
        assert await task == []


async def test_watch_below_compaction_is_gone(db_path) -> None:
    store = await Store.open(db_path, StoreSettings(retain_revisions=5, compact_interval=3600))
    try:
        for i in range(12):
            await store.create(f"{P}k{i}", obj("k"))
        assert await store.compact() == 7
        with pytest.raises(errors.Gone, match=r"^too old resource version: 3 \(7\)$"):
            store.watch(P, 3)
        with pytest.raises(errors.Gone):
            store.watch(P, 0)
        events = await collect(store.watch(P, 7), 12)
        assert [e.kv.revision for e in events] == [8, 9, 10, 11, 12]
    finally:
        await store.close()


async def test_watch_window_survives_reopen(db_path) -> None:
    settings = StoreSettings(retain_revisions=4, compact_interval=3600)
    store = await Store.open(db_path, settings)
    a = await store.create(P + "a", obj("a", n=0))
    for n in range(1, 6):
        a = await store.update(P + "a", obj("a", n=n), expected_revision=a.revision)
    await store.create(P + "b", obj("b"))
    await store.delete(P + "b")
    await store.compact()  # revision 8, compacted to 4
    await store.close()

    store = await Store.open(db_path, settings)
    try:
        assert store.compacted_revision == 4
        with pytest.raises(errors.Gone):
            store.watch(P, 3)
        events = await collect(store.watch(P, 4), 8)
        assert [(e.type, e.kv.revision) for e in events] == [
            ("MODIFIED", 5),
            ("MODIFIED", 6),
            ("ADDED", 7),
            ("DELETED", 8),
        ]
        assert events[0].prev is not None and events[0].prev.value["n"] == 3
        assert events[3].kv.value["metadata"]["resourceVersion"] == "8"
    finally:
        await store.close()
