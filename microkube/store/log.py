"""The store: a kine-style revisioned log with an in-memory current state.

:class:`Store` implements :class:`microkube.store.api.StoreAPI` by composing
the parts of this package::

    Store.open ─► engine.migrate ─► _load (scan the log once)
                                       ├─► Index    current state, get/list/count
                                       └─► WatchHub  window of events after compaction
    create/update/delete ─► Writer (group commit in one thread) ─► Index, WatchHub
    Compactor (background) ─► Writer.run_job chunks ─► WatchHub.trim, VACUUM, checkpoint

Opening scans the whole log once, in id order: the last row of each key is its
current state (or a tombstone), and rows above the compacted revision become
the watch window.  Compaction keeps that scan short.  The revision comes from
``sqlite_sequence``: with ``AUTOINCREMENT`` it is the highest id ever
inserted, even when compaction has deleted that row.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from microkube.settings import StoreSettings
from microkube.store import api, schema
from microkube.store import engine as _engine
from microkube.store.compact import Compactor
from microkube.store.index import Index
from microkube.store.watch import Watcher, WatchHub
from microkube.store.writer import Writer

_log = logging.getLogger(__name__)


class _Loaded:
    def __init__(self) -> None:
        self.index = Index()
        self.events: list[api.Event] = []
        self.revision = 0
        self.compacted_revision = 0


def _load(engine: sa.Engine) -> _Loaded:
    out = _Loaded()
    log = schema.log
    latest: dict[str, api.KV] = {}  # key → last row, tombstones included
    with engine.connect().execution_options(sqlite_deferred=True) as conn, conn.begin():
        seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'log'"))
        out.revision = int(seq.scalar() or 0)
        compacted = conn.execute(
            sa.select(schema.meta.c.value).where(schema.meta.c.name == schema.COMPACTED_REVISION)
        ).scalar()
        out.compacted_revision = int(compacted or 0)
        rows = conn.execute(
            sa.select(
                log.c.id, log.c.key, log.c.deleted, log.c.create_revision, log.c.value
            ).order_by(log.c.id)
        )
        for rid, key, deleted, create_revision, value in rows:
            kv = api.KV(key, rid, create_revision, bytes(value))
            prev = latest.get(key)
            prev_live = prev if prev is not None and key not in out.index.tombstones else None
            if deleted:
                out.index.remove(key, rid)
                event_type: api.EventType = "DELETED"
            else:
                out.index.put(kv)
                event_type = "MODIFIED" if prev_live is not None else "ADDED"
            latest[key] = kv
            if rid > out.compacted_revision:
                out.events.append(api.Event(event_type, kv, prev_live))
    return out


class Store:
    """The revisioned key/value store (see :mod:`microkube.store.api` for the contract)."""

    def __init__(
        self,
        db_path: Path,
        settings: StoreSettings,
        *,
        engine: sa.Engine,
        lock: _engine.ProcessLock,
        loaded: _Loaded,
    ) -> None:
        """Use :meth:`open`."""
        self.db_path = db_path
        self.settings = settings
        self._engine = engine
        self._lock = lock
        self._index = loaded.index
        self._hub = WatchHub()
        self._hub.load(loaded.events, loaded.compacted_revision)
        self._writer = Writer(engine, self._index, self._hub, settings)
        self._writer.revision = loaded.revision
        self._compactor = Compactor(self._writer, self._index, self._hub, settings)
        self._closed = False

    @classmethod
    async def open(cls, db_path: Path, settings: StoreSettings | None = None) -> Store:
        """Lock, migrate and load the database, then start the writer and the compactor."""
        settings = settings or StoreSettings()
        lock = _engine.ProcessLock(db_path)
        lock.acquire()
        engine = _engine.create_engine(db_path)
        try:
            await asyncio.to_thread(_engine.migrate, engine)
            loaded = await asyncio.to_thread(_load, engine)
        except BaseException:
            engine.dispose()
            lock.release()
            raise
        store = cls(db_path, settings, engine=engine, lock=lock, loaded=loaded)
        store._writer.start()
        store._compactor.start()
        _log.info(
            "store %s open: %d keys at revision %d (compacted %d)",
            db_path,
            len(store._index),
            loaded.revision,
            loaded.compacted_revision,
        )
        return store

    @property
    def engine(self) -> sa.Engine:
        """The shared SQLAlchemy engine, for other tables of the database (OCI registry)."""
        return self._engine

    @property
    def revision(self) -> int:
        return self._writer.revision

    @property
    def compacted_revision(self) -> int:
        return self._hub.compacted_revision

    def get(self, key: str) -> api.KV | None:
        return self._index.get(key)

    def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> tuple[int, list[api.KV], bool]:
        items, more = self._index.list(prefix, start_after=start_after, limit=limit)
        return self._writer.revision, items, more

    def count(self, prefix: str) -> int:
        return self._index.count(prefix)

    async def create(self, key: str, value: dict[str, Any]) -> api.KV:
        return await self._writer.submit("create", key, value, None)

    async def update(self, key: str, value: dict[str, Any], *, expected_revision: int) -> api.KV:
        return await self._writer.submit("update", key, value, expected_revision)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> api.KV:
        return await self._writer.submit("delete", key, None, expected_revision)

    def watch(self, prefix: str, from_revision: int) -> Watcher:
        return self._hub.watch(prefix, from_revision)

    async def compact(self) -> int:
        """Compact now (the background task does this every ``compact_interval``)."""
        return await self._compactor.compact()

    async def close(self) -> None:
        """Stop compaction, finish queued writes, end watches, release the database."""
        if self._closed:
            return
        self._closed = True
        await self._compactor.stop()
        await self._writer.stop()
        self._hub.end_all()
        self._engine.dispose()
        self._lock.release()
