"""Starts the in-process controllers (name → factory)."""

from __future__ import annotations

import asyncio
from typing import Any

from microkube.controllers import endpoints, namespace, serviceaccount


async def start(cluster: Any) -> list[asyncio.Task[Any]]:
    reg = cluster.registry
    return [
        asyncio.create_task(namespace.run(reg), name="namespace-controller"),
        asyncio.create_task(serviceaccount.run(reg), name="serviceaccount-controller"),
        asyncio.create_task(endpoints.run(reg, cluster.settings), name="endpoints-controller"),
    ]
