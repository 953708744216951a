"""Wiring of the node side: runtime, pod network, Node heartbeat and the kubelet.

Called by :mod:`microkube.components` at start-up::

    PodmanService (private `podman system service`, unless a socket is given)
        └─► PodmanRuntime ─► ensure_network("<instance>-pods", pod_cidr)
    --runtime fake ─► FakeRuntime
    NodeAgent (Node + Lease) ─┐
    Kubelet (sync loop) ──────┼─► tasks on the Cluster; closers stop the service
    StatsCollector ───────────┘   (usage for metrics.k8s.io: cgroups, or synthesized when fake)

Shutdown stops the Podman service but not the containers: they keep running
across microkube restarts and are adopted at the next start (``microkube
reset`` removes them, see :func:`microkube.kubelet.podman.cleanup_host`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from microkube.kubelet import cgroups, containerspec, node, stats
from microkube.kubelet import runtime as rt
from microkube.kubelet.kubelet import Kubelet

log = logging.getLogger(__name__)


def pod_network(settings: Any) -> tuple[str, str, str]:
    """(name, cidr, gateway) of the instance's Podman pod network."""
    net = ipaddress.ip_network(settings.network.pod_cidr, strict=False)
    return f"{settings.instance}-pods", str(net), str(net.network_address + 1)


def _registry_trust(settings: Any) -> dict[str, Any]:
    """How the kubelet's Podman reaches the built-in registry (address, CA, credentials)."""
    from microkube.oci import access

    reg = settings.registry
    ca = (settings.pki_dir / "ca.crt").read_bytes() if reg.enabled and reg.tls else None
    auth = access.credentials(reg) if reg.enabled else None
    return {"registry": reg.host, "registry_ca": ca, "registry_auth": auth}


async def build_runtime(settings: Any) -> tuple[rt.ContainerRuntime, Any]:
    """The runtime and the PodmanService to close (None for fake/external)."""
    if settings.kubelet.runtime == "fake":
        from microkube.kubelet.fake import FakeRuntime

        return FakeRuntime(settings.instance, default_cidr=settings.network.pod_cidr), None
    from microkube.kubelet.podman import PodmanRuntime
    from microkube.kubelet.podman_service import PodmanService

    service = PodmanService(
        settings.state_dir,
        settings.instance,
        pod_cidr=settings.network.pod_cidr,
        **_registry_trust(settings),
        existing_socket=settings.kubelet.podman_socket or None,
    )
    await asyncio.to_thread(service.start)
    return PodmanRuntime(service.socket_path, settings.instance), service


async def start(cluster: Any) -> None:
    """Start Node heartbeat and kubelet tasks on ``cluster`` (an :class:`app.Cluster`)."""
    settings = cluster.settings
    runtime, service = await build_runtime(settings)
    name, cidr, gateway = pod_network(settings)
    try:
        await runtime.ensure_network(name, cidr, gateway)
        version = await runtime.version()
    except Exception:
        await runtime.close()
        if service is not None:
            await asyncio.to_thread(service.close)
        raise
    ip = node.host_ip()
    agent = node.NodeAgent(
        cluster.registry,
        settings.kubelet.node_name,
        state_dir=settings.state_dir,
        max_pods=settings.kubelet.max_pods,
        runtime_version=f"podman://{version}" if version != "fake" else "fake://0.1.0",
        ip=ip,
    )
    await agent.register()
    kubelet = Kubelet(
        cluster.registry,
        runtime,
        node_name=settings.kubelet.node_name,
        state_dir=settings.state_dir,
        network=name,
        network_cidr=(cidr, gateway),
        dns_ip=containerspec.dns_service_ip(settings.network.service_cidr),
        cluster_domain=settings.network.cluster_domain,
        node_ip=ip,
        tokens=getattr(cluster.ctx, "tokens", None),
        ca_pem=cluster.pki.ca_cert.read_bytes(),
    )
    cluster.kubelet = kubelet
    cluster.runtime = runtime
    cluster.stats = _stats(settings, runtime, kubelet)
    cluster.tasks.append(asyncio.create_task(agent.run(), name="node-heartbeat"))
    cluster.tasks.append(asyncio.create_task(kubelet.run(), name="kubelet"))
    cluster.tasks.append(asyncio.create_task(cluster.stats.run(), name="kubelet-stats"))

    async def close() -> None:
        await runtime.close()
        if service is not None:
            await asyncio.to_thread(service.close)

    cluster.closers.append(close)


def _stats(settings: Any, runtime: rt.ContainerRuntime, kubelet: Kubelet) -> stats.StatsCollector:
    """Cgroup reads every 10 s for Podman; the fake runtime's synthetic counters cost
    nothing, so it samples every 2 s and tests see a new pod's usage sooner."""
    name = settings.kubelet.node_name
    if settings.kubelet.runtime == "fake":
        fake = stats.FakeStats(lambda uid: kubelet.pods.get(uid))  # adopt() rebinds .pods
        return stats.StatsCollector(runtime, fake, node_name=name, interval=2.0)
    return stats.StatsCollector(runtime, cgroups.CgroupStats(), node_name=name)


async def start_scheduler(cluster: Any) -> None:
    from microkube.scheduler.scheduler import Scheduler

    cluster.tasks.append(asyncio.create_task(Scheduler(cluster.registry).run(), name="scheduler"))
