"""Runs the cluster DNS inside microkube and publishes it as ``kube-system/kube-dns``.

Pods get ``nameserver <service CIDR + 10>`` (10.152.183.10, MicroK8s' address)
from the kubelet.  That ClusterIP is a selectorless ``kube-dns`` Service whose
Endpoints hold the pod network gateway, where this server listens on port 53;
the service proxy DNATs one to the other like any other Service, so there is no
special case in the data path.  The gateway address exists only once Podman has
created the bridge, so the sockets are bound with IP_FREEBIND.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
from typing import Any

from microkube import errors
from microkube.dns.cache import ClusterCache, follow
from microkube.dns.resolver import Resolver
from microkube.dns.server import DnsServer

log = logging.getLogger(__name__)

DNS_PORT = 53


def dns_address(settings: Any) -> str:
    """``network.dns_address``, else the pod network gateway (first address of the pod CIDR)."""
    if settings.network.dns_address:
        return str(settings.network.dns_address)
    net = ipaddress.ip_network(settings.network.pod_cidr, strict=False)
    return str(net.network_address + 1)


def dns_service_ip(settings: Any) -> str:
    net = ipaddress.ip_network(settings.network.service_cidr, strict=False)
    return str(net.network_address + 10)


async def ensure_service(reg: Any, settings: Any, address: str, port: int = DNS_PORT) -> None:
    """Create (or repair) the kube-dns Service and its Endpoints pointing at ``address``."""
    svc_rt = reg.catalog.get("", "v1", "services")
    ep_rt = reg.catalog.get("", "v1", "endpoints")
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    if reg.try_get(svc_rt, "kube-system", "kube-dns") is None:
        body: dict[str, Any] = {
            "metadata": {"name": "kube-dns", "labels": labels},
            "spec": {
                "clusterIP": dns_service_ip(settings),
                "ports": [dict(p, targetPort=port) for p in ports],
            },
        }
        try:
            await reg.create(svc_rt, "kube-system", body)
        except errors.AlreadyExists:
            pass
        except errors.ApiError as exc:  # the address is taken: take any
            log.warning(
                "kube-dns at %s: %s; allocating another ClusterIP", dns_service_ip(settings), exc
            )
            del body["spec"]["clusterIP"]
            await reg.create(svc_rt, "kube-system", body)
    subsets = [{"addresses": [{"ip": address}], "ports": [dict(p, port=port) for p in ports]}]

    def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
        if obj.get("subsets") == subsets:
            return None
        obj["subsets"] = subsets
        return obj

    if reg.try_get(ep_rt, "kube-system", "kube-dns") is None:
        try:
            await reg.create(
                ep_rt,
                "kube-system",
                {"metadata": {"name": "kube-dns", "labels": labels}, "subsets": subsets},
            )
            return
        except errors.AlreadyExists:
            pass
    await reg.guaranteed_update(ep_rt, "kube-system", "kube-dns", mutate)


async def run(
    reg: Any,
    settings: Any,
    *,
    host: str | None = None,
    port: int = DNS_PORT,
    started: asyncio.Event | None = None,
) -> None:
    """Serve cluster DNS until cancelled."""
    host = host or dns_address(settings)
    cache = ClusterCache()
    synced = asyncio.Event()
    feed = asyncio.create_task(follow(reg, cache, ready=synced), name="dns-cache")
    server: DnsServer | None = None
    try:
        await synced.wait()
        resolver = Resolver(
            cache,
            domain=settings.network.cluster_domain,
            reverse_cidrs=(settings.network.service_cidr, settings.network.pod_cidr),
        )
        server = DnsServer(resolver, host=host, port=port)
        for attempt in itertools.count():
            try:
                await server.start(freebind=True)
                break
            except OSError as exc:
                level = logging.WARNING if attempt == 0 else logging.DEBUG
                log.log(level, "dns: cannot listen on %s:%d (%s); retrying", host, port, exc)
                await asyncio.sleep(min(2.0 * (attempt + 1), 30.0))
        await ensure_service(reg, settings, host, server.port)
        if started is not None:
            started.set()
        await feed
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        if server is not None:
            await server.close()
