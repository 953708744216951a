"""The registry's Starlette application: one dispatcher for all of ``/v2/``.

Repository names contain slashes, so Starlette's router cannot split
``/v2/<name>/manifests/<ref>`` by itself; one catch-all route hands the path
to :data:`_ROUTES`, a table of (regex, handlers by method) tried in order.
The ``<name>`` group is then checked against the spec's name grammar
(NAME_INVALID otherwise), before anything touches the disk or database.

Every response carries ``Docker-Distribution-API-Version: registry/2.0``.
Errors are :class:`~microkube.oci.errcodes.RegistryError` rendered in the
spec's JSON format; unexpected exceptions become 500 ``UNKNOWN`` (and a full
disk 507).  Optional HTTP basic auth guards every endpoint including
``/v2/`` (clients probe it to learn the auth scheme).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from microkube.oci import blob_routes, errcodes, manifest_routes, names, registry

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Response]]

_NAME = r"(?P<name>.+)"
_ROUTES: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
    (re.compile(r"_catalog"), {"GET": manifest_routes.catalog}),
    (re.compile(rf"{_NAME}/tags/list"), {"GET": manifest_routes.list_tags}),
    (
        re.compile(rf"{_NAME}/manifests/(?P<reference>[^/]+)"),
        {
            "GET": manifest_routes.get_manifest,
            "HEAD": manifest_routes.get_manifest,
            "PUT": manifest_routes.put_manifest,
            "DELETE": manifest_routes.delete_manifest,
        },
    ),
    (re.compile(rf"{_NAME}/blobs/uploads/?"), {"POST": blob_routes.start_upload}),
    (
        re.compile(rf"{_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"),
        {
            "GET": blob_routes.upload_status,
            "PATCH": blob_routes.patch_upload,
            "PUT": blob_routes.finish_upload,
            "DELETE": blob_routes.cancel_upload,
        },
    ),
    (
        re.compile(rf"{_NAME}/blobs/(?P<digest>[^/]+)"),
        {
            "GET": blob_routes.get_blob,
            "HEAD": blob_routes.get_blob,
            "DELETE": blob_routes.delete_blob,
        },
    ),
    (re.compile(rf"{_NAME}/referrers/(?P<digest>[^/]+)"), {"GET": manifest_routes.referrers}),
]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _error_response(exc: errcodes.RegistryError) -> Response:
    headers = {**registry.API_VERSION_HEADER, **exc.headers}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _check_auth(request: Request, auth: tuple[str, str] | None) -> None:
    if auth is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        ok_user = hmac.compare_digest(user.encode(), auth[0].encode())
        ok_password = hmac.compare_digest(password.encode(), auth[1].encode())
        if ok_user and ok_password:
            return
    raise errcodes.RegistryError(
        "UNAUTHORIZED",
        "authentication required",
        headers={"WWW-Authenticate": 'Basic realm="microkube"'},
    )


def _make_dispatch(
    reg: registry.Registry, auth: tuple[str, str] | None
) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        try:
            _check_auth(request, auth)
            response = await _route(reg, request)
        except errcodes.RegistryError as exc:
            return _error_response(exc)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return _error_response(errcodes.disk_full(exc))
            log.exception("registry request failed")
            return _error_response(errcodes.RegistryError("UNKNOWN", "internal error"))
        response.headers.update(registry.API_VERSION_HEADER)
        return response

    return dispatch


async def _route(reg: registry.Registry, request: Request) -> Response:
    path = request.path_params.get("path", "")
    if path == "":
        if request.method not in ("GET", "HEAD"):
            raise errcodes.RegistryError("UNSUPPORTED", "method not allowed")
        return JSONResponse({})
    for pattern, handlers in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        handler = handlers.get(request.method)
        if handler is None:
            raise errcodes.RegistryError(
                "UNSUPPORTED",
                f"{request.method} not supported here",
                headers={"Allow": ", ".join(handlers)},
            )
        params: dict[str, Any] = match.groupdict()
        if "name" in params:
            names.check_name(params["name"])
        return await handler(reg, request, **params)
    raise errcodes.RegistryError(
        "NAME_UNKNOWN", "no such endpoint", detail={"path": path}, status=404
    )


def create_app(
    state_dir: Path,
    engine: sa.Engine,
    *,
    quota_bytes: int = 0,
    auth: tuple[str, str] | None = None,
) -> Starlette:
    """The registry app, storing under ``<state_dir>/registry`` and in ``engine``.

    ``engine`` must already hold the OCI tables (migration 0002).
    ``quota_bytes`` caps the total blob bytes (0: unlimited); ``auth`` enables
    HTTP basic auth with this user and password.  ``app.state.registry`` is
    the :class:`~microkube.oci.registry.Registry` (for the GC and tests).
    """
    reg = registry.Registry.open(state_dir / "registry", engine, quota_bytes=quota_bytes)
    dispatch = _make_dispatch(reg, auth)
    app = Starlette(
        routes=[
            Route("/v2", dispatch, methods=_METHODS),
            Route("/v2/", dispatch, methods=_METHODS),
            Route("/v2/{path:path}", dispatch, methods=_METHODS),
        ]
    )
    app.state.registry = reg
    return app


HTTP_PROTOCOL = "httptools"
"""uvicorn's HTTP/1.1 implementation for the registry: the C parser (llhttp).

Layer pushes are bulk bodies: with uvicorn's pure-Python h11 parser the
registry spends 10-15% more CPU per pushed byte (``bench/bench_registry.py
--http h11`` for the comparison).  TLS (``--registry-tls``) is the transport's
business and works with either.  The API server keeps h11: its protocol
classes (:mod:`microkube.api.streams.upgrade`) extend uvicorn's h11 one.
"""


def server_config(app: Starlette, *, http: str = HTTP_PROTOCOL, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` the registry is served with (``options`` are passed on, e.g. TLS)."""
    return uvicorn.Config(
        app, http=http, log_level="warning", lifespan="off", access_log=False, **options
    )


def listen_socket(host: str = "127.0.0.1", port: int = 32000) -> socket.socket:
    """A listening socket for ``uvicorn.Server.run(sockets=[...])``.

    It has ``TCP_NODELAY``, which Linux passes on to accepted connections:
    uvicorn writes a response's headers and body separately, and with Nagle's
    algorithm on, the body then waits for the client's delayed ACK (~40 ms per
    small request, e.g. every manifest GET on a kept-alive connection).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
