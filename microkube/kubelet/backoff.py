"""Per-key exponential back-off with an injected clock (client-go ``flowcontrol.Backoff``).

The kubelet keeps two: container restarts (``CrashLoopBackOff``) and image
pulls (``ImagePullBackOff``), both 10 s doubling to 5 min.  Semantics copied
from upstream so that the timing users see is the same:

* :meth:`Backoff.next` starts an entry at ``initial`` or doubles it (capped),
  and records *now* as the entry's last update; an entry whose last update
  is older than ``2 × cap`` before the event starts over;
* :meth:`Backoff.in_backoff_since` (restarts): still waiting while
  ``now − event_time < delay`` (event_time = the container's finishedAt);
* :meth:`Backoff.in_backoff_since_update` (pulls): while
  ``now − last_update < delay``.

Hence a crashing container restarts at once after its first exit, then
10 s, 20 s, 40 s … after each later exit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class _Entry:
    delay: float
    last_update: datetime


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole seconds: ``10s``, ``1m20s``, ``5m0s``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


class Backoff:
    def __init__(
        self, clock: Callable[[], datetime], *, initial: float = 10.0, cap: float = 300.0
    ) -> None:
        self.clock = clock
        self.initial = initial
        self.cap = cap
        self._entries: dict[str, _Entry] = {}

    def _expired(self, event_time: datetime, entry: _Entry) -> bool:
        return event_time - entry.last_update > timedelta(seconds=2 * self.cap)

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str, event_time: datetime) -> None:
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry):
            entry = _Entry(self.initial, self.clock())
        else:
            entry = _Entry(min(entry.delay * 2, self.cap), self.clock())
        self._entries[key] = entry

    def in_backoff_since(self, key: str, event_time: datetime) -> bool:
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry):
            return False
        return self.clock() - event_time < timedelta(seconds=entry.delay)

    def in_backoff_since_update(self, key: str) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return False
        return self.clock() - entry.last_update < timedelta(seconds=entry.delay)

    def remaining(self, key: str, since: datetime | None = None) -> float:
        """Seconds until the back-off of ``key`` (measured from ``since``) ends."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        start = since or entry.last_update
        left = start + timedelta(seconds=entry.delay) - self.clock()
        return max(0.0, left.total_seconds())

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
