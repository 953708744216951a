"""Informers: a list+watch cache of one resource type, with event handlers.

Mirrors client-go's ``SharedIndexInformer`` in the small::

    list (rv=R) ─► replace cache, diff → on_add/on_update/on_delete
        └─► watch from R ─► apply each event to the cache ─► handlers
               └─ Gone (410) or stream end ─► list again (a "re-list")

The cache maps keys (``namespace/name``, or ``name`` when cluster-scoped; see
:func:`key_of`) to the latest object.  Handlers are plain synchronous
callables and must be cheap: controllers use them only to put keys on a
:class:`~microkube.client.workqueue.WorkQueue`.  Objects in the cache and
passed to handlers are shared: never mutate them, ``copy.deepcopy`` first.

:class:`InformerFactory` shares one informer per resource type between all
controllers of a process (client-go's ``SharedInformerFactory``), so each
kind is watched once.  Tests call :meth:`InformerFactory.prime` to fill every
cache with a single synchronous list instead of running watches.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from microkube import errors
from microkube.client.local import LocalClient
from microkube.objects.selectors import LabelSelector
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def key_of(obj: Obj) -> str:
    """``namespace/name`` (or ``name``), client-go's MetaNamespaceKeyFunc."""
    m = obj.get("metadata", {})
    ns = m.get("namespace")
    return f"{ns}/{m['name']}" if ns else str(m["name"])


def split_key(key: str) -> tuple[str, str]:
    """The inverse of :func:`key_of`: ``(namespace, name)``; namespace "" if none."""
    ns, _, name = key.rpartition("/")
    return ns, name


@dataclass
class Handler:
    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


class Informer:
    """A list+watch cache of one resource type (all namespaces)."""

    def __init__(self, client: LocalClient, rt: ResourceType, *, relist_backoff: float = 0.5):
        self.client = client
        self.rt = rt
        self.relist_backoff = relist_backoff
        self._cache: dict[str, Obj] = {}
        self._handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""

    # --- handlers -------------------------------------------------------------

    def add_handler(
        self,
        on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        """Register callbacks; objects already cached are replayed to ``on_add``."""
        h = Handler(on_add, on_update, on_delete)
        self._handlers.append(h)
        if on_add:
            for obj in builtins.list(self._cache.values()):
                on_add(obj)

    def _emit(self, kind: str, obj: Obj, old: Obj | None = None) -> None:
        for h in self._handlers:
            try:
                if kind == "add" and h.on_add:
                    h.on_add(obj)
                elif kind == "update" and h.on_update:
                    h.on_update(old or obj, obj)
                elif kind == "delete" and h.on_delete:
                    h.on_delete(obj)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
                log.exception("%s informer: handler failed", self.rt.plural)

    # --- cache reads ------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._cache.get(f"{namespace}/{name}" if namespace else name)

    def get_key(self, key: str) -> Obj | None:
        return self._cache.get(key)

    def list(
        self, namespace: str | None = None, selector: LabelSelector | None = None
    ) -> list[Obj]:
        out = []
        for obj in self._cache.values():
            m = obj["metadata"]
            if namespace is not None and m.get("namespace", "") != namespace:
                continue
            if selector is not None and not selector.matches(m.get("labels") or {}):
                continue
            out.append(obj)
        return out

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._cache)

    # --- list and watch ---------------------------------------------------------

    def relist(self) -> None:
        """List everything and reconcile the cache with it, emitting the differences."""
        result = self.client.list(self.rt)
        fresh = {key_of(o): o for o in result.items}
        for key, gone in builtins.list(self._cache.items()):
            if key not in fresh:
                del self._cache[key]
                self._emit("delete", gone)
        for key, obj in fresh.items():
            prev = self._cache.get(key)
            self._cache[key] = obj
            if prev is None:
                self._emit("add", obj)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("update", obj, prev)
        self.resource_version = result.resource_version
        self.synced.set()

    def apply(self, etype: str, obj: Obj) -> None:
        """Apply one watch event to the cache and tell the handlers."""
        key = key_of(obj)
        rv = obj.get("metadata", {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if etype == "DELETED":
            self._cache.pop(key, None)
            self._emit("delete", obj)
            return
        old = self._cache.get(key)
        self._cache[key] = obj
        if old is None:
            self._emit("add", obj)
        else:
            self._emit("update", obj, old)

    async def run(self) -> None:
        """List, then watch forever; re-list when the watch is Gone or ends."""
        while True:
            try:
                self.relist()
                async for etype, obj in self.client.watch(
                    self.rt, None, resource_version=self.resource_version
                ):
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        self.apply(etype, obj)
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except errors.Gone:
                log.info("%s informer: watch expired, re-listing", self.rt.plural)
            except Exception:  # noqa: BLE001 - keep the cache alive
                log.exception("%s informer failed; re-listing", self.rt.plural)
            await asyncio.sleep(self.relist_backoff)


class InformerFactory:
    """One shared informer per resource type; start them all with :meth:`start`."""

    def __init__(self, client: LocalClient):
        self.client = client
        self._informers: dict[tuple[str, str], Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def informer(self, rt: ResourceType) -> Informer:
        k = (rt.group, rt.plural)
        inf = self._informers.get(k)
        if inf is None:
            inf = Informer(self.client, rt)
            self._informers[k] = inf
            if self._tasks:  # already started: start late-comers too
                self._tasks.append(asyncio.create_task(inf.run(), name=f"informer-{rt.plural}"))
        return inf

    def for_resource(self, group: str, plural: str) -> Informer:
        return self.informer(self.client.resource(group, plural))

    def start(self) -> list[asyncio.Task[None]]:
        """Start every informer's list+watch loop; returns the new tasks."""
        new = [
            asyncio.create_task(inf.run(), name=f"informer-{inf.rt.plural}")
            for inf in self._informers.values()
        ]
        self._tasks.extend(new)
        return new

    async def wait_synced(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            for inf in builtins.list(self._informers.values()):
                await inf.synced.wait()

    def prime(self) -> None:
        """Tests: list every informer once (no watch), so caches mirror the store now."""
        for inf in self._informers.values():
            inf.relist()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
