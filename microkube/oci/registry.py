"""The state one registry's HTTP handlers share, and the request helpers.

:class:`Registry` bundles the engine, the blob store, the upload sessions and
the quota; handlers in :mod:`~microkube.oci.blob_routes` and
:mod:`~microkube.oci.manifest_routes` receive it with the parsed path.
Database and file work runs in worker threads (:meth:`Registry.run`), so the
event loop only moves bytes between the socket and those threads.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import ClientDisconnect, Request

from microkube.oci import blobs, errcodes, uploads

T = TypeVar("T")

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


@dataclass
class Registry:
    engine: sa.Engine
    store: blobs.BlobStore
    uploads: uploads.Uploads
    quota_bytes: int = 0

    @classmethod
    def open(cls, root: Path, engine: sa.Engine, *, quota_bytes: int = 0) -> Registry:
        store = blobs.BlobStore(root)
        return cls(
            engine, store, uploads.Uploads(store, engine, quota_bytes=quota_bytes), quota_bytes
        )

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``func`` in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


class RequestBody:
    """A request body as :class:`uploads.Body`: chunks plus a disconnect flag."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.disconnected = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._request.stream():
                if chunk:
                    yield chunk
        except ClientDisconnect:
            self.disconnected = True


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (413 SIZE_INVALID)."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise errcodes.RegistryError(
                "SIZE_INVALID", "request body too large", detail={"limit": limit}, status=413
            )
    return bytes(data)


def int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise errcodes.RegistryError("SIZE_INVALID", f"invalid {name}") from exc
    if number < 0:
        raise errcodes.RegistryError("SIZE_INVALID", f"invalid {name}")
    return number


def int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise errcodes.RegistryError(
            "UNSUPPORTED", f"invalid query parameter {name}", status=400
        ) from exc
