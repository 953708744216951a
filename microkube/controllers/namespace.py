"""Namespace lifecycle: deleting a namespace removes everything in it, then the namespace.

Mirrors ``pkg/controller/namespace/deletion``: when a namespace has a
deletionTimestamp, every namespaced object in it is deleted (background
propagation), the controller waits until none is left, then clears the
``kubernetes`` finalizer so the namespace goes away.  It never hangs in
Terminating: objects whose own finalizers block them are reported in the
namespace's conditions, exactly like upstream's NamespaceFinalizersRemaining.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from microkube import errors
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
        if not rt.namespaced or "list" not in rt.verbs or (rt.group == "events.k8s.io"):
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


async def run(reg: Registry) -> None:
    """Watch namespaces; keep syncing the terminating ones until they are gone."""
    ns_rt = reg.catalog.get("", "v1", "namespaces")
    assert ns_rt is not None
    pending: set[str] = set()
    while True:
        try:
            async for etype, obj in reg.watch(ns_rt, None, resource_version=""):
                if etype in ("ADDED", "MODIFIED") and meta.is_deleting(obj):
                    pending.add(obj["metadata"]["name"])
                for name in list(pending):
                    if await sync(reg, name):
                        pending.discard(name)
                if pending:
                    # Poll while something terminates: dependents disappear asynchronously.
                    await _drain(reg, pending)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("namespace controller failed; restarting")
            await asyncio.sleep(1)


async def _drain(reg: Registry, pending: set[str]) -> None:
    for _ in range(600):
        for name in list(pending):
            if await sync(reg, name):
                pending.discard(name)
        if not pending:
            return
        await asyncio.sleep(0.2)
