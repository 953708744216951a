"""Fan-out of committed changes to watchers, with replay from a revision.

kine polls the database every second for new rows; we do not need to, because
every write goes through this process's single writer.  After each commit the
writer hands the batch's events to :meth:`WatchHub.publish`, which appends
them to an in-memory *window* and pushes each one to every matching watcher:
O(watchers) per event, no polling, no thread hop.

The window holds every event with revision > ``compacted_revision`` (it is
rebuilt from the log at open, and trimmed when compaction advances), so a
watch from revision R replays the window's events after R and then follows
live events.  A watch from below the window raises
:class:`microkube.errors.Gone` with apiserver's wording ("too old resource
version: R (C)"; mirrors the watch cache's ``ResourceExpired``), and the
client re-lists.

Each watcher buffers at most ``max_pending`` live events.  A watcher that
falls that far behind is *ended*: it still yields what it buffered (events stay
in order, none skipped), then its iterator stops, and the client re-watches
from the last revision it saw — exactly what happens to a slow apiserver
watcher.  ``close()`` stops a watcher at once.  Matching is by key prefix;
narrowing further (a single name, selectors) is the API layer's job.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Iterable

from microkube import errors
from microkube.store import api


def _revision(event: api.Event) -> int:
    return event.kv.revision


class Watcher:
    """One open watch (implements :class:`microkube.store.api.Watch`)."""

    def __init__(
        self,
        hub: WatchHub,
        prefix: str,
        from_revision: int,
        replay: Iterable[api.Event],
        max_pending: int,
    ) -> None:
        self.prefix = prefix
        self.from_revision = from_revision
        self._hub = hub
        self._buffer: deque[api.Event] = deque(replay)
        self._max_pending = max_pending
        # The replay is already in memory; only live events count against the bound.
        self._limit = max_pending + len(self._buffer)
        self._wake = asyncio.Event()
        self._closed = False  # stop now
        self._ended = False  # stop once the buffer is drained

    def push(self, event: api.Event) -> None:
        if self._ended:
            return
        if len(self._buffer) >= self._limit:
            self.end()
            return
        self._buffer.append(event)
        self._wake.set()

    def end(self) -> None:
        """Stop after the buffered events (too slow, or the store is closing)."""
        self._ended = True
        self._hub.discard(self)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self.end()

    @property
    def ended(self) -> bool:
        """No more events will arrive (overflow, close, or the store is closing)."""
        return self._ended

    def drain(self) -> list[api.Event]:
        """Take the buffered events without waiting (synchronous cache invalidation)."""
        out = list(self._buffer)
        self._buffer.clear()
        return out

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> api.Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                if self._limit > self._max_pending and len(self._buffer) <= self._max_pending:
                    self._limit = self._max_pending
                return self._buffer.popleft()
            if self._ended:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()


class WatchHub:
    def __init__(self, *, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self.compacted_revision = 0
        self._window: list[api.Event] = []
        self._watchers: set[Watcher] = set()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    @property
    def window_size(self) -> int:
        return len(self._window)

    def load(self, events: Iterable[api.Event], compacted_revision: int) -> None:
        """Set the window from the log at open (events after ``compacted_revision``)."""
        self.compacted_revision = compacted_revision
        self._window = [e for e in events if e.kv.revision > compacted_revision]

    def publish(self, events: list[api.Event]) -> None:
        """Record committed events (in revision order) and push them to watchers."""
        self._window.extend(events)
        for watcher in list(self._watchers):
            prefix, after = watcher.prefix, watcher.from_revision
            for event in events:
                if event.kv.revision > after and event.kv.key.startswith(prefix):
                    watcher.push(event)

    def watch(self, prefix: str, from_revision: int) -> Watcher:
        if from_revision < self.compacted_revision:
            raise errors.Gone(
                f"too old resource version: {from_revision} ({self.compacted_revision})"
            )
        start = bisect.bisect_right(self._window, from_revision, key=_revision)
        replay = [e for e in self._window[start:] if e.kv.key.startswith(prefix)]
        watcher = Watcher(self, prefix, from_revision, replay, self.max_pending)
        self._watchers.add(watcher)
        return watcher

    def discard(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def trim(self, compacted_revision: int) -> None:
        """Forget events at or below ``compacted_revision``: watches from there are Gone."""
        if compacted_revision <= self.compacted_revision:
            return
        self.compacted_revision = compacted_revision
        del self._window[: bisect.bisect_right(self._window, compacted_revision, key=_revision)]

    def end_all(self) -> None:
        for watcher in list(self._watchers):
            watcher.end()
