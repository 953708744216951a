"""Objects every cluster has from its first start (idempotent on every start).

Mirrors the apiserver's bootstrap controllers: the namespaces ``default``,
``kube-system``, ``kube-public`` and ``kube-node-lease``, and the
``kubernetes`` Service in ``default`` whose ClusterIP is the first address of
the service CIDR.
"""

from __future__ import annotations

import ipaddress

from microkube import errors
from microkube.resources.registry import Registry
from microkube.settings import Settings

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure(registry: Registry, settings: Settings) -> None:
    cat = registry.catalog
    ns_rt = cat.get("", "v1", "namespaces")
    assert ns_rt is not None
    for ns in NAMESPACES:
        if registry.try_get(ns_rt, "", ns) is None:
            await registry.create(
                ns_rt, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
    svc_rt = cat.get("", "v1", "services")
    assert svc_rt is not None
    net = ipaddress.ip_network(settings.network.service_cidr, strict=False)
    ip = str(next(net.hosts()))
    if registry.try_get(svc_rt, "default", "kubernetes") is None:
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": ip,
                "ports": [
                    {
                        "name": "https",
                        "port": 443,
                        "protocol": "TCP",
                        "targetPort": settings.api.port,
                    }
                ],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        }
        try:
            await registry.create(svc_rt, "default", svc)
        except errors.AlreadyExists:
            pass
    if settings.registry.enabled:
        await _local_registry_hosting(registry, settings)


async def _local_registry_hosting(registry: Registry, settings: Settings) -> None:
    """KEP-1755: tell tools where the built-in registry is (as MicroK8s publishes it)."""
    cm_rt = registry.catalog.get("", "v1", "configmaps")
    assert cm_rt is not None
    host = settings.registry.host
    data = {
        "localRegistryHosting.v1": f'host: "{host}"\nhelp: "https://github.com/kubernetes/enhancements/tree/master/keps/sig-cluster-lifecycle/generic/1755-communicating-a-local-registry"\n'
    }
    current = registry.try_get(cm_rt, "kube-public", "local-registry-hosting")
    if current is None:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"}, "data": data}
        try:
            await registry.create(cm_rt, "kube-public", cm)
        except errors.AlreadyExists:
            pass
    elif current.get("data") != data:
        current["data"] = data
        await registry.update(cm_rt, "kube-public", "local-registry-hosting", current)

