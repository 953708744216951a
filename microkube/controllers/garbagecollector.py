"""Garbage collector: ownerReferences-driven cascading deletion.

Mirrors ``pkg/controller/garbagecollector`` without its graph builder: the
informer caches already hold every object, so the controller keeps only a
reverse index ``owner uid → dependents`` and works per object:

* **background** — a dependent whose owners are all gone is deleted (one
  dangling reference among live owners is just removed from the list);
* **foreground** — an owner with ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer gets its dependents deleted (themselves in
  foreground, so pods go before their ReplicaSet); once no dependent with
  ``blockOwnerDeletion`` is left, the finalizer is removed and the registry
  finishes the deletion;
* **orphan** — an owner with the ``orphan`` finalizer has its reference
  stripped from every dependent, then the finalizer is removed.

Owner existence is always re-checked against the registry by uid (not only
the cache) before deleting anything, like upstream's live lookup, so a lagging
cache can never cause a wrong cascade.

Work items are ``group|plural|namespace/name`` keys.  Every watchable,
deletable kind is watched; the catalog is re-scanned so CRDs join later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from microkube import errors
from microkube.client.informer import Informer, InformerFactory, key_of, split_key
from microkube.client.local import LocalClient
from microkube.controllers.base import Clock, Controller
from microkube.objects import meta
from microkube.resources.registry import FOREGROUND, ORPHAN
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_SKIP = {("", "events"), ("events.k8s.io", "events")}


class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    workers = 4

    def __init__(
        self,
        client: LocalClient,
        informers: InformerFactory,
        *,
        clock: Clock | None = None,
        rescan_interval: float = 30.0,
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.rescan_interval = rescan_interval
        self._watched: dict[tuple[str, str], Informer] = {}
        #: owner uid -> item keys of its dependents
        self._dependents: dict[str, set[str]] = {}
        #: item key -> owner uids it currently references
        self._owners_of: dict[str, set[str]] = {}
        #: uid -> item key, for every watched object
        self._by_uid: dict[str, str] = {}
        self.scan_catalog()

    # --- informers and the reverse index ------------------------------------------------

    def scan_catalog(self) -> None:
        for rt in self.client.registry.catalog:
            k = (rt.group, rt.plural)
            if k in self._watched or k in _SKIP:
                continue
            if not {"list", "watch", "delete"} <= set(rt.verbs):
                continue
            inf = self.informers.informer(rt)
            self._watched[k] = inf
            self._watch(inf, rt)

    def _watch(self, inf: Informer, rt: ResourceType) -> None:
        def on_add(o: Obj) -> None:
            self._changed(rt, o)

        def on_update(old: Obj, new: Obj) -> None:
            self._changed(rt, new)

        def on_delete(o: Obj) -> None:
            self._deleted(rt, o)

        inf.add_handler(on_add=on_add, on_update=on_update, on_delete=on_delete)

    @staticmethod
    def item(rt: ResourceType, obj: Obj) -> str:
        return f"{rt.group}|{rt.plural}|{key_of(obj)}"

    def _index(self, item: str, obj: Obj | None) -> None:
        new = set()
        if obj is not None:
            new = {r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid")}
        old = self._owners_of.pop(item, set())
        for uid in old - new:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(item)
                if not deps:
                    del self._dependents[uid]
        for uid in new:
            self._dependents.setdefault(uid, set()).add(item)
        if new:
            self._owners_of[item] = new

    def _changed(self, rt: ResourceType, obj: Obj) -> None:
        item = self.item(rt, obj)
        self._index(item, obj)
        m = obj["metadata"]
        if m.get("uid"):
            self._by_uid[m["uid"]] = item
        fins = m.get("finalizers") or []
        if m.get("ownerReferences") or (
            m.get("deletionTimestamp") and (FOREGROUND in fins or ORPHAN in fins)
        ):
            self.queue.add(item)

    def _deleted(self, rt: ResourceType, obj: Obj) -> None:
        item = self.item(rt, obj)
        self._index(item, None)
        self._by_uid.pop(obj["metadata"].get("uid", ""), None)
        for dep in self._dependents.get(obj["metadata"].get("uid", ""), set()):
            self.queue.add(dep)
        for uid in {r.get("uid") for r in obj["metadata"].get("ownerReferences") or []}:
            owner = self._by_uid.get(str(uid))
            if owner is not None:
                self.queue.add(owner)

    def dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        out = []
        for dep in list(self._dependents.get(uid, ())):
            rt, obj = self._lookup(dep)
            if rt is not None and obj is not None:
                out.append((rt, obj))
        return out

    def _lookup(self, item: str) -> tuple[ResourceType | None, Obj | None]:
        group, plural, key = item.split("|", 2)
        inf = self._watched.get((group, plural))
        if inf is None:
            return None, None
        ns, name = split_key(key)
        return inf.rt, self.client.try_get(inf.rt, ns, name)

    # --- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rt, obj = self._lookup(key)
        if rt is None or obj is None:
            return
        m = obj["metadata"]
        fins = m.get("finalizers") or []
        if m.get("deletionTimestamp") and ORPHAN in fins:
            await self._orphan(rt, obj)
            return
        if m.get("deletionTimestamp") and FOREGROUND in fins:
            await self._foreground(rt, obj)
            return
        if m.get("ownerReferences"):
            await self._check_owners(rt, obj)

    def _owner_state(self, ref: Obj, namespace: str) -> Obj | None:
        """The live owner named by ``ref`` if it exists with that uid, else None."""
        rt = self.client.resource_for(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            raise errors.ServiceUnavailable(f"unknown owner kind {ref.get('kind')}")
        owner = self.client.try_get(rt, namespace if rt.namespaced else "", ref.get("name", ""))
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner

    async def _check_owners(self, rt: ResourceType, obj: Obj) -> None:
        m = obj["metadata"]
        refs = m.get("ownerReferences") or []
        ns = m.get("namespace", "")
        live, dangling, waiting = [], [], []
        for ref in refs:
            owner = self._owner_state(ref, ns)
            if owner is None:
                dangling.append(ref["uid"])
            else:
                live.append(ref)
                ofins = owner["metadata"].get("finalizers") or []
                if meta.is_deleting(owner) and FOREGROUND in ofins:
                    waiting.append(ref)
        if not dangling and not waiting:
            return
        if not live:
            if not meta.is_deleting(obj):
                await self._delete(rt, obj, "Background")
            return
        if waiting and len(waiting) == len(live):
            # Every remaining owner waits on us: go in foreground ourselves.
            if not meta.is_deleting(obj):
                await self._delete(rt, obj, "Foreground")
            return
        if dangling:
            await self._strip(rt, obj, set(dangling))

    async def _delete(self, rt: ResourceType, obj: Obj, policy: str) -> None:
        m = obj["metadata"]
        try:
            await self.client.delete(
                rt, m.get("namespace", ""), m["name"], propagation_policy=policy, uid=m["uid"]
            )
        except (errors.NotFound, errors.Conflict):
            pass

    async def _strip(self, rt: ResourceType, obj: Obj, uids: set[str]) -> None:
        def fn(o: Obj) -> Obj | None:
            refs = o["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") not in uids]
            if len(kept) == len(refs):
                return None
            o["metadata"]["ownerReferences"] = kept
            if not kept:
                o["metadata"].pop("ownerReferences")
            return o

        m = obj["metadata"]
        try:
            await self.client.mutate(rt, m.get("namespace", ""), m["name"], fn)
        except errors.NotFound:
            pass

    async def _remove_finalizer(self, rt: ResourceType, obj: Obj, fin: str) -> None:
        def fn(o: Obj) -> Obj | None:
            fins = o["metadata"].get("finalizers") or []
            if fin not in fins:
                return None
            o["metadata"]["finalizers"] = [f for f in fins if f != fin]
            return o

        m = obj["metadata"]
        try:
            await self.client.mutate(rt, m.get("namespace", ""), m["name"], fn)
        except errors.NotFound:
            pass

    async def _orphan(self, rt: ResourceType, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for drt, dep in self.dependents(uid):
            await self._strip(drt, dep, {uid})
        await self._remove_finalizer(rt, owner, ORPHAN)

    async def _foreground(self, rt: ResourceType, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        blocking = 0
        for drt, dep in self.dependents(uid):
            ref = next(r for r in dep["metadata"]["ownerReferences"] if r.get("uid") == uid)
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not meta.is_deleting(dep):
                await self._delete(drt, dep, "Foreground")
        if blocking == 0:
            await self._remove_finalizer(rt, owner, FOREGROUND)

    async def run(self) -> None:
        async def rescan() -> None:
            while True:
                await asyncio.sleep(self.rescan_interval)
                self.scan_catalog()

        task = asyncio.create_task(rescan(), name="gc-rescan")
        try:
            await super().run()
        finally:
            task.cancel()
