"""The composition root: builds every component, runs them, stops them.

This is the only module that imports everything.  ``run(settings)`` is what
``microkube serve`` calls::

    pki.ensure ─► Store.open ─► Registry ─► bootstrap objects
         ─► API server (uvicorn, TLS) ─► READY=1 ─► controllers, kubelet, registry, DNS
         ... SIGTERM/SIGINT ─► STOPPING=1 ─► stop in reverse order ─► store.close

Every background task belongs to one task group, so an unexpected crash in a
component stops the process (and systemd restarts it) instead of leaving a
half-working cluster behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from microkube.api import tlspeer
from microkube.api.app import create_app
from microkube.api.context import ApiContext
from microkube.api.streams import upgrade
from microkube.auth import authn, pki
from microkube.resources.catalog import default_catalog
from microkube.resources.registry import Registry
from microkube.settings import Settings
from microkube.store.log import Store

log = logging.getLogger("microkube")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Cluster:
    """Everything one running instance holds."""

    settings: Settings
    store: Store
    registry: Registry
    ctx: ApiContext
    pki: pki.Pki
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)


async def start(settings: Settings) -> Cluster:
    """Open the store, bootstrap, and build the API context (no listening yet)."""
    p = pki.ensure(
        settings.state_dir,
        extra_ips=_service_ips(settings)
        + (
            [settings.api.bind_address]
            if settings.api.bind_address not in ("0.0.0.0", "::")
            else []
        ),
        extra_names=[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{settings.network.cluster_domain}",
        ],
    )
    store = await Store.open(settings.db_path, settings.store)
    catalog = default_catalog()
    registry = Registry(store, catalog, max_object_bytes=settings.store.max_object_bytes)
    from microkube.auth import tokens as tokens_mod

    issuer = tokens_mod.TokenIssuer(p.sa_key, registry)
    ctx = ApiContext(
        registry=registry,
        catalog=catalog,
        server_address=f"{settings.api.bind_address}:{settings.api.port}",
        authenticator=authn.Authenticator(p.admin_token(), issuer),
        tokens=issuer,
    )
    from microkube.resources import allocators, bootstrap

    registry.services["service-allocator"] = allocators.ServiceAllocator(registry, settings.network)
    await bootstrap.ensure(registry, settings)
    from microkube.admission import webhooks

    webhooks.install(registry, fail_open=webhooks.event_recorder(registry))
    from microkube.auth import bootstrap_rbac, rbac, users
    from microkube.controllers import crd

    ctx.authenticator.static = users.StaticUsers(users.users_file(settings.pki_dir))
    ctx.authorizer = rbac.authorizer_for(settings.api.authorization, registry)
    await bootstrap_rbac.ensure(registry)
    crd.restore(registry)
    cluster = Cluster(settings, store, registry, ctx, p)
    cluster.tasks.append(asyncio.create_task(crd.run(registry), name="crd-controller"))
    from microkube.auth import aggregation

    cluster.tasks.append(
        asyncio.create_task(aggregation.run(registry), name="clusterrole-aggregation")
    )
    from microkube.controllers import storage

    cluster.tasks.append(
        asyncio.create_task(storage.run(registry, settings.state_dir), name="storage-controller")
    )
    return cluster


def _service_ips(settings: Settings) -> list[str]:
    import ipaddress

    net = ipaddress.ip_network(settings.network.service_cidr, strict=False)
    return [str(next(net.hosts()))]


async def run(
    settings: Settings, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set)."""
    cluster = await start(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    config = uvicorn.Config(
        create_app(cluster.ctx),
        host=settings.api.bind_address,
        port=settings.api.port,
        ssl_certfile=str(cluster.pki.server_cert),
        ssl_keyfile=str(cluster.pki.server_key),
        **tlspeer.server_options(str(cluster.pki.ca_cert)),
        log_level="warning",
        lifespan="off",
        **upgrade.uvicorn_options(),
        ws_ping_interval=None,
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    server = QuietServer(config)
    serve_task = asyncio.create_task(server.serve(), name="api-server")
    try:
        while not server.started:
            if serve_task.done():
                serve_task.result()
                raise RuntimeError("API server exited during start-up")
            await asyncio.sleep(0.01)
        await start_components(cluster)
        cluster.ctx.ready = True
        sd_notify("READY=1\nSTATUS=API serving")
        log.info(
            "microkube is serving on https://%s:%d", settings.api.bind_address, settings.api.port
        )
        if ready is not None:
            ready.set()
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {serve_task, stop_wait, *cluster.tasks}, return_when=asyncio.FIRST_COMPLETED
        )
        for t in done:
            if t is not stop_wait and t.exception() is not None:
                log.error("component %s failed: %r", t.get_name(), t.exception())
        stop_wait.cancel()
    finally:
        sd_notify("STOPPING=1")
        cluster.ctx.ready = False
        for t in cluster.tasks:
            t.cancel()
        await asyncio.gather(*cluster.tasks, return_exceptions=True)
        for closer in reversed(cluster.closers):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - keep shutting down the rest
                log.exception("error during shutdown")
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serve_task, 5)
        await cluster.store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def start_components(cluster: Cluster) -> None:
    """Controllers, scheduler, kubelet, registry and DNS (each optional while they are built)."""
    from microkube import components

    await components.start_all(cluster)
