"""ClusterRole aggregation: write the aggregated rules into ``admin``/``edit``/``view``.

Mirrors ``pkg/controller/clusterroleaggregation``: a ClusterRole with an
``aggregationRule`` gets, as its ``rules``, the union of the rules of every
ClusterRole its selectors match, so ``kubectl get clusterrole view -o yaml``
and ``kubectl describe`` show what the role grants.

The authorizer (:mod:`microkube.auth.rbac`) does not depend on this: it
computes aggregation itself at evaluation time, so a role is effective the
moment it is created. This loop only keeps the stored objects truthful.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from microkube import errors
from microkube.auth import rbac
from microkube.resources.registry import Registry

log = logging.getLogger(__name__)
_MANAGER = "clusterrole-aggregation-controller"


async def sync_all(reg: Registry) -> int:
    """Rewrite every aggregated ClusterRole whose rules differ; returns how many changed."""
    rt = reg.catalog.get(rbac.RBAC, "v1", "clusterroles")
    assert rt is not None
    snap = rbac.Snapshot(reg)
    changed = 0
    for name, role in list(snap.cluster_roles.items()):
        if not role.get("aggregationRule"):
            continue
        want = snap.cluster_role_rules(name)

        def mutate(obj: dict[str, Any], want: list[dict[str, Any]] = want) -> dict[str, Any] | None:
            if (obj.get("rules") or []) == want:
                return None
            obj["rules"] = want
            return obj

        before = reg.get(rt, "", name).get("rules") or []
        if before == want:
            continue
        try:
            await reg.guaranteed_update(rt, "", name, mutate, field_manager=_MANAGER)
            changed += 1
        except errors.NotFound:
            continue
    return changed


async def run(reg: Registry) -> None:
    """Watch ClusterRoles; re-aggregate after every change (the controller task)."""
    rt = reg.catalog.get(rbac.RBAC, "v1", "clusterroles")
    assert rt is not None
    while True:
        try:
            async for etype, _ in reg.watch(rt, None, resource_version=""):
                if etype in ("ADDED", "MODIFIED", "DELETED", "INITIAL-END"):
                    await sync_all(reg)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep the controller alive
            log.exception("clusterrole aggregation failed; restarting")
            await asyncio.sleep(1)
