"""pods/portforward: SPDY streams paired per forwarded connection, piped to the pod's port.

kubectl always frames port-forward in SPDY/3.1 (there is no channel variant):

* kubectl 1.31+ first opens a WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io``
  and runs SPDY inside binary messages (client-go ``tunneling_connection.go``);
* otherwise, and as the fallback, a POST with ``Upgrade: SPDY/3.1`` and
  ``X-Stream-Protocol-Version: portforward.k8s.io`` (see upgrade.py).

For each local connection the client opens two streams carrying ``streamtype`` =
``error`` / ``data``, ``port`` and ``requestid``. Mirrors kubelet's
``portforward/httpstream.go``: streams are paired by request id; once both exist we dial
the port through the injected ``connect`` and copy bytes both ways; a failure is written
as text on the error stream (kubectl prints it, and since 1.28 drops the whole
forwarding session). EOF propagates as half-closes: the client's FIN on the data stream
becomes ``write_eof`` on the target, the target's EOF becomes our FIN, which is what lets
kubectl close the local socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from microkube.api.streams import spdyconn, upgrade

_log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
WS_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
PAIR_TIMEOUT = 30.0  # seconds to wait for the second stream of a pair (kubelet's default)

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _WebSocketPipe:
    """:class:`spdyconn.Pipe` over binary WebSocket messages (no channel byte)."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def read(self) -> bytes:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return b""
            if message.get("bytes"):
                return bytes(message["bytes"])

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except WebSocketDisconnect as exc:
            raise ConnectionError("websocket closed") from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close(code=1000)


async def serve_portforward_ws(websocket: WebSocket, connect: Connect) -> None:
    """Serve port-forward over a not-yet-accepted WebSocket (kubectl 1.31+).

    Without the SPDY tunnelling subprotocol the handshake is refused (HTTP 403), so
    kubectl falls back to the SPDY upgrade.
    """
    offered = [p.strip() for p in websocket.scope.get("subprotocols") or []]
    if WS_PROTOCOL not in offered:
        await websocket.close(code=1002)
        return
    await websocket.accept(subprotocol=WS_PROTOCOL)
    await serve_portforward_spdy(_WebSocketPipe(websocket), connect)


async def serve_portforward_spdy(pipe: spdyconn.Pipe, connect: Connect) -> None:
    """Serve port-forward over a SPDY connection until the client goes away."""
    conn = spdyconn.SpdyConnection(pipe)
    runner = asyncio.create_task(conn.run())
    pending: dict[str, dict[str, spdyconn.Stream]] = {}
    expiries: dict[str, asyncio.Task[Any]] = {}
    tasks: set[asyncio.Task[Any]] = set()
    try:
        while (stream := await conn.accept()) is not None:
            kind = stream.header("streamtype")
            if kind not in ("error", "data"):
                await stream.abort()
                continue
            request_id = stream.header("requestid")
            if not request_id:
                # Old clients: the data stream follows its error stream (ids step by 2).
                request_id = str(stream.id if kind == "error" else stream.id - 2)
            pair = pending.setdefault(request_id, {})
            if kind in pair:
                await stream.abort()
                continue
            pair[kind] = stream
            if len(pair) == 2:
                del pending[request_id]
                expiry = expiries.pop(request_id, None)
                if expiry is not None:
                    expiry.cancel()
                task = asyncio.create_task(_forward(pair["error"], pair["data"], connect))
            else:
                task = asyncio.create_task(_expire(pending, expiries, request_id))
                expiries[request_id] = task
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        await _cancel(*tasks)
        await conn.close()
        await _cancel(runner)


async def _expire(
    pending: dict[str, dict[str, spdyconn.Stream]],
    expiries: dict[str, asyncio.Task[Any]],
    request_id: str,
) -> None:
    """Give up on a half-opened pair after :data:`PAIR_TIMEOUT` (kubelet does the same)."""
    await asyncio.sleep(PAIR_TIMEOUT)
    expiries.pop(request_id, None)
    pair = pending.pop(request_id, None)
    if pair:
        if "error" in pair:
            await pair["error"].write(
                f"timed out waiting for the other stream of request {request_id}".encode()
            )
        for stream in pair.values():
            await stream.close()


async def _forward(error: spdyconn.Stream, data: spdyconn.Stream, connect: Connect) -> None:
    port_text = data.header("port") or error.header("port")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(port_text)
    except ValueError:
        await _fail(error, data, f'invalid port "{port_text}"')
        return
    try:
        reader, writer = await connect(port)
    except Exception as exc:
        await _fail(error, data, f"error forwarding port {port} to pod: {exc}")
        return
    try:
        upstream = asyncio.create_task(_client_to_target(data, writer))
        try:
            while chunk := await reader.read(65536):
                await data.write(chunk)
        except (ConnectionError, OSError) as exc:
            await error.write(f"error reading from port {port}: {exc}".encode())
        await data.close()
        await error.close()
        # kubectl FINs the data stream once it has closed the local socket.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(upstream), 5.0)
        await _cancel(upstream)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _client_to_target(data: spdyconn.Stream, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _fail(error: spdyconn.Stream, data: spdyconn.Stream, message: str) -> None:
    _log.info("port-forward: %s", message)
    await error.write(message.encode())
    await error.close()
    await data.close()


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


def spdy_response(connect: Connect) -> upgrade.UpgradeResponse:
    """The response that serves port-forward over ``Upgrade: SPDY/3.1`` (see upgrade.py)."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str
    ) -> None:
        await serve_portforward_spdy(spdyconn.StreamPipe(reader, writer), connect)

    return upgrade.UpgradeResponse(handler, protocols=(PROTOCOL,))
