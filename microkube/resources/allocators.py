"""ClusterIP and NodePort allocation for Services.

The allocated values live in the Service objects themselves (the store is the
source of truth, so nothing can drift after a crash); in-flight reservations
cover the window between allocation and commit so two concurrent creates never
get the same address.  Mirrors the apiserver's allocator semantics: a
requested ``clusterIP``/``nodePort`` is honoured or refused with 422 naming
the field; released values return to the pool when a Service is deleted.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from microkube import errors
from microkube.settings import NetworkSettings


class ServiceAllocator:
    def __init__(self, registry: Any, network: NetworkSettings) -> None:
        self._registry = registry
        self.net = ipaddress.ip_network(network.service_cidr, strict=False)
        self.node_ports = network.node_port_range
        self._reserved_ips: set[str] = set()
        self._reserved_ports: set[int] = set()

    def _used(self, exclude_uid: str = "") -> tuple[set[str], set[int]]:
        rt = self._registry.catalog.get("", "v1", "services")
        ips: set[str] = set(self._reserved_ips)
        ports: set[int] = set(self._reserved_ports)
        for svc in self._registry.list(rt).items:
            if svc["metadata"].get("uid") == exclude_uid:
                continue
            spec = svc.get("spec") or {}
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                if ip and ip != "None":
                    ips.add(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    ports.add(int(p["nodePort"]))
        return ips, ports

    def allocate(self, svc: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        spec = svc.setdefault("spec", {})
        name = svc["metadata"].get("name", "")
        stype = spec.get("type", "ClusterIP")
        uid = (old or svc)["metadata"].get("uid", "")
        used_ips, used_ports = self._used(uid)
        causes = []
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        else:
            ip = spec.get("clusterIP")
            if not ip:
                ip = self._next_ip(used_ips)
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            elif ip != "None" and (old is None or (old.get("spec") or {}).get("clusterIP") != ip):
                try:
                    addr = ipaddress.ip_address(ip)
                except ValueError:
                    addr = None
                if (
                    addr is None
                    or addr not in self.net
                    or addr in (self.net.network_address, self.net.broadcast_address)
                ):
                    causes.append(
                        errors.invalid_value(
                            "spec.clusterIPs",
                            ip,
                            f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.net}",
                        )
                    )
                elif ip in used_ips:
                    causes.append(
                        errors.invalid_value(
                            "spec.clusterIPs",
                            ip,
                            f"failed to allocate IP {ip}: provided IP is already allocated",
                        )
                    )
            if spec.get("clusterIP") and spec.get("clusterIP") != "None":
                self._reserved_ips.add(spec["clusterIP"])
        lo, hi = self.node_ports
        if stype in ("NodePort", "LoadBalancer"):
            seen: set[int] = set()
            for i, p in enumerate(spec.get("ports") or []):
                np = p.get("nodePort")
                if np:
                    if not lo <= int(np) <= hi:
                        causes.append(
                            errors.invalid_value(
                                f"spec.ports[{i}].nodePort",
                                np,
                                f"provided port is not in the valid range. The range of valid ports is {lo}-{hi}",
                            )
                        )
                    elif int(np) in used_ports or int(np) in seen:
                        causes.append(
                            errors.invalid_value(
                                f"spec.ports[{i}].nodePort",
                                np,
                                "provided port is already allocated",
                            )
                        )
                    seen.add(int(np))
            for p in spec.get("ports") or []:
                if not p.get("nodePort"):
                    p["nodePort"] = self._next_port(used_ports | seen)
                    seen.add(p["nodePort"])
            self._reserved_ports |= seen
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
        if causes:
            raise errors.invalid("Service", name, causes)

    def _next_ip(self, used: set[str]) -> str:
        hosts = list(self.net.hosts())
        # The first address is the `kubernetes` Service's; allocate randomly like the apiserver.
        start = random.randrange(1, len(hosts)) if len(hosts) > 1 else 0
        for i in range(len(hosts)):
            cand = str(hosts[(start + i) % len(hosts)])
            if cand not in used and (cand != str(hosts[0])):
                return cand
        raise errors.InternalError("failed to allocate a serviceIP: range is full")

    def _next_port(self, used: set[int]) -> int:
        lo, hi = self.node_ports
        start = random.randint(lo, hi)
        for i in range(hi - lo + 1):
            cand = lo + (start - lo + i) % (hi - lo + 1)
            if cand not in used:
                return cand
        raise errors.InternalError("failed to allocate a nodePort: range is full")

    def committed(self, svc: dict[str, Any]) -> None:
        spec = svc.get("spec") or {}
        self._reserved_ips.discard(spec.get("clusterIP", ""))
        for p in spec.get("ports") or []:
            self._reserved_ports.discard(p.get("nodePort", 0))

    def release(self, svc: dict[str, Any]) -> None:
        self.committed(svc)
