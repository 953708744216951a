"""The store's public contract (implemented by :mod:`microkube.store.log`).

The store is a kine-style revisioned log that knows no kinds: keys are strings
(``/registry/<resource>/<ns>/<name>``), values are JSON objects.  A single
global, strictly increasing integer *revision* numbers every write; it is the
Kubernetes ``resourceVersion``.  Mirroring apiserver's ``APIObjectVersioner``,
the store writes ``metadata.resourceVersion`` (as a string) into every value it
persists or returns.

Reads (``get``/``list``) are served from an in-memory copy of the current state
(the apiserver's watch cache), so they are synchronous and never touch SQLite.
Writes are durable when they return: they are committed and fsynced, batched
with concurrent writes (group commit).  Watches replay from an in-memory window
of recent events and then follow live commits; a revision older than the
window raises :class:`microkube.errors.Gone`.

Open the implementation with ``store = await microkube.store.log.Store.open(
db_path, settings)`` and release it with ``await store.close()``;
``store.engine`` is the shared SQLAlchemy engine for other tables.

Errors (classes of :mod:`microkube.errors`, with plain messages naming the
key; the API layer re-raises them with Kubernetes wording): ``AlreadyExists``,
``NotFound``, ``Conflict`` (stale ``expected_revision``),
``RequestEntityTooLarge`` (encoded object above ``max_object_bytes``),
``Gone`` (watch below the compacted revision), ``ServiceUnavailable`` (write
after ``close()``), ``InternalError`` (the database failed; logged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class KV:
    """One stored object at one revision.

    ``raw`` is the exact JSON encoding of ``value`` (with resourceVersion set);
    ``value`` is a fresh dict the caller may mutate.
    """

    key: str
    revision: int  # mod revision == metadata.resourceVersion
    create_revision: int
    raw: bytes

    @property
    def value(self) -> dict[str, Any]:
        import json

        return json.loads(self.raw)


@dataclass(frozen=True)
class Event:
    type: EventType
    kv: KV  # for DELETED: the last value, with resourceVersion = the deletion revision
    prev: KV | None = None  # value before a MODIFIED/DELETED, when known


class Watch(Protocol):
    """An open watch: async-iterate for events; ``close()`` to stop early."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def close(self) -> None: ...


class StoreAPI(Protocol):
    @property
    def revision(self) -> int:
        """The latest committed revision."""

    @property
    def compacted_revision(self) -> int:
        """Watches/lists from below this revision raise Gone."""

    def get(self, key: str) -> KV | None: ...

    def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> tuple[int, list[KV], bool]:
        """Current objects under ``prefix``, sorted by key.

        Returns ``(revision, items, more)``; ``start_after`` is an exclusive key
        for pagination, ``more`` says whether items were left out by ``limit``.
        """

    def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: dict[str, Any]) -> KV:
        """Raises AlreadyExists if the key exists."""

    async def update(self, key: str, value: dict[str, Any], *, expected_revision: int) -> KV:
        """Raises NotFound if absent, Conflict if its revision is not ``expected_revision``."""

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        """Removes the key; returns the deleted object at the deletion revision."""

    def watch(self, prefix: str, from_revision: int) -> Watch:
        """Every change under ``prefix`` with revision > ``from_revision``, once, in order.

        Raises Gone ("too old resource version: R (C)") if ``from_revision`` <
        ``compacted_revision``; 0 is not special (it replays everything while
        nothing was compacted).  Matching is a plain key-prefix test.  The
        iterator *ends* without error when the watcher fell too far behind or
        the store closed: re-watch from the last revision seen.
        """

    async def close(self) -> None: ...
