"""Compaction keeps rows, the WAL and the file bounded, without losing state."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from microkube.settings import StoreSettings
from microkube.store.log import Store
from tests.store.conftest import obj

pytestmark = pytest.mark.anyio

P = "/registry/configmaps/default/"


def count_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM log").fetchone()[0]


def file_size(db_path: Path) -> int:
    return db_path.stat().st_size


def wal_size(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def churn(store: Store, keys: list[str], rounds: int, payload: str = "") -> None:
    async def one(key: str) -> None:
        cur = store.get(key)
        if cur is None:
            cur = await store.create(key, obj(key, n=0, data=payload))
        for n in range(1, rounds):
            cur = await store.update(
                key, obj(key, n=n, data=payload), expected_revision=cur.revision
            )

    await asyncio.gather(*(one(k) for k in keys))


async def test_churn_is_bounded_after_compaction(db_path: Path) -> None:
    settings = StoreSettings(retain_revisions=100, compact_interval=3600)
    store = await Store.open(db_path, settings)
    try:
        await store.create(P + "old", obj("old"))
        await store.delete(P + "old")
        keys = [f"{P}c{i}" for i in range(5)]
        await churn(store, keys, 1000, payload="x" * 2000)
        await store.create(P + "gone", obj("gone"))
        await store.delete(P + "gone")
        assert store.revision == 5004
        wal_before = wal_size(db_path)
        assert wal_before > 1_000_000

        assert await store.compact() == 5004 - 100
        rows = count_rows(db_path)
        assert rows <= len(keys) + 100 + 2, rows
        assert wal_size(db_path) == 0
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert file_size(db_path) < 2_000_000

        # state is intact and writes continue with fresh revisions
        for key in keys:
            kv = store.get(key)
            assert kv is not None and kv.value["n"] == 999
        tombstones = store._index.tombstones  # noqa: SLF001
        assert P + "old" not in tombstones  # compacted away with its create row
        assert tombstones[P + "gone"] == 5004  # inside the window: kept
        # re-creating either (prev_revision 0, resp. the tombstone) passes the unique index
        assert (await store.create(P + "old", obj("old"))).revision == 5005
        assert (await store.create(P + "gone", obj("gone"))).revision == 5006
    finally:
        await store.close()

    store = await Store.open(db_path, settings)
    try:
        assert store.revision == 5006 and store.compacted_revision == 4904
        assert store.count(P) == 7
        assert store.get(P + "c3").value["n"] == 999  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_repeated_compaction_keeps_sizes_steady(db_path: Path) -> None:
    settings = StoreSettings(retain_revisions=50, compact_interval=3600)
    store = await Store.open(db_path, settings)
    try:
        sizes = []
        for _ in range(4):
            await churn(store, [f"{P}k{i}" for i in range(4)], 300, payload="y" * 1000)
            await store.compact()
            sizes.append((count_rows(db_path), file_size(db_path), wal_size(db_path)))
        assert all(rows <= 4 + 50 + 1 for rows, _, _ in sizes), sizes
        assert all(wal == 0 for _, _, wal in sizes), sizes
        assert max(size for _, size, _ in sizes) <= 2 * sizes[0][1], sizes
        assert store._hub.window_size <= 50  # noqa: SLF001
    finally:
        await store.close()


async def test_background_compaction_runs(db_path: Path) -> None:
    settings = StoreSettings(retain_revisions=10, compact_interval=0.05)
    store = await Store.open(db_path, settings)
    try:
        await churn(store, [P + "a"], 200)
        async with asyncio.timeout(5):
            while store.compacted_revision < 190:  # noqa: ASYNC110 - polls the background task
                await asyncio.sleep(0.02)
        assert count_rows(db_path) <= 12
    finally:
        await store.close()


async def test_compaction_interleaves_with_writes(db_path: Path) -> None:
    settings = StoreSettings(retain_revisions=20, compact_interval=3600)
    store = await Store.open(db_path, settings)
    try:
        await churn(store, [f"{P}k{i}" for i in range(3)], 500)
        watch = store.watch(P, store.revision)
        compaction = asyncio.create_task(store.compact())
        await churn(store, [f"{P}k{i}" for i in range(3)], 50)
        await compaction
        events = []
        async with asyncio.timeout(5):
            async for e in watch:
                events.append(e.kv.revision)
                if e.kv.revision == store.revision:
                    break
        assert events == sorted(set(events)) and len(events) == 3 * 49
        for i in range(3):
            assert store.get(f"{P}k{i}").value["n"] == 49  # type: ignore[union-attr]
    finally:
        await store.close()
