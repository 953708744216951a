"""A ``default`` ServiceAccount in every namespace (mirrors the serviceaccounts controller)."""

from __future__ import annotations

import asyncio
import logging

from microkube import errors
from microkube.objects import meta
from microkube.resources.registry import Registry

log = logging.getLogger(__name__)


async def ensure_default(reg: Registry, namespace: str) -> None:
    sa_rt = reg.catalog.get("", "v1", "serviceaccounts")
    assert sa_rt is not None
    if reg.try_get(sa_rt, namespace, "default") is not None:
        return
    try:
        await reg.create(
            sa_rt,
            namespace,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )
    except (errors.AlreadyExists, errors.Forbidden, errors.NotFound):
        pass


async def run(reg: Registry) -> None:
    ns_rt = reg.catalog.get("", "v1", "namespaces")
    sa_rt = reg.catalog.get("", "v1", "serviceaccounts")
    assert ns_rt is not None and sa_rt is not None
    while True:
        try:
            async for etype, obj in reg.watch(ns_rt, None, resource_version=""):
                if etype in ("ADDED", "MODIFIED") and not meta.is_deleting(obj):
                    await ensure_default(reg, obj["metadata"]["name"])
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("serviceaccount controller failed; restarting")
            await asyncio.sleep(1)
