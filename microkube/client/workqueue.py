"""A de-duplicating, rate-limited queue of keys (client-go's ``workqueue``).

Semantics, exactly those controllers rely on upstream:

* a key is queued at most once, however many times it is added (*dirty* set);
* a key being processed is never handed to a second worker: adding it meanwhile
  marks it dirty, and :meth:`done` puts it back (so no event is lost and one
  key is never reconciled concurrently);
* :meth:`add_after` delays an add (timers on the event loop);
* :meth:`add_rate_limited` delays by a per-key exponential backoff, 5 ms
  doubling up to 1000 s (``DefaultControllerRateLimiter``'s item limiter;
  the overall token bucket is irrelevant in one process); :meth:`forget`
  resets it after a success.

Time comes from the running loop's clock, so tests may drive it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down."""


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timer_due: dict[str, float] = {}
        self._cond = asyncio.Condition()
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

    # --- adding ---------------------------------------------------------------

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._cond:
                self._cond.notify()

        try:
            asyncio.get_running_loop().create_task(notify())
        except RuntimeError:  # no loop (sync tests): get() polls the deque first anyway
            pass

    def add_after(self, key: str, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; the earliest pending delay wins."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if key in self._timers and self._timer_due[key] <= due:
            return
        if key in self._timers:
            self._timers[key].cancel()
        self._timer_due[key] = due
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self._timer_due.pop(key, None)
        self.add(key)

    def when(self, key: str) -> float:
        """The next backoff delay for ``key`` (and count the failure)."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self.base_delay * (2**n), self.max_delay))

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.when(key))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    # --- consuming --------------------------------------------------------------

    async def get(self) -> str:
        """Wait for a key and mark it processing; call :meth:`done` when finished."""
        async with self._cond:
            while not self._queue:
                if self._shutdown:
                    raise ShutDown
                await self._cond.wait()
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def pending(self) -> list[str]:
        """Keys waiting (tests)."""
        return list(self._queue)

    def delayed(self) -> dict[str, float]:
        """Keys waiting on a timer, with their due loop time (tests)."""
        return dict(self._timer_due)

    async def shutdown(self) -> None:
        self._shutdown = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self._timer_due.clear()
        async with self._cond:
            self._cond.notify_all()
