"""Watches Services and EndpointSlices and keeps the nft table in step.

Level-triggered like kube-proxy's ``syncProxyRules``: every event only updates
an in-memory copy of the objects and marks the proxier dirty; a single loop
then waits :data:`DEBOUNCE` seconds (so a burst of endpoint changes becomes one
transaction), rebuilds the whole model and loads it if it changed.  ``nft``
runs in a worker thread so the event loop never blocks.  A failed load is
retried after :data:`RETRY` seconds with a full reload.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from microkube.netproxy import apply, model, rules

log = logging.getLogger(__name__)

DEBOUNCE = 0.05
"""Seconds between the first change and the load (bounded latency ≤ 100 ms)."""
RETRY = 1.0


class Proxier:
    def __init__(self, reg: Any, applier: apply.Applier) -> None:
        self.reg = reg
        self.applier = applier
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            "Service": {},
            "EndpointSlice": {},
        }
        self._dirty = asyncio.Event()
        self._loaded: list[model.ServicePort] | None = None
        #: Set after each successful load (tests wait on it).
        self.synced = asyncio.Event()

    def _on(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        m = obj.get("metadata") or {}
        key = (m.get("namespace", ""), m.get("name", ""))
        if etype == "DELETED":
            self._objects[kind].pop(key, None)
        else:
            self._objects[kind][key] = obj
        self._dirty.set()

    async def _watch(self, kind: str, rt: Any) -> None:
        while True:
            try:
                fresh: dict[tuple[str, str], dict[str, Any]] = {}
                listing = True
                async for etype, obj in self.reg.watch(rt, None, resource_version=""):
                    if etype == "INITIAL-END":
                        # A restarted watch re-lists: forget objects deleted meanwhile.
                        self._objects[kind] = fresh
                        listing = False
                        self._dirty.set()
                    elif listing and etype == "ADDED":
                        m = obj.get("metadata") or {}
                        fresh[(m.get("namespace", ""), m.get("name", ""))] = obj
                    elif etype in ("ADDED", "MODIFIED", "DELETED"):
                        self._on(kind, etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - restart the watch
                log.exception("proxier: %s watch failed; restarting", kind)
                await asyncio.sleep(RETRY)

    async def run(self) -> None:
        cat = self.reg.catalog
        watches = [
            asyncio.create_task(self._watch("Service", cat.get("", "v1", "services"))),
            asyncio.create_task(
                self._watch("EndpointSlice", cat.get("discovery.k8s.io", "v1", "endpointslices"))
            ),
        ]
        try:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(DEBOUNCE)
                self._dirty.clear()
                ports = model.build(
                    list(self._objects["Service"].values()),
                    list(self._objects["EndpointSlice"].values()),
                )
                if ports == self._loaded:
                    self.synced.set()
                    continue
                try:
                    await asyncio.to_thread(self.applier.sync, ports)
                except Exception as exc:  # noqa: BLE001 - keep serving the old rules
                    log.error("proxier: loading rules failed: %s", exc)
                    self._loaded = None
                    asyncio.get_running_loop().call_later(RETRY, self._dirty.set)
                    continue
                self._loaded = ports
                self.synced.set()
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


def config_for(settings: Any) -> rules.ProxyConfig:
    return rules.ProxyConfig(
        table=rules.table_name(settings.instance),
        localhost_nodeports=bool(getattr(settings.network, "localhost_nodeports", True)),
    )


async def run(reg: Any, settings: Any) -> None:
    """Proxy until cancelled, then delete the table."""
    applier = apply.Applier(config_for(settings), state_dir=Path(settings.state_dir))
    try:
        await Proxier(reg, applier).run()
    finally:
        try:
            await asyncio.shield(asyncio.to_thread(applier.close))
        except Exception as exc:  # noqa: BLE001
            log.warning("proxier: removing rules: %s", exc)
