"""In-memory view of Services, EndpointSlices and namespaces for the cluster DNS.

The resolver must answer in microseconds and never touch the store, so the DNS
server keeps this cache, fed by watches (:func:`follow`), with the indexes the
DNS spec needs: service by name, service by ClusterIP (PTR), ready endpoints by
service, and endpoint by IP (PTR of headless endpoints).  Indexes are rebuilt
per service on each event, which is O(endpoints of that service).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """One address of a service, as DNS sees it."""

    ip: str
    hostname: str
    ready: bool
    ports: tuple[tuple[str, int, str], ...]
    """(name, port, protocol) of the slice holding this endpoint."""


class ClusterCache:
    """Services and their endpoints, indexed for DNS lookups."""

    def __init__(self) -> None:
        #: Bumped on every change; the server drops its rendered answers when it moves.
        self.generation = 0
        self.services: dict[tuple[str, str], Obj] = {}
        self._slices: dict[tuple[str, str], Obj] = {}
        self._slices_by_service: dict[tuple[str, str], set[str]] = {}
        self.endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        self.by_cluster_ip: dict[str, tuple[str, str]] = {}
        self.by_endpoint_ip: dict[str, tuple[str, str, str]] = {}
        self.namespaces: set[str] = set()

    # --- updates ------------------------------------------------------------

    def apply(self, kind: str, etype: str, obj: Obj) -> None:
        """Apply one watch event (``kind`` "Service", "EndpointSlice" or "Namespace")."""
        self.generation += 1
        m = obj.get("metadata") or {}
        key = (m.get("namespace", ""), m.get("name", ""))
        if kind == "Service":
            self._apply_service(key, None if etype == "DELETED" else obj)
        elif kind == "EndpointSlice":
            self._apply_slice(key, None if etype == "DELETED" else obj)
        elif kind == "Namespace":
            if etype == "DELETED":
                self.namespaces.discard(key[1])
            else:
                self.namespaces.add(key[1])

    def _apply_service(self, key: tuple[str, str], svc: Obj | None) -> None:
        old = self.services.pop(key, None)
        if old is not None:
            for ip in _cluster_ips(old):
                if self.by_cluster_ip.get(ip) == key:
                    del self.by_cluster_ip[ip]
        if svc is not None:
            self.services[key] = svc
            for ip in _cluster_ips(svc):
                self.by_cluster_ip[ip] = key
        self._reindex(key)

    def _apply_slice(self, key: tuple[str, str], sl: Obj | None) -> None:
        old = self._slices.pop(key, None)
        if old is not None:
            svc = _slice_service(key[0], old)
            if svc is not None:
                self._slices_by_service.get(svc, set()).discard(key[1])
                self._reindex(svc)
        if sl is not None:
            svc = _slice_service(key[0], sl)
            self._slices[key] = sl
            if svc is not None:
                self._slices_by_service.setdefault(svc, set()).add(key[1])
                self._reindex(svc)

    def _reindex(self, svc_key: tuple[str, str]) -> None:
        ns, name = svc_key
        for ep in self.endpoints.pop(svc_key, []):
            if self.by_endpoint_ip.get(ep.ip, ("", "", ""))[:2] == svc_key:
                del self.by_endpoint_ip[ep.ip]
        eps: list[Endpoint] = []
        for slice_name in sorted(self._slices_by_service.get(svc_key, ())):
            sl = self._slices[(ns, slice_name)]
            if sl.get("addressType", "IPv4") != "IPv4":
                continue
            ports = tuple(
                (p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP")
                for p in sl.get("ports") or []
            )
            for e in sl.get("endpoints") or []:
                cond = e.get("conditions") or {}
                ready = cond.get("ready") is not False
                for ip in e.get("addresses") or []:
                    eps.append(Endpoint(ip, e.get("hostname") or "", ready, ports))
        if eps:
            self.endpoints[svc_key] = eps
        svc = self.services.get(svc_key)
        if svc is not None and _is_headless(svc):
            for ep in eps:
                if ep.ready:
                    self.by_endpoint_ip[ep.ip] = (ns, name, ep.hostname)

    def keys(self, kind: str) -> set[tuple[str, str]]:
        """(namespace, name) of the cached objects of ``kind``."""
        if kind == "Service":
            return set(self.services)
        if kind == "EndpointSlice":
            return set(self._slices)
        return {("", n) for n in self.namespaces}

    # --- queries ------------------------------------------------------------

    def ready_endpoints(self, namespace: str, name: str) -> list[Endpoint]:
        """Ready endpoints of a service, one per IP (first slice wins)."""
        seen: set[str] = set()
        out = []
        for ep in self.endpoints.get((namespace, name), []):
            if ep.ready and ep.ip not in seen:
                seen.add(ep.ip)
                out.append(ep)
        return out

    def has_namespace(self, namespace: str) -> bool:
        if namespace in self.namespaces:
            return True
        return any(ns == namespace for ns, _ in self.services)


def _is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def _cluster_ips(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip and ip != "None"]


def _slice_service(namespace: str, sl: Obj) -> tuple[str, str] | None:
    name = ((sl.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (namespace, name) if name else None


def _stub(key: tuple[str, str]) -> Obj:
    return {"metadata": {"namespace": key[0], "name": key[1]}}


async def follow(reg: Any, cache: ClusterCache, *, ready: asyncio.Event | None = None) -> None:
    """Feed ``cache`` from registry watches of services, slices and namespaces (forever)."""
    cat = reg.catalog
    kinds = [
        ("Service", cat.get("", "v1", "services")),
        ("EndpointSlice", cat.get("discovery.k8s.io", "v1", "endpointslices")),
        ("Namespace", cat.get("", "v1", "namespaces")),
    ]
    synced = [asyncio.Event() for _ in kinds]

    async def one(kind: str, rt: Any, done: asyncio.Event) -> None:
        while True:
            listed: set[tuple[str, str]] | None = set()
            try:
                async for etype, obj in reg.watch(rt, None, resource_version=""):
                    if etype == "INITIAL-END":
                        # A restarted watch re-lists: drop what was deleted meanwhile.
                        for key in cache.keys(kind) - (listed or set()):
                            cache.apply(kind, "DELETED", _stub(key))
                        listed = None
                        done.set()
                    elif etype in ("ADDED", "MODIFIED", "DELETED"):
                        if listed is not None:
                            m = obj.get("metadata") or {}
                            listed.add((m.get("namespace", ""), m.get("name", "")))
                        cache.apply(kind, etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - restart the watch
                log.exception("dns: %s watch failed; restarting", kind)
                await asyncio.sleep(1)

    tasks = [asyncio.create_task(one(k, rt, ev)) for (k, rt), ev in zip(kinds, synced, strict=True)]
    try:
        for ev in synced:
            await ev.wait()
        if ready is not None:
            ready.set()
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
