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
    if cluster.settings.registry.enabled:
        await _start_oci(cluster)


async def _start_oci(cluster: Any) -> None:
    try:
        from microkube.oci import app as oci_app
    except ImportError:
        return
    import uvicorn

    s = cluster.settings.registry
    app = oci_app.create_app(
        cluster.settings.state_dir, cluster.store.engine, quota_bytes=s.quota_bytes
    )
    config = uvicorn.Config(
        app, host=s.bind_address, port=s.port, log_level="warning", lifespan="off", access_log=False
    )

    class _Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # uvicorn < 0.29
            pass

    import contextlib

    class _QuietServer(_Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(), name="oci-registry")
    cluster.tasks.append(task)

    async def close() -> None:
        server.should_exit = True

    cluster.closers.append(close)
