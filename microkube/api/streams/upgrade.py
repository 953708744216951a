"""Non-WebSocket HTTP upgrades (``Upgrade: SPDY/3.1``) on uvicorn, through the ASGI app.

uvicorn only upgrades to WebSocket; any other ``Upgrade`` is served as a plain request
whose 101 response h11 would refuse to send. kubectl ≤ 1.29 (exec, attach) and every
port-forward fallback need ``POST … Upgrade: SPDY/3.1`` answered with 101 and the raw
connection handed over.

Design: :class:`SpdyUpgradeH11Protocol` subclasses uvicorn's ``H11Protocol`` and only
marks such requests: it lets them run through the ASGI app like any request (so routing,
authentication, authorization and pod lookup stay in Starlette and may still answer
403/404 normally) and adds an ASGI scope extension::

    scope["extensions"]["microkube.spdy_upgrade"] = {"accept": accept}

``accept(headers)`` writes ``101 Switching Protocols`` (plus ``headers``) on the socket,
detaches it from h11, and returns an ``(asyncio.StreamReader, asyncio.StreamWriter)``
pair for the endpoint to speak SPDY on. The endpoint returns an :class:`UpgradeResponse`,
which negotiates ``X-Stream-Protocol-Version``, calls ``accept`` and runs the handler.

Alternatives rejected: our own TLS server in front of uvicorn (two HTTP stacks, and
every request pays the peek); a custom ``send`` message (uvicorn's ``send`` rejects
unknown message types and h11 cannot emit 101 as a final response).

A second, smaller gap is on the WebSocket side: kubectl 1.31+ offers the subprotocol
``SPDY/3.1+portforward.k8s.io``, whose ``/`` is not an RFC 7230 token, and the
``websockets`` library answers 400 to the whole handshake. :class:`WebSocketProtocol`
hides that header from the library's parser and hands it to the app in
``scope["subprotocols"]`` as usual (gorilla/websocket, kubectl's side, does not check
token syntax either). Without it kubectl still works, through the SPDY fallback.

Both protocol classes also copy the verified TLS client certificate into each
request's scope (:mod:`microkube.api.tlspeer`).

While upgraded, a shim stays in uvicorn's connection set so a graceful shutdown closes
the socket instead of waiting forever for a long port-forward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from microkube.api import tlspeer

EXTENSION = "microkube.spdy_upgrade"
_ABORT_AFTER = 1.0  # seconds a shut-down upgraded connection gets to close cleanly
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

Accept = Callable[
    [list[tuple[bytes, bytes]]], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


def is_spdy_upgrade(scope: Scope) -> bool:
    """Whether this request asks for ``Upgrade: SPDY/3.1`` and the server can grant it."""
    return EXTENSION in (scope.get("extensions") or {})


def requested_protocols(scope: Scope) -> list[str]:
    """All ``X-Stream-Protocol-Version`` values, in the client's order (repeated or comma-joined)."""
    out: list[str] = []
    for name, value in scope.get("headers") or []:
        if name.lower() == b"x-stream-protocol-version":
            out += [v.strip() for v in value.decode("latin-1").split(",") if v.strip()]
    return out


