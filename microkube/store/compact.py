"""Background compaction: keep the log, the WAL and the file bounded.

kine compacts under one long lock and, when that fails, silently lets the
database and its WAL grow.  Here compaction is cut into small jobs that run in
the writer thread *between* write batches (:meth:`Writer.run_job`), so a
writer waits for at most one chunk (``CHUNK`` revisions, a few milliseconds):

1. ``target = revision - retain_revisions``; nothing to do if the log is
   already compacted that far.
2. For each chunk ``(lo, hi]`` up to the target, in one transaction: delete
   every row superseded by a row of the chunk (``id IN (SELECT prev_revision
   ...)``), delete the chunk's tombstones, and record ``hi`` as the compacted
   revision in ``meta``.  Rows above the compacted revision are never touched,
   so the watch window can always be rebuilt from the log at open.
3. After each chunk commits: trim the in-memory watch window (watches from
   below now get 410 Gone) and forget the tombstones just deleted.
4. Finally ``PRAGMA incremental_vacuum`` gives free pages back to the
   filesystem (in jobs of ``VACUUM_PAGES`` pages, again between batches) and ``PRAGMA wal_checkpoint(TRUNCATE)`` copies the WAL into the
   database and truncates it to zero bytes (the store's connection is the only
   reader, so the checkpoint cannot be starved).

A failing run is logged with its traceback and retried at the next interval;
the revision recorded in ``meta`` only moves with a committed chunk.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import sqlalchemy as sa

from microkube.settings import StoreSettings
from microkube.store import schema
from microkube.store.index import Index
from microkube.store.watch import WatchHub
from microkube.store.writer import Writer

_log = logging.getLogger(__name__)

CHUNK = 1000
"""Revisions compacted per transaction."""

_DELETE_SUPERSEDED = sa.text(
    "DELETE FROM log WHERE id IN "
    "(SELECT prev_revision FROM log WHERE id > :lo AND id <= :hi AND prev_revision != 0)"
)
_DELETE_TOMBSTONES = sa.text(
    "DELETE FROM log WHERE id > :lo AND id <= :hi AND deleted = 1 RETURNING key, id"
)
_RECORD = sa.text(
    "INSERT INTO meta (name, value) VALUES (:name, :value) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def _compact_chunk(conn: sa.Connection, lo: int, hi: int) -> list[tuple[str, int]]:
    with conn.begin():
        conn.execute(_DELETE_SUPERSEDED, {"lo": lo, "hi": hi})
        tombstones = [
            (str(k), int(i)) for k, i in conn.execute(_DELETE_TOMBSTONES, {"lo": lo, "hi": hi})
        ]
        conn.execute(_RECORD, {"name": schema.COMPACTED_REVISION, "value": str(hi)})
    return tombstones


VACUUM_PAGES = 2048
"""Free pages returned to the filesystem per job (8 MiB of 4 KiB pages)."""


def _vacuum_step(conn: sa.Connection) -> int:
    """Give up to VACUUM_PAGES free pages back; returns how many remain free."""
    raw = conn.connection.driver_connection
    assert raw is not None
    # executescript steps the pragma to completion; execute() would free one page.
    raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
    return int(raw.execute("PRAGMA freelist_count").fetchone()[0])


def _checkpoint(conn: sa.Connection) -> int:
    """Copy the WAL into the database and truncate it; returns 1 if it was busy."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return int(raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])


class Compactor:
    def __init__(
        self, writer: Writer, index: Index, hub: WatchHub, settings: StoreSettings
    ) -> None:
        self._writer = writer
        self._index = index
        self._hub = hub
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def compact(self) -> int:
        """Compact up to ``revision - retain_revisions``; returns the compacted revision."""
        async with self._lock:
            target = self._writer.revision - max(0, self._settings.retain_revisions)
            lo = self._hub.compacted_revision
            while lo < target:
                hi = min(lo + CHUNK, target)
                deleted = await self._writer.run_job(
                    functools.partial(_compact_chunk, lo=lo, hi=hi)
                )
                self._hub.trim(hi)
                for key, revision in deleted:
                    if self._index.tombstones.get(key) == revision:
                        del self._index.tombstones[key]
                lo = hi
            for _ in range(10_000):
                if await self._writer.run_job(_vacuum_step) == 0:
                    break
            if await self._writer.run_job(_checkpoint):
                _log.warning("WAL checkpoint could not complete (busy); retrying next compaction")
            return self._hub.compacted_revision

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="microkube-store-compactor")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.compact_interval)
            try:
                await self.compact()
            except Exception:
                _log.exception(
                    "store compaction failed; retrying in %ss", self._settings.compact_interval
                )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        async with self._lock:  # let a running compact() finish its chunk
            pass
