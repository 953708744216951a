"""Starts the components that make objects real, each in its own task.

Kept apart from :mod:`microkube.app` so that components can be added one at a
time: each ``_start_*`` function registers its tasks and closers on the
cluster.  Components come from later work (controllers, scheduler, kubelet,
DNS, registry); those that are not present yet are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def start_all(cluster: Any) -> None:
    from microkube.controllers import manager

    tasks = await manager.start(cluster)
    cluster.tasks.extend(tasks)
    if cluster.settings.kubelet.runtime != "none":
        # "none": a control plane only (API, controllers); no node, scheduler or kubelet.
        from microkube.kubelet import agent

        await agent.start(cluster)  # registers the Node first: no FailedScheduling at boot
        await agent.start_scheduler(cluster)
        from microkube.resources import metrics

        metrics.install(cluster.registry, cluster.stats)  # metrics.k8s.io from kubelet stats
        from microkube.kubelet.streams import PodStreams

        cluster.ctx.pod_streams = PodStreams(cluster.registry, cluster.runtime)
    _start_network(cluster)
    if cluster.settings.registry.enabled:
        await _start_oci(cluster)


def _start_network(cluster: Any) -> None:
    """Service proxy (nftables) and cluster DNS: only with real pods, unless configured.

    ``settings.network.proxy`` (default ``None``: runtime is podman) keeps the
    fake-runtime test servers from touching the host's nftables or port 53.
    """
    s = cluster.settings
    proxy = s.network.proxy
    if not (s.kubelet.runtime == "podman" if proxy is None else proxy):
        return
    from microkube.dns import component as dns
    from microkube.netproxy import apply, proxier

    if apply.nft_available():
        task = asyncio.create_task(proxier.run(cluster.registry, s), name="service-proxy")
        cluster.tasks.append(task)
    else:
        log.warning("nft not found: Services will not be reachable through their ClusterIPs")
    cluster.tasks.append(asyncio.create_task(dns.run(cluster.registry, s), name="cluster-dns"))


async def _start_oci(cluster: Any) -> None:
    """The built-in OCI registry on its own port, plus its background GC."""
    from microkube.app import QuietServer
    from microkube.kubelet import node
    from microkube.oci import access
    from microkube.oci import app as oci_app
    from microkube.oci import gc as oci_gc

    s = cluster.settings.registry
    access.warn_if_exposed(s)
    app = oci_app.create_app(
        cluster.settings.state_dir,
        cluster.store.engine,
        quota_bytes=s.quota_bytes,
        auth=access.credentials(s),
    )
    tls: dict[str, Any] = {}
    if s.tls:
        cert, key = access.serving_cert(cluster.pki, s, node.host_ip())
        tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    server = QuietServer(oci_app.server_config(app, **tls))
    sock = oci_app.listen_socket(s.bind_address, s.port)
    cluster.tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name="oci-registry"))
    registry_dir = cluster.settings.state_dir / "registry"
    cluster.tasks.append(
        asyncio.create_task(oci_gc.gc_loop(cluster.store.engine, registry_dir), name="oci-gc")
    )

    async def close() -> None:
        server.should_exit = True
        sock.close()

    cluster.closers.append(close)
