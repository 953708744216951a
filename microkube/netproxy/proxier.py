"""Watches Services and EndpointSlices and keeps the nft table in step.

Level-triggered like kube-proxy's ``syncProxyRules``: every event only updates
an in-memory copy of the objects and marks the proxier dirty; a single loop
then rebuilds the whole model and loads it if it changed.  Loads are paced
like kube-proxy's ``BoundedFrequencyRunner``: a change after a quiet period is
loaded after :data:`COALESCE` seconds, and two loads start at least
:data:`MIN_INTERVAL` apart.  A burst of endpoint changes thus becomes a few
transactions while a lone Service change reaches the kernel in milliseconds
(loads are partial, see :mod:`.rules`, so their cost does not grow with the
number of Services).  ``nft`` runs in a worker thread so the event loop never
blocks.  A failed load is retried after :data:`RETRY` seconds with a full
reload.  After each load the pod bridge's ports get hairpin mode (see
:mod:`.hairpin`) and stale UDP conntrack entries are deleted (see
:mod:`.conntrack`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from typing import Any

from microkube.netproxy import apply, conntrack, hairpin, model, rules

log = logging.getLogger(__name__)

COALESCE = 0.005
"""Seconds from the first change to a load when the last load is older than MIN_INTERVAL."""
MIN_INTERVAL = 0.03
"""Least seconds between the starts of two loads (a change waits at most this long)."""
RETRY = 1.0
"""Seconds before the first retry of a failed load; doubles up to :data:`MAX_RETRY`."""
MAX_RETRY = 30.0
HOST_REFRESH = 2.0
"""Seconds between re-checks of per-interface knobs (route_localnet) when idle."""


class Proxier:
    def __init__(self, reg: Any, applier: apply.Applier, *, settings: Any = None) -> None:
        self.reg = reg
        self.applier = applier
        self.settings = settings
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            "Service": {},
            "EndpointSlice": {},
        }
        self._dirty = asyncio.Event()
        self._loaded: list[model.ServicePort] | None = None
        #: What the kernel last got (unlike ``_loaded``, kept across failures).
        self._applied: list[model.ServicePort] = []
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

    def _load(self, ports: list[model.ServicePort]) -> None:
        self.applier.sync(ports)
        conntrack.cleanup(self._applied, ports)
        self._applied = ports
        if self.settings is not None:
            net = ipaddress.ip_network(self.settings.network.pod_cidr, strict=False)
            hairpin.enable_for_gateway(str(net.network_address + 1))

    async def run(self) -> None:
        cat = self.reg.catalog
        watches = [
            asyncio.create_task(self._watch("Service", cat.get("", "v1", "services"))),
            asyncio.create_task(
                self._watch("EndpointSlice", cat.get("discovery.k8s.io", "v1", "endpointslices"))
            ),
        ]
        failures = 0
        loop = asyncio.get_running_loop()
        last_load = -MIN_INTERVAL
        try:
            while True:
                try:
                    await asyncio.wait_for(self._dirty.wait(), HOST_REFRESH)
                except TimeoutError:
                    # The pod bridge is made with the first pod, which changes no
                    # Service: route_localnet must still reach it (API on loopback).
                    if self._loaded is not None:
                        await asyncio.to_thread(self.applier.refresh_host, self._loaded)
                    continue
                await asyncio.sleep(max(COALESCE, last_load + MIN_INTERVAL - loop.time()))
                self._dirty.clear()
                ports = model.build(
                    list(self._objects["Service"].values()),
                    list(self._objects["EndpointSlice"].values()),
                )
                if self.settings is not None:
                    ports = localize_api(ports, self.settings)
                if ports == self._loaded:
                    self.synced.set()
                    continue
                last_load = loop.time()
                try:
                    await asyncio.to_thread(self._load, ports)
                except Exception as exc:  # noqa: BLE001 - keep serving the old rules
                    failures += 1
                    delay = min(RETRY * 2 ** (failures - 1), MAX_RETRY)
                    log.log(
                        logging.ERROR if failures == 1 else logging.DEBUG,
                        "proxier: loading rules failed (retrying in %.0f s): %s",
                        delay,
                        exc,
                    )
                    self._loaded = None
                    asyncio.get_running_loop().call_later(delay, self._dirty.set)
                    continue
                if failures:
                    log.info("proxier: rules loaded after %d failed attempts", failures)
                failures = 0
                self._loaded = ports
                self.synced.set()
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


def localize_api(ports: list[model.ServicePort], settings: Any) -> list[model.ServicePort]:
    """Point the ``kubernetes`` Service at 127.0.0.1 when the API server listens there only.

    Its Endpoints carry the node address (Endpoints may not hold loopback
    addresses), which a loopback-bound API server does not answer on; DNAT to
    127.0.0.1 instead (with route_localnet, see :mod:`.apply`).
    """
    bind = settings.api.bind_address
    if not (bind.startswith("127.") or bind == "localhost"):
        return ports
    out = []
    for sp in ports:
        if (sp.namespace, sp.name) == ("default", "kubernetes"):
            backends = tuple(
                model.Backend(bind, b.port) for b in sp.backends if b.port == settings.api.port
            )
            sp = dataclasses.replace(sp, backends=backends or sp.backends)
        out.append(sp)
    return out


def config_for(settings: Any) -> rules.ProxyConfig:
    return rules.ProxyConfig(
        table=rules.table_name(settings.instance),
        localhost_nodeports=settings.network.localhost_nodeports,
    )


async def run(reg: Any, settings: Any) -> None:
    """Proxy until cancelled, then delete the table."""
    applier = apply.Applier(config_for(settings), localnet_cidrs=(settings.network.pod_cidr,))
    try:
        await Proxier(reg, applier, settings=settings).run()
    finally:
        try:
            await asyncio.shield(asyncio.to_thread(applier.close))
        except Exception as exc:  # noqa: BLE001
            log.warning("proxier: removing rules: %s", exc)
