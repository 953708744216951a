"""Store benchmark: write throughput and watch delivery latency.

Run ``python bench/bench_store.py [--n 2000] [--dir /var/tmp]``.  Three write
measurements with the same durability (WAL, ``synchronous=FULL``: an fsync per
commit) side by side, on the same disk in the same run:

* raw sqlite3: one INSERT + COMMIT per iteration, the floor a naive store pays;
* Store, 1 writer: each create awaited before the next (no batching possible);
* Store, 16 concurrent writers: group commit shares each fsync.

Then watch delivery to 100 watchers: "commit→watcher" is from the moment the
writer publishes the committed batch to the moment a watcher's ``async for``
receives the event; "submit→watcher" adds the durable commit itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microkube.settings import StoreSettings  # noqa: E402
from microkube.store.log import Store  # noqa: E402

VALUE = {"metadata": {"name": "x", "namespace": "default", "labels": {"app": "bench"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip


def raw_sqlite(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, created INT, "
        "deleted INT, create_revision INT, prev_revision INT, value BLOB)"
    )
    conn.execute("CREATE UNIQUE INDEX log_kp ON log (key, prev_revision)")
    payload = str(VALUE).encode()
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO log (key, created, deleted, create_revision, prev_revision, value) "
            "VALUES (?, 1, 0, 0, 0, ?)",
            (f"/registry/pods/default/p{i}", payload),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def store_writes(path: Path, n: int, writers: int) -> float:
    store = await Store.open(path, StoreSettings(compact_interval=3600))
    try:

        async def writer(w: int) -> None:
            for i in range(n // writers):
                await store.create(f"/registry/pods/default/w{w}-{i}", VALUE)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
        return (n // writers * writers) / elapsed
    finally:
        await store.close()


async def watch_latency(path: Path, watchers: int, events: int) -> dict[str, list[float]]:
    store = await Store.open(path, StoreSettings(compact_interval=3600))
    published: dict[int, float] = {}
    submitted: dict[int, float] = {}
    hub = store._hub  # noqa: SLF001 - timestamp the publish for the measurement
    original = hub.publish

    def publish(batch):  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        for e in batch:
            published[e.kv.revision] = now
        original(batch)

    hub.publish = publish  # type: ignore[method-assign]
    after_commit: list[float] = []
    end_to_end: list[float] = []

    async def consume(watch) -> None:  # type: ignore[no-untyped-def]
        seen = 0
        async for e in watch:
            now = time.perf_counter()
            after_commit.append(now - published[e.kv.revision])
            end_to_end.append(now - submitted[e.kv.revision])
            seen += 1
            if seen == events:
                return

    try:
        base = store.revision
        tasks = [
            asyncio.create_task(consume(store.watch("/registry/", base))) for _ in range(watchers)
        ]
        await asyncio.sleep(0)
        for i in range(events):
            submitted[base + i + 1] = time.perf_counter()
            await store.create(f"/registry/pods/default/l{i}", VALUE)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        await store.close()
    return {"commit→watcher": after_commit, "submit→watcher": end_to_end}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="creates per write measurement")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--events", type=int, default=300, help="events per watch measurement")
    parser.add_argument("--dir", default=None, help="directory for the databases (default: tmp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        raw = raw_sqlite(d / "raw.db", args.n)
        one = await store_writes(d / "one.db", args.n, 1)
        many = await store_writes(d / "many.db", args.n, 16)
        lat = await watch_latency(d / "watch.db", args.watchers, args.events)

    print(f"\nwrites (WAL, synchronous=FULL), {args.n} creates each")
    print(f"  {'path':<32}{'creates/s':>12}{'vs raw':>9}")
    for name, rate in (
        ("raw sqlite3, insert+commit", raw),
        ("Store, 1 writer", one),
        ("Store, 16 concurrent writers", many),
    ):
        print(f"  {name:<32}{rate:>12.0f}{rate / raw:>8.2f}x")
    print(f"\nwatch delivery, {args.watchers} watchers × {args.events} events")
    print(f"  {'latency':<32}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in lat.items():
        print(
            f"  {name:<32}{pct(values, 50):>10.2f}{pct(values, 99):>10.2f}{max(values) * 1000:>10.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