def negotiate(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """Mirrors apimachinery ``httpstream.Handshake``: the client's first supported protocol.

    A client that offers nothing gets ``""`` (the legacy protocol), as upstream.
    """
    if not offered:
        return ""
    for proto in offered:
        if proto in supported:
            return proto
    return None


class UpgradeResponse:
    """ASGI response that upgrades the connection and runs ``handler(reader, writer, protocol)``.

    Answers 400 when the request is not an upgradable SPDY request and 403 when no
    protocol is common (the status upstream uses for a failed negotiation).
    """

    def __init__(self, handler: Handler, *, protocols: Sequence[str]) -> None:
        self.handler = handler
        self.protocols = tuple(protocols)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ext = (scope.get("extensions") or {}).get(EXTENSION)
        if ext is None:
            response = PlainTextResponse("Upgrade request required", status_code=400)
            await response(scope, receive, send)
            return
        offered = requested_protocols(scope)
        protocol = negotiate(offered, self.protocols)
        if protocol is None:
            message = (
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server supports {list(self.protocols)}"
            )
            await PlainTextResponse(message, status_code=403)(scope, receive, send)
            return
        headers = [(b"X-Stream-Protocol-Version", protocol.encode())] if protocol else []
        reader, writer = await ext["accept"](headers)
        try:
            await self.handler(reader, writer, protocol)
        finally:
            if not writer.is_closing():
                writer.close()


class _UpgradedProtocol(asyncio.StreamReaderProtocol):
    """Takes the transport over from h11; doubles as uvicorn's connection for shutdown."""

    def __init__(self, reader: asyncio.StreamReader, connections: set[Any]) -> None:
        super().__init__(reader)
        self._connections = connections
        self._transport: asyncio.BaseTransport | None = None
        connections.add(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:  # called by uvicorn on graceful shutdown
        """Close now; abort if the TLS close_notify exchange has not finished within 1 s."""
        transport = self._transport
        if transport is None:
            return
        transport.close()
        if isinstance(transport, asyncio.Transport):
            asyncio.get_running_loop().call_later(_ABORT_AFTER, transport.abort)


class SpdyUpgradeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the ``microkube.spdy_upgrade`` extension.

    Use as ``uvicorn.Config(app, http=SpdyUpgradeH11Protocol, ...)``.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer_cert = tlspeer.peer_certificate(transport)

    def _should_upgrade(self) -> bool:
        # Called for every request right after uvicorn builds its scope.
        if self._peer_cert:
            self.scope[tlspeer.SCOPE_KEY] = self._peer_cert  # type: ignore[literal-required]
        if self._get_upgrade() == b"spdy/3.1":
            extensions = self.scope.setdefault("extensions", {})
            extensions[EXTENSION] = {"accept": self._accept_upgrade}
            return False  # serve it as an ordinary request; the endpoint decides
        return super()._should_upgrade()

    async def _accept_upgrade(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            raise RuntimeError("cannot upgrade: a response has already started")
        # Tell uvicorn's cycle the response is done so it neither sends a 500 nor touches
        # the socket when the endpoint returns.
        cycle.response_started = True
        cycle.response_complete = True
        self._unset_keepalive_if_required()
        self.connections.discard(self)

        lines = [
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"Connection: Upgrade\r\n",
            b"Upgrade: SPDY/3.1\r\n",
        ]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        lines.append(b"\r\n")

        reader = asyncio.StreamReader(limit=1 << 20)
        protocol = _UpgradedProtocol(reader, self.connections)
        trailing, _ = self.conn.trailing_data
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        self.transport.write(b"".join(lines))
        if trailing:
            reader.feed_data(bytes(trailing))
        self.transport.resume_reading()
        writer = asyncio.StreamWriter(self.transport, protocol, reader, self.loop)
        return reader, writer


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, tolerant of non-token subprotocol names.

    Use as ``uvicorn.Config(app, ws=WebSocketProtocol, ...)``.
    """

    def handle_connect(self, event: Any) -> None:
        raw = event.headers.get_all("Sec-WebSocket-Protocol")
        offered = [token.strip() for value in raw for token in value.split(",") if token.strip()]
        if all(set(token) <= _TOKEN_CHARS for token in offered):
            super().handle_connect(event)
            self._add_peer_cert()
            return
        del event.headers["Sec-WebSocket-Protocol"]
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and scope.get("type") == "websocket":
            # The ASGI task is created but not started yet: it will see these.
            scope["subprotocols"] = offered
            scope["headers"] = list(scope["headers"]) + [
                (b"sec-websocket-protocol", value.encode("latin-1")) for value in raw
            ]
        self._add_peer_cert()

    def _add_peer_cert(self) -> None:
        scope = getattr(self, "scope", None)
        cert = tlspeer.peer_certificate(getattr(self, "transport", None))
        if scope is not None and cert:
            scope[tlspeer.SCOPE_KEY] = cert


def uvicorn_options() -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments that enable everything in this package."""
    return {"http": SpdyUpgradeH11Protocol, "ws": WebSocketProtocol}
