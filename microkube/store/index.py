"""The in-memory current state: a sorted map key → latest :class:`KV`.

This is the store's equivalent of apiserver's watch cache: ``get``, ``list``
and ``count`` are answered from here, synchronously, without touching SQLite.
Only the writer mutates it, and only after the transaction carrying the change
has committed, so readers never see an uncommitted write.

Keys live in a dict (O(1) ``get``) plus a sorted Python list searched with
:mod:`bisect`.  Prefix ranges are ``[prefix, successor(prefix))`` where the
successor increments the last code point, so ``list`` is O(log n + page) and
``count`` is O(log n).  Insert/remove into the list is a memmove: a few
microseconds at 100k keys, far below an fsync.

Deleted keys keep their tombstone revision in ``tombstones`` until compaction
removes the tombstone row, because a re-create must name it as its
``prev_revision`` (the unique ``(key, prev_revision)`` index in the database).
"""

from __future__ import annotations

import bisect

from microkube.store import api


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Index:
    def __init__(self) -> None:
        self._items: dict[str, api.KV] = {}
        self._keys: list[str] = []
        self.tombstones: dict[str, int] = {}
        """Deleted key → revision of its (not yet compacted) tombstone row."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> api.KV | None:
        return self._items.get(key)

    def put(self, kv: api.KV) -> None:
        if kv.key not in self._items:
            bisect.insort(self._keys, kv.key)
        self._items[kv.key] = kv
        self.tombstones.pop(kv.key, None)

    def remove(self, key: str, tombstone_revision: int) -> None:
        if self._items.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]
        self.tombstones[key] = tombstone_revision

    def _range(self, prefix: str) -> tuple[int, int]:
        lo = bisect.bisect_left(self._keys, prefix)
        end = prefix_end(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end, lo)
        return lo, hi

    def list(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> tuple[list[api.KV], bool]:
        lo, hi = self._range(prefix)
        if start_after is not None:
            lo = max(lo, bisect.bisect_right(self._keys, start_after, 0, hi))
        stop = hi if not limit or limit <= 0 else min(hi, lo + limit)
        return [self._items[k] for k in self._keys[lo:stop]], stop < hi

    def count(self, prefix: str) -> int:
        lo, hi = self._range(prefix)
        return hi - lo
