"""The controller framework: informer cache → work queue → idempotent reconcile.

Mirrors the shape of every ``pkg/controller/*`` upstream::

    Informer(s) ──handlers──► WorkQueue of keys ──workers──► reconcile(key)
        ▲                                                        │
        └──────────── watch events of our own writes ◄── LocalClient writes

How to write a controller
-------------------------
1. Subclass :class:`Controller`, set ``name`` (used in logs, events and
   managedFields).
2. In ``__init__`` (after ``super().__init__``), get informers from
   ``self.informers.for_resource(group, plural)`` and register handlers that
   only compute keys and call ``self.enqueue(obj)`` / ``self.queue.add(key)``.
   Dependents usually map to their owner's key with :meth:`owner_key`;
   :meth:`enqueue_changes` and :meth:`enqueue_owner_changes` wire the usual pair.
3. Implement ``async def reconcile(self, key)``: read the *cache*
   (``informer.get(ns, name)``), compute the desired state, write through
   ``self.client`` (a :class:`~microkube.client.local.LocalClient`).  It must
   be idempotent and level-triggered: it may run any number of times for the
   same state.  Raising means "requeue with backoff" (5 ms doubling to
   1000 s); returning means success (the backoff is forgotten).  To look
   again later without failing, call ``self.queue.add_after(key, seconds)``.
4. Use ``self.now()`` (an injected clock) for every time decision, and
   :class:`Expectations` when the cache may lag your own creates/deletes.
5. Register the class in :mod:`microkube.controllers.manager`.

Testing: build the controller over a real Store + Registry, preload objects
through the registry, call ``factory.prime()`` (lists every informer once,
synchronously), ``await ctrl.reconcile(key)``, then assert on what the
registry holds.  Prime again between steps, since no watch runs.  Pass
``clock=`` to control time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from microkube import errors
from microkube.client.informer import Informer, InformerFactory, key_of, split_key
from microkube.client.local import LocalClient
from microkube.client.workqueue import ShutDown, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def fmt_time(t: datetime) -> str:
    """RFC 3339 seconds, as Kubernetes serialises metav1.Time."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Controller:
    """Base class: owns a work queue and ``workers`` tasks calling :meth:`reconcile`."""

    name = "controller"
    workers = 1

    def __init__(
        self,
        client: LocalClient,
        informers: InformerFactory,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.informers = informers
        self.now: Clock = clock or utcnow
        self.queue = WorkQueue()

    # --- queueing helpers -------------------------------------------------------

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_changes(self, informer: Informer) -> None:
        """Every add, update and delete of ``informer``'s objects queues that object."""
        informer.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)

    def enqueue_owner_changes(self, informer: Informer, kind: str) -> None:
        """Every add, update and delete of a dependent queues its controlling ``kind`` owner."""

        def owner(obj: Obj) -> None:
            key = self.owner_key(obj, kind)
            if key is not None:
                self.queue.add(key)

        informer.add_handler(owner, lambda old, new: owner(new), owner)

    @staticmethod
    def owner_key(obj: Obj, kind: str) -> str | None:
        """Key of ``obj``'s controlling owner if it is a ``kind``, else None."""
        m = obj.get("metadata", {})
        for ref in m.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind:
                ns = m.get("namespace")
                return f"{ns}/{ref['name']}" if ns else str(ref["name"])
        return None

    # --- the loop -----------------------------------------------------------------

    async def reconcile(self, key: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def process_one(self, key: str) -> None:
        """Reconcile ``key`` once with the queue's error handling (also for tests)."""
        try:
            await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except errors.Conflict as exc:
            log.debug("%s: %s: conflict, retrying: %s", self.name, key, exc)
            self.queue.add_rate_limited(key)
        except Exception as exc:  # noqa: BLE001 - requeue, as upstream's handleErr
            level = logging.WARNING if self.queue.num_requeues(key) < 5 else logging.DEBUG
            log.log(level, "%s: error syncing %r: %s", self.name, key, exc, exc_info=True)
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process_one(key)
            finally:
                self.queue.done(key)

    async def run(self) -> None:
        """Wait for the caches, then run the workers until cancelled."""
        await self.informers.wait_synced()
        workers = [
            asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
            for i in range(self.workers)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.queue.shutdown()


# --- expectations -------------------------------------------------------------------

EXPECTATIONS_TTL = 5 * 60.0


@dataclass
class _Expect:
    add: int
    delete: set[str]
    at: float


class Expectations:
    """What a controller still expects to see in its cache after its own writes.

    Mirrors ``controller.ControllerExpectations``/``UIDTrackingExpectations``:
    before creating N pods, ``expect_creations(key, N)``; each add event of an
    owned pod calls ``creation_observed(key)``.  Deletions are tracked by pod
    key so a graceful delete (update with deletionTimestamp) and the final
    DELETED event are counted once.  The owner syncs again only when
    :meth:`satisfied` (or after a 5 min TTL, in case an event was lost).
    """

    def __init__(
        self, *, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = time.monotonic
    ):
        self._by_key: dict[str, _Expect] = {}
        self.ttl = ttl
        self._clock = clock

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True
        if e.add <= 0 and not e.delete:
            return True
        return self._clock() - e.at > self.ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._by_key[key] = _Expect(n, set(), self._clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._by_key[key] = _Expect(0, set(pod_keys), self._clock())

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.add -= 1

    def lower_creations(self, key: str, n: int = 1) -> None:
        """A create failed: stop expecting it."""
        e = self._by_key.get(key)
        if e is not None:
            e.add -= n

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.delete.discard(pod_key)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


__all__ = [
    "Clock",
    "Controller",
    "Expectations",
    "fmt_time",
    "key_of",
    "parse_time",
    "split_key",
    "utcnow",
]
