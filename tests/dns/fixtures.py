"""Cluster objects for DNS tests, fed into a ClusterCache."""

from __future__ import annotations

from typing import Any

from microkube.dns.cache import ClusterCache


def service(
    ns: str, name: str, cluster_ip: str, ports: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": ports or [], "type": "ClusterIP", **spec},
    }


def eslice(
    ns: str, svc: str, name: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def ep(ip: str, *, ready: bool = True, hostname: str = "") -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        e["hostname"] = hostname
    return e


def populated() -> ClusterCache:
    c = ClusterCache()
    c.apply("Namespace", "ADDED", {"metadata": {"name": "default"}})
    c.apply("Namespace", "ADDED", {"metadata": {"name": "empty"}})
    c.apply(
        "Service",
        "ADDED",
        service(
            "default",
            "web",
            "10.152.183.20",
            [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        ),
    )
    c.apply(
        "Service",
        "ADDED",
        service("default", "db", "None", [{"name": "pg", "port": 5432, "protocol": "TCP"}]),
    )
    c.apply(
        "EndpointSlice",
        "ADDED",
        eslice(
            "default",
            "db",
            "db-abc",
            [ep("10.1.0.7", hostname="db-0"), ep("10.1.0.8"), ep("10.1.0.9", ready=False)],
            [{"name": "pg", "port": 15432, "protocol": "TCP"}],
        ),
    )
    c.apply("Service", "ADDED", service("default", "empty-headless", "None"))
    c.apply(
        "Service",
        "ADDED",
        {
            "metadata": {"namespace": "default", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.org"},
        },
    )
    return c
