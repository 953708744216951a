"""Drive an exec/attach session over WebSocket channels or SPDY streams.

The transport-independent part is small: copy the session's stdout/stderr to the client
until they end, feed stdin and terminal resizes to the session, then report the exit
code as a ``metav1.Status`` on the error channel (mirrors kubelet's
``pkg/kubelet/cri/streaming/remotecommand``):

* exit 0 → ``{"metadata":{},"status":"Success"}``;
* exit N → ``Failure``/``NonZeroExitCode`` with ``details.causes[0]`` = ``ExitCode``/``"N"``,
  from which kubectl takes its own exit code;
* a runtime error → ``Failure`` with the error text (kubectl prints it).

Protocols older than v4 carry plain text on the error channel instead of JSON.

WebSocket (kubectl 1.30+): after the Status, a Close frame with code 1000; without it
kubectl reports 1006 and exits 1. SPDY (kubectl ≤ 1.29, and the fallback): the client
opens streams typed by their ``streamtype`` header; we FIN the output streams, write
the Status, FIN the error stream, then GOAWAY.

The runtime side is the :class:`ExecSession` protocol below, so tests can drive the
transport with a fake session and the kubelet's runtime can be adapted to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from microkube.api.streams import channels, spdyconn, upgrade

_log = logging.getLogger(__name__)

# SPDY subprotocols (X-Stream-Protocol-Version), newest first, as kubelet lists them.
SPDY_PROTOCOLS = (channels.V4, channels.V3, channels.V2, channels.V1)

STREAM_CREATION_TIMEOUT = 30.0  # seconds; kubelet's default streamCreationTimeout


class ExecSession(Protocol):
    """A running exec or attach; structurally the same as ``kubelet.runtime.ExecSession``."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin."""
        ...

    async def close_stdin(self) -> None: ...

    async def read(self) -> tuple[str, bytes] | None:
        """Next chunk of output as ``("stdout"|"stderr", data)``; ``None`` at end of output."""
        ...

    async def resize(self, width: int, height: int) -> None: ...

    async def wait(self) -> int:
        """The exit code once the process has ended."""
        ...

    async def close(self) -> None:
        """Release the session (called once, whatever the outcome)."""
        ...


