"""Services and EndpointSlices reduced to what the service proxy programs.

Pure: raw API objects in, frozen :class:`ServicePort` values out, so rule
generation (:mod:`microkube.netproxy.rules`) only ever sees normalized data.

Mirrors kube-proxy's ``ServicePort``/``Endpoint`` change trackers:

* headless and ExternalName services get no rules;
* a slice contributes to a service port when its port has the same name and
  protocol; the endpoint port is the slice's port number (targetPort resolved);
* ready endpoints are used; when none is ready, serving+terminating ones are
  (kube-proxy's terminating-endpoint fallback), so rolling updates drain;
* the virtual addresses of a port are its ClusterIPs, ``externalIPs`` and the
  LoadBalancer ingress IPs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_SECONDS = 10800


@dataclass(frozen=True, order=True)
class Backend:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str
    """Lower case: "tcp", "udp" or "sctp"."""
    port: int
    addresses: tuple[str, ...]
    """ClusterIPs, external IPs and LoadBalancer ingress IPs."""
    node_port: int
    affinity_seconds: int
    """ClientIP session affinity timeout; 0 when affinity is off."""
    backends: tuple[Backend, ...]

    @property
    def id(self) -> str:
        """``ns/name/proto/port-name`` (the port number when unnamed)."""
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name or self.port}"


def _ipv4(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        try:
            if isinstance(v, str) and ipaddress.ip_address(v).version == 4:
                out.append(v)
        except ValueError:
            continue
    return out


def _backends(slices: list[dict[str, Any]], port_name: str, protocol: str) -> tuple[Backend, ...]:
    ready: set[Backend] = set()
    terminating: set[Backend] = set()
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        number = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                number = p.get("port")
        if not isinstance(number, int):
            continue
        for e in sl.get("endpoints") or []:
            cond = e.get("conditions") or {}
            for ip in _ipv4(e.get("addresses") or []):
                b = Backend(ip, number)
                if cond.get("ready") is not False:
                    ready.add(b)
                elif cond.get("serving") and cond.get("terminating"):
                    terminating.add(b)
    return tuple(sorted(ready or terminating))


def build(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> list[ServicePort]:
    """Every programmable service port, sorted by id."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sl in slices:
        m = sl.get("metadata") or {}
        svc = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            by_service.setdefault((m.get("namespace", ""), svc), []).append(sl)
    out = []
    for svc in services:
        m = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
        cluster_ips = _ipv4([ip for ip in ips if ip and ip != "None"])
        if not cluster_ips:
            continue
        ingress = [
            i.get("ip")
            for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ]
        extra = _ipv4(
            list(spec.get("externalIPs") or [])
            + (ingress if spec.get("type") == "LoadBalancer" else [])
        )
        addresses = tuple(dict.fromkeys(cluster_ips + extra))
        affinity = 0
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
        key = (m.get("namespace", ""), m.get("name", ""))
        for p in spec.get("ports") or []:
            protocol = p.get("protocol") or "TCP"
            if protocol not in ("TCP", "UDP", "SCTP") or not isinstance(p.get("port"), int):
                continue
            node_port = p.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else 0
            out.append(
                ServicePort(
                    namespace=key[0],
                    name=key[1],
                    port_name=p.get("name") or "",
                    protocol=protocol.lower(),
                    port=p["port"],
                    addresses=addresses,
                    node_port=int(node_port or 0),
                    affinity_seconds=affinity,
                    backends=_backends(by_service.get(key, []), p.get("name") or "", protocol),
                )
            )
    out.sort(key=lambda sp: sp.id)
    return out
