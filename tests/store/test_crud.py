"""Create/get/list/update/delete semantics of the store."""

from __future__ import annotations

import asyncio

import pytest

from microkube import errors
from microkube.store.log import Store
from tests.store.conftest import obj

pytestmark = pytest.mark.anyio

P = "/registry/pods/default/"


async def test_create_get_sets_resource_version(store: Store) -> None:
    kv = await store.create(P + "a", obj("a", spec={"x": 1}))
    assert kv.revision == store.revision == 1
    assert kv.create_revision == 1
    assert kv.value == {"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": 1}}
    got = store.get(P + "a")
    assert got == kv
    assert store.get(P + "missing") is None


async def test_caller_dict_is_not_mutated(store: Store) -> None:
    value = obj("a")
    await store.create(P + "a", value)
    assert value == {"metadata": {"name": "a"}}


async def test_create_existing_is_already_exists(store: Store) -> None:
    await store.create(P + "a", obj("a"))
    with pytest.raises(errors.AlreadyExists):
        await store.create(P + "a", obj("a"))
    assert store.revision == 1


async def test_update_checks_revision(store: Store) -> None:
    kv = await store.create(P + "a", obj("a", n=0))
    kv2 = await store.update(P + "a", obj("a", n=1), expected_revision=kv.revision)
    assert kv2.revision == 2 and kv2.create_revision == 1
    assert kv2.value["n"] == 1 and kv2.value["metadata"]["resourceVersion"] == "2"
    with pytest.raises(errors.Conflict):
        await store.update(P + "a", obj("a", n=2), expected_revision=kv.revision)
    assert store.get(P + "a") == kv2
    with pytest.raises(errors.NotFound):
        await store.update(P + "nope", obj("nope"), expected_revision=1)


async def test_delete_returns_tombstone_and_allows_recreate(store: Store) -> None:
    kv = await store.create(P + "a", obj("a", n=0))
    with pytest.raises(errors.Conflict):
        await store.delete(P + "a", expected_revision=kv.revision + 5)
    gone = await store.delete(P + "a", expected_revision=kv.revision)
    assert gone.revision == 2
    assert gone.value == {"metadata": {"name": "a", "resourceVersion": "2"}, "n": 0}
    assert store.get(P + "a") is None
    with pytest.raises(errors.NotFound):
        await store.delete(P + "a")
    again = await store.create(P + "a", obj("a", n=9))
    assert again.revision == again.create_revision == 3
    # and once more, so the unique (key, prev_revision) index sees a second recreate
    await store.delete(P + "a")
    assert (await store.create(P + "a", obj("a"))).revision == 5


async def test_too_large_object_is_rejected(store: Store) -> None:
    store.settings.max_object_bytes = 100
    with pytest.raises(errors.RequestEntityTooLarge):
        await store.create(P + "big", obj("big", data="x" * 200))
    assert store.get(P + "big") is None and store.revision == 0


async def test_list_prefix_pagination_and_count(store: Store) -> None:
    await asyncio.gather(*(store.create(f"{P}p{i:03d}", obj(f"p{i:03d}")) for i in range(25)))
    await store.create("/registry/pods/other/x", obj("x"))
    await store.create("/registry/podsx/default/y", obj("y"))
    assert store.count("/registry/pods/") == 26
    assert store.count(P) == 25
    assert store.count("") == 27

    seen: list[str] = []
    start = None
    while True:
        rev, items, more = store.list(P, start_after=start, limit=10)
        assert rev == store.revision == 27
        seen += [kv.key for kv in items]
        if not more:
            break
        start = items[-1].key
    assert seen == [f"{P}p{i:03d}" for i in range(25)]

    _, items, more = store.list("/registry/pods/")
    assert len(items) == 26 and not more
    _, items, more = store.list(P, limit=25)
    assert len(items) == 25 and not more
    _, items, more = store.list(P, start_after=f"{P}p024")
    assert items == [] and not more


async def test_list_scales_to_many_keys(store: Store) -> None:
    await asyncio.gather(*(store.create(f"{P}k{i:05d}", obj("k")) for i in range(12_000)))
    assert store.count(P) == 12_000
    _, items, more = store.list(P, start_after=f"{P}k09999", limit=500)
    assert items[0].key == f"{P}k10000" and len(items) == 500 and more


async def test_concurrent_increments_never_lose_an_update(store: Store) -> None:
    key = P + "counter"
    await store.create(key, obj("counter", n=0))

    async def incrementer() -> int:
        conflicts = 0
        for _ in range(50):
            while True:
                cur = store.get(key)
                assert cur is not None
                value = cur.value
                value["n"] += 1
                try:
                    await store.update(key, value, expected_revision=cur.revision)
                    break
                except errors.Conflict:
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(incrementer() for _ in range(20)))
    final = store.get(key)
    assert final is not None and final.value["n"] == 1000
    assert sum(conflicts) > 0  # the test really raced
    assert final.revision == store.revision == 1001


async def test_reopen_restores_state_and_revision(db_path, settings) -> None:
    s = await Store.open(db_path, settings)
    await s.create(P + "a", obj("a"))
    b = await s.create(P + "b", obj("b"))
    await s.update(P + "b", obj("b", n=1), expected_revision=b.revision)
    await s.create(P + "c", obj("c"))
    await s.delete(P + "c")
    await s.close()

    s = await Store.open(db_path, settings)
    try:
        assert s.revision == 5
        _, items, _ = s.list(P)
        assert [(kv.key, kv.revision, kv.create_revision) for kv in items] == [
            (P + "a", 1, 1),
            (P + "b", 3, 2),
        ]
        assert s.get(P + "b").value["n"] == 1  # type: ignore[union-attr]
        assert (await s.create(P + "c", obj("c"))).revision == 6
    finally:
        await s.close()


async def test_second_open_of_same_db_is_refused(store: Store, db_path, settings) -> None:
    from microkube.store.engine import StoreOpenError

    with pytest.raises(StoreOpenError, match="in use"):
        await Store.open(db_path, settings)


async def test_writes_after_close_are_refused(db_path, settings) -> None:
    s = await Store.open(db_path, settings)
    await s.close()
    with pytest.raises(errors.ServiceUnavailable):
        await s.create(P + "a", obj("a"))
