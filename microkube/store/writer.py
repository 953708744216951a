"""The single writer: group commit of queued writes, in one worker thread.

Data flow of one write::

    create/update/delete ──► queue ──► writer task (event loop)
                                        │ take ≤ max_batch ops
                                        │ validate each against memory + earlier ops
                                        │ assign consecutive revisions, encode JSON
                                        ▼
                              worker thread: BEGIN IMMEDIATE; INSERT rows; COMMIT (fsync)
                                        │
                                        ▼
                    update memory ──► publish watch events ──► resolve futures

Why this shape:

* **One writer** means validation against memory is exact: nothing else can
  change a key between the check and the commit, and revisions are assigned
  before the insert (explicit ids), so the stored JSON already carries its own
  ``resourceVersion``.  The unique ``(key, prev_revision)`` index still guards
  the database should that reasoning ever be wrong.
* **Group commit**: while one transaction fsyncs, new writes queue up and go
  into the next transaction together, so N concurrent writers cost about one
  fsync per batch instead of N.
* **The thread** does all SQLite work (also compaction jobs, via
  :meth:`Writer.run_job`), so the event loop never waits on an fsync and every
  database statement of the store is serialised on one connection.
* **Memory changes only after COMMIT**: a reader never sees a write that could
  still roll back.  If a batch fails to commit, its ops are retried one by
  one, so one bad op cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

from microkube import errors
from microkube.settings import StoreSettings
from microkube.store import api, schema
from microkube.store.index import Index
from microkube.store.watch import WatchHub

_log = logging.getLogger(__name__)
T = TypeVar("T")

Verb = Literal["create", "update", "delete"]


@dataclass
class _Op:
    verb: Verb
    key: str
    value: dict[str, Any] | None
    expected_revision: int | None
    future: asyncio.Future[api.KV] = field(repr=False)


@dataclass
class _Planned:
    op: _Op
    row: tuple[Any, ...] | None = None
    event: api.Event | None = None
    error: errors.ApiError | None = None


_COLUMNS = ("id", "key", "created", "deleted", "create_revision", "prev_revision", "value")
_INSERT = (
    f"INSERT INTO {schema.log.name} ({', '.join(schema.log.c[c].name for c in _COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


def encode(value: dict[str, Any], revision: int) -> bytes:
    """JSON of ``value`` with ``metadata.resourceVersion`` = ``revision`` (caller's dict untouched)."""
    stamped = dict(value)
    stamped["metadata"] = {**(value.get("metadata") or {}), "resourceVersion": str(revision)}
    return json.dumps(stamped, separators=(",", ":"), ensure_ascii=False).encode()


class Writer:
    def __init__(
        self, engine: sa.Engine, index: Index, hub: WatchHub, settings: StoreSettings
    ) -> None:
        self.revision = 0
        self._engine = engine
        self._index = index
        self._hub = hub
        self._settings = settings
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="microkube-store")
        self._conn: sa.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the worker thread -------------------------------------------------

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    async def run_job(self, job: Callable[[sa.Connection], T]) -> T:
        """Run ``job(connection)`` in the writer thread, between two batches."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: job(self._connection()))

    @staticmethod
    def _insert(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        # The hot path talks to the DBAPI connection directly: SQLAlchemy's
        # per-transaction bookkeeping cost about as much as the fsync itself
        # (bench/bench_store.py).  The SQL is derived from the Core table.
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("BEGIN IMMEDIATE")
        try:
            raw.executemany(_INSERT, rows)
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:  # a failed COMMIT may already have rolled back
                raw.execute("ROLLBACK")
            raise

    # -- the writer task ---------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="microkube-store-writer")

    async def submit(
        self,
        verb: Verb,
        key: str,
        value: dict[str, Any] | None,
        expected_revision: int | None,
    ) -> api.KV:
        if self._stopping:
            raise errors.ServiceUnavailable("the store is closed")
        future: asyncio.Future[api.KV] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(verb, key, value, expected_revision, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            try:
                await self._process(batch)
            except Exception as exc:  # a bug: never leave a caller hanging
                _log.exception("store writer failed a batch of %d writes", len(batch))
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(errors.InternalError(f"store write failed: {exc}"))

    @property
    def _max_batch(self) -> int:
        return max(1, self._settings.max_batch)

    async def _process(self, ops: list[_Op]) -> None:
        plans = self._plan([op for op in ops if not op.future.done()])
        rows = [p.row for p in plans if p.row is not None]
        if rows:
            try:
                await self.run_job(lambda conn: self._insert(conn, rows))
            except Exception as exc:
                if len(plans) > 1:
                    _log.warning(
                        "batch of %d writes failed (%s); retrying one by one", len(plans), exc
                    )
                    for plan in plans:
                        await self._process([plan.op])
                    return
                error: errors.ApiError
                if isinstance(exc, sqlite3.IntegrityError | sa.exc.IntegrityError):
                    error = errors.Conflict(f"concurrent write to {plans[0].op.key}")
                else:
                    _log.error("store write to %s failed: %s", plans[0].op.key, exc)
                    error = errors.InternalError(f"store write failed: {exc}")
                if not plans[0].op.future.done():
                    plans[0].op.future.set_exception(error)
                return
        self._apply(plans)

    def _plan(self, ops: list[_Op]) -> list[_Planned]:
        """Validate ops in order against memory plus the batch's earlier ops."""
        current: dict[str, api.KV | None] = {}
        tombstones: dict[str, int] = {}
        revision = self.revision
        plans: list[_Planned] = []
        for op in ops:
            plan = _Planned(op)
            plans.append(plan)
            cur = current[op.key] if op.key in current else self._index.get(op.key)
            if op.verb == "create":
                if cur is not None:
                    plan.error = errors.AlreadyExists(f"{op.key} already exists")
                    continue
            elif cur is None:
                plan.error = errors.NotFound(f"{op.key} not found")
                continue
            elif op.expected_revision is not None and cur.revision != op.expected_revision:
                plan.error = errors.Conflict(
                    f"{op.key} is at revision {cur.revision}, not {op.expected_revision}"
                )
                continue
            source = op.value if op.verb != "delete" else json.loads(cur.raw)  # type: ignore[union-attr]
            raw = encode(source or {}, revision + 1)
            if len(raw) > self._settings.max_object_bytes:
                plan.error = errors.RequestEntityTooLarge(
                    f"{op.key}: object of {len(raw)} bytes exceeds {self._settings.max_object_bytes}"
                )
                continue
            revision += 1
            if cur is None:  # create
                prev = tombstones.get(op.key, self._index.tombstones.get(op.key, 0))
                kv = api.KV(op.key, revision, revision, raw)
                plan.event = api.Event("ADDED", kv)
            else:
                prev = cur.revision
                kv = api.KV(op.key, revision, cur.create_revision, raw)
                plan.event = api.Event("DELETED" if op.verb == "delete" else "MODIFIED", kv, cur)
            plan.row = (  # in _COLUMNS order
                revision,
                op.key,
                int(op.verb == "create"),
                int(op.verb == "delete"),
                kv.create_revision,
                prev,
                raw,
            )
            if op.verb == "delete":
                current[op.key] = None
                tombstones[op.key] = revision
            else:
                current[op.key] = kv
        return plans

    def _apply(self, plans: list[_Planned]) -> None:
        """After COMMIT: memory, then watchers, then callers."""
        events = [p.event for p in plans if p.event is not None]
        for event in events:
            if event.type == "DELETED":
                self._index.remove(event.kv.key, event.kv.revision)
            else:
                self._index.put(event.kv)
        if events:
            self.revision = events[-1].kv.revision
            self._hub.publish(events)
        for plan in plans:
            if plan.op.future.done():
                continue
            if plan.error is not None:
                plan.op.future.set_exception(plan.error)
            elif plan.event is not None:
                plan.op.future.set_result(plan.event.kv)

    async def stop(self) -> None:
        """Finish the queued writes, then release the connection and the thread."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self.run_job(lambda conn: conn.close())
            self._conn = None
        self._executor.shutdown(wait=True)