def exit_status(code: int) -> dict[str, Any]:
    """The Status kubelet reports for an exit code."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message}


def _encode_status(status: dict[str, Any], *, as_json: bool) -> bytes:
    if as_json:
        return json.dumps(status, separators=(",", ":")).encode()
    return b"" if status["status"] == "Success" else status["message"].encode()


Sink = Callable[[bytes], Awaitable[None]]


async def _drive(session: ExecSession, out: Sink | None, err: Sink | None) -> dict[str, Any]:
    """Copy output until it ends, then return the exit Status.

    Output of a stream the client did not ask for is dropped (with a tty the runtime
    sends everything as stdout anyway).
    """
    try:
        while (chunk := await session.read()) is not None:
            name, data = chunk
            sink = out if name == "stdout" else err
            if sink is not None and data:
                await sink(data)
        return exit_status(await session.wait())
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a runtime failure is reported to the client, not raised
        _log.warning("exec session failed: %s", exc)
        return error_status(f"error executing command: {exc}")


def _parse_resize(payload: bytes) -> tuple[int, int] | None:
    try:
        size = json.loads(payload)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


# -- WebSocket ------------------------------------------------------------------------


async def serve_remotecommand_ws(
    websocket: WebSocket,
    session: ExecSession,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> None:
    """Serve one exec/attach over a not-yet-accepted Starlette WebSocket.

    A client offering no subprotocol we speak is refused before the handshake (HTTP 403),
    which makes kubectl fall back to SPDY.
    """
    protocol = channels.negotiate(websocket.scope.get("subprotocols") or [])
    if protocol is None:
        await websocket.close(code=1002)
        await session.close()
        return
    await websocket.accept(subprotocol=protocol)
    framing = channels.Framing(protocol)
    lock = asyncio.Lock()

    async def emit(channel: int, data: bytes) -> None:
        message = framing.encode(channel, data)
        async with lock:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            decoded = framing.decode(message.get("bytes") or message.get("text") or b"")
            if decoded is None:
                continue
            channel, payload = decoded
            if channel == channels.STDIN and stdin:
                if payload:
                    await session.write(payload)
            elif channel == channels.RESIZE and tty:
                size = _parse_resize(payload)
                if size is not None:
                    await session.resize(*size)
            elif channel == channels.CLOSE and payload[:1] == bytes([channels.STDIN]) and stdin:
                await session.close_stdin()

    async def out(data: bytes) -> None:
        await emit(channels.STDOUT, data)

    async def err(data: bytes) -> None:
        await emit(channels.STDERR, data)

    driver = asyncio.create_task(
        _drive(session, out if stdout else None, err if stderr and not tty else None)
    )
    client = asyncio.create_task(from_client())
    try:
        await asyncio.wait({driver, client}, return_when=asyncio.FIRST_COMPLETED)
        if driver.done():
            status = driver.result()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await emit(channels.ERROR, _encode_status(status, as_json=framing.status_json))
                await websocket.close(code=1000)
    finally:
        await _cancel(driver, client)
        await session.close()


# -- SPDY -----------------------------------------------------------------------------


async def serve_remotecommand_spdy(
    pipe: spdyconn.Pipe,
    session: ExecSession,
    *,
    protocol: str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> None:
    """Serve one exec/attach over an upgraded SPDY/3.1 connection.

    ``protocol`` is the negotiated ``X-Stream-Protocol-Version`` (see
    :data:`SPDY_PROTOCOLS`); resize needs v3+, a JSON Status needs v4.
    """
    conn = spdyconn.SpdyConnection(pipe)
    runner = asyncio.create_task(conn.run())
    if tty:
        stderr = False  # kubelet: with a tty, stderr is merged into stdout
    expected = {"error"}
    expected |= {
        name for name, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)) if on
    }
    if tty and protocol in (channels.V4, channels.V3):
        expected.add("resize")
    streams: dict[str, spdyconn.Stream] = {}
    tasks: list[asyncio.Task[Any]] = []
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
                while not expected <= streams.keys():
                    stream = await conn.accept()
                    if stream is None:
                        break
                    streams[stream.header("streamtype")] = stream
        if not expected <= streams.keys():
            if "error" in streams:
                await streams["error"].write(b"timed out waiting for client to create streams")
            return

        if "stdin" in streams:
            tasks.append(asyncio.create_task(_spdy_stdin(streams["stdin"], session)))
        if "resize" in streams:
            tasks.append(asyncio.create_task(_spdy_resize(streams["resize"], session)))
        out = streams["stdout"].write if "stdout" in streams else None
        err = streams["stderr"].write if "stderr" in streams else None
        driver = asyncio.create_task(_drive(session, out, err))
        tasks.append(driver)
        await asyncio.wait({driver, runner}, return_when=asyncio.FIRST_COMPLETED)
        if driver.done() and not conn.closed:
            for name in ("stdout", "stderr"):
                if name in streams:
                    await streams[name].close()
            as_json = protocol == channels.V4
            await streams["error"].write(_encode_status(driver.result(), as_json=as_json))
            await streams["error"].close()
    finally:
        await _cancel(*tasks)
        await conn.close()
        await _cancel(runner)
        await session.close()


async def _spdy_stdin(stream: spdyconn.Stream, session: ExecSession) -> None:
    while data := await stream.read():
        await session.write(data)
    await session.close_stdin()


async def _spdy_resize(stream: spdyconn.Stream, session: ExecSession) -> None:
    """The resize stream is a sequence of JSON objects (Go's ``json.Encoder``)."""
    decoder = json.JSONDecoder()
    buffer = ""
    while data := await stream.read():
        buffer += data.decode(errors="replace")
        while True:
            buffer = buffer.lstrip()
            try:
                size, end = decoder.raw_decode(buffer)
            except ValueError:
                break
            buffer = buffer[end:]
            with contextlib.suppress(KeyError, TypeError, ValueError):
                await session.resize(int(size["Width"]), int(size["Height"]))


def spdy_response(
    session: ExecSession, *, stdin: bool, stdout: bool, stderr: bool, tty: bool
) -> upgrade.UpgradeResponse:
    """The response that serves this session over ``Upgrade: SPDY/3.1`` (see upgrade.py)."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: str
    ) -> None:
        pipe = spdyconn.StreamPipe(reader, writer)
        await serve_remotecommand_spdy(
            pipe, session, protocol=protocol, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty
        )

    return upgrade.UpgradeResponse(handler, protocols=SPDY_PROTOCOLS)
