"""Namespace lifecycle: deleting a namespace removes everything in it, then the namespace.

Mirrors ``pkg/controller/namespace``: when a namespace has a
deletionTimestamp, every namespaced object in it is deleted (background
propagation), the controller waits until none is left, then clears the
``kubernetes`` finalizer so the namespace goes away.  It never hangs in
Terminating: objects whose own finalizers block them are reported in the
namespace's conditions, exactly like upstream's NamespaceFinalizersRemaining.

Event-driven like the other controllers::

    namespace events ──► queue(name) ──► sync ── content left? ──► add_after(estimate)
    pod deleted in a terminating namespace ──► queue(name)

Pods are what a namespace usually waits for (graceful termination by the
kubelet), so their deletion wakes the namespace at once; anything else left
(objects held by other finalizers) is looked at again after an estimate, as
upstream's ``ResourcesRemainingError`` does (its ``estimate/2 + 1`` seconds,
here at most :data:`RECHECK` seconds).
"""

from __future__ import annotations

import logging
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.base import Clock, Controller
from microkube.objects import meta
from microkube.resources.registry import DeleteOptions, Registry

log = logging.getLogger(__name__)


async def sync(reg: Registry, name: str) -> bool:
    """Advance the deletion of namespace ``name``; True when it is gone or not deleting."""
    ns_rt = reg.catalog.get("", "v1", "namespaces")
    assert ns_rt is not None
    ns = reg.try_get(ns_rt, "", name)
    if ns is None or not meta.is_deleting(ns):
        return True
    remaining = 0
    blocked: list[str] = []
    for rt in list(reg.catalog):
        if not rt.namespaced or not {"list", "delete"} <= set(rt.verbs):
            continue  # nothing stored to delete (metrics, reviews)
        if rt.group == "events.k8s.io":
            continue
        for obj in reg.list(rt, name).items:
            remaining += 1
            if meta.is_deleting(obj):
                if obj["metadata"].get("finalizers"):
                    blocked.extend(obj["metadata"]["finalizers"])
                continue
            try:
                await reg.delete(
                    rt,
                    name,
                    obj["metadata"]["name"],
                    DeleteOptions(propagation_policy="Background"),
                )
            except errors.NotFound:
                pass
            except errors.ApiError as exc:
                log.warning(
                    "namespace %s: deleting %s %s: %s",
                    name,
                    rt.plural,
                    obj["metadata"]["name"],
                    exc,
                )
    if remaining:
        return False

    def clear(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("spec", {})["finalizers"] = [
            f for f in obj["spec"].get("finalizers", []) if f != "kubernetes"
        ]
        return obj

    try:
        await reg.finalize_namespace(name, clear)
    except (errors.NotFound, errors.Conflict):
        return False
    return True


#: Longest wait before looking again at a namespace whose content is not gone yet.
RECHECK = 1.0


class NamespaceController(Controller):
    name = "namespace-controller"

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.ns_informer = informers.informer(client.resource("", "namespaces"))
        self.ns_informer.add_handler(
            on_add=self._namespace, on_update=lambda old, new: self._namespace(new)
        )
        informers.informer(client.resource("", "pods")).add_handler(on_delete=self._pod_gone)

    def _namespace(self, ns: dict[str, Any]) -> None:
        if meta.is_deleting(ns):
            self.queue.add(ns["metadata"]["name"])

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"].get("namespace", "")
        ns = self.ns_informer.get("", name)
        if ns is not None and meta.is_deleting(ns):
            self.queue.add(name)

    async def reconcile(self, key: str) -> None:
        if not await sync(self.client.registry, key):
            self.queue.add_after(key, RECHECK)
