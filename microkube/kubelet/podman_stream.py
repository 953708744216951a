"""Streaming calls to the Podman REST API over asyncio (exec, attach, logs).

podman-py is synchronous and its exec/attach support does not expose a live,
bidirectional stream, so the long-lived streams use a native asyncio
connection to the API's unix socket instead: one small HTTP/1.1 request per
connection, then either a hijacked raw stream (exec start, attach: the server
answers ``101 UPGRADED`` and the socket carries process I/O both ways) or a
chunked body (logs).  This module deliberately does not import ``podman``.

Non-TTY output is multiplexed in Docker's framing: an 8-byte header
``[stream, 0, 0, 0, size (uint32 big endian)]`` followed by ``size`` bytes,
stream 1 = stdout, 2 = stderr.  With a TTY the output is raw stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from microkube.kubelet import runtime

log = logging.getLogger(__name__)

API_PREFIX = "/v4.0.0/libpod"
"""Podman accepts any version here; 4.0.0 is the oldest we support."""


class Response:
    """Status, headers and a body reader that undoes chunked encoding."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.status = status
        self.headers = headers
        self.reader = reader
        self.writer = writer
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._remaining: int | None = int(length) if length is not None else None
        self._chunk_left = 0
        self._eof = False

    async def read_some(self) -> bytes:
        """Next piece of the body; ``b""`` at its end."""
        if self._eof:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                line = await self.reader.readline()
                if not line:
                    self._eof = True
                    return b""
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self._eof = True
                    return b""
                self._chunk_left = size
            data = await self.reader.read(self._chunk_left)
            if not data:
                self._eof = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                await self.reader.readexactly(2)
            return data
        if self._remaining is not None:
            if self._remaining == 0:
                self._eof = True
                return b""
            data = await self.reader.read(min(self._remaining, 65536))
            self._remaining -= len(data)
        else:
            data = await self.reader.read(65536)
        if not data:
            self._eof = True
        return data

    async def read_all(self) -> bytes:
        parts = []
        while data := await self.read_some():
            parts.append(data)
        return b"".join(parts)

    async def json(self) -> Any:
        body = await self.read_all()
        return json.loads(body) if body.strip() else None

    def close(self) -> None:
        self.writer.close()


async def request(
    socket_path: Path | str,
    method: str,
    path: str,
    body: Any = None,
    *,
    upgrade: bool = False,
) -> Response:
    """Send one request on a fresh connection and read the response head."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=1 << 20)
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {API_PREFIX}{path} HTTP/1.1", "Host: d"]
    if upgrade:
        head += ["Connection: Upgrade", "Upgrade: tcp"]
    else:
        head.append("Connection: close")
    if body is not None:
        head.append("Content-Type: application/json")
    head.append(f"Content-Length: {len(payload)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    await writer.drain()
    try:
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2:
            raise runtime.ContainerRuntimeError(f"bad response from podman: {status_line!r}")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
    except BaseException:
        writer.close()
        raise
    resp = Response(int(parts[1]), headers, reader, writer)
    if upgrade or resp.status == 101:
        resp._chunked, resp._remaining = False, None
    if resp.status >= 400:
        try:
            detail = await resp.json()
        except ValueError:
            detail = None
        resp.close()
        message = detail.get("message", "") if isinstance(detail, dict) else ""
        message = message or f"{method} {path}: HTTP {resp.status}"
        if resp.status == 404:
            raise runtime.RuntimeNotFound(message)
        raise runtime.ContainerRuntimeError(message)
    return resp


async def call(socket_path: Path | str, method: str, path: str, body: Any = None) -> Any:
    """A plain JSON request/response."""
    resp = await request(socket_path, method, path, body)
    try:
        return await resp.json()
    finally:
        resp.close()


class Demuxer:
    """Split Docker-framed output into ``(stream, bytes)`` chunks."""

    def __init__(self, read_some: Callable[[], Awaitable[bytes]], *, tty: bool) -> None:
        self._read_some = read_some
        self._tty = tty
        self._buf = b""
        self._eof = False

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n and not self._eof:
            data = await self._read_some()
            if not data:
                self._eof = True
            self._buf += data
        return len(self._buf) >= n

    async def next(self) -> tuple[runtime.Stream, bytes] | None:
        if self._tty:
            if self._buf:
                data, self._buf = self._buf, b""
                return "stdout", data
            data = b"" if self._eof else await self._read_some()
            return ("stdout", data) if data else None
        while True:
            if not await self._fill(8):
                return None
            kind, size = self._buf[0], struct.unpack(">I", self._buf[4:8])[0]
            if not await self._fill(8 + size):
                return None
            data, self._buf = self._buf[8 : 8 + size], self._buf[8 + size :]
            if data:
                return ("stderr" if kind == 2 else "stdout"), data


class StreamSession:
    """:class:`runtime.ExecSession` over a hijacked exec or attach connection."""

    def __init__(
        self,
        resp: Response,
        *,
        tty: bool,
        resize: Callable[[int, int], Awaitable[None]],
        wait: Callable[[], Awaitable[int]],
    ) -> None:
        self._resp = resp
        self._demux = Demuxer(resp.read_some, tty=tty)
        self._resize = resize
        self._wait = wait
        self._stdin_closed = False

    async def write(self, data: bytes) -> None:
        self._resp.writer.write(data)
        await self._resp.writer.drain()

    async def close_stdin(self) -> None:
        if not self._stdin_closed:
            self._stdin_closed = True
            if self._resp.writer.can_write_eof():
                self._resp.writer.write_eof()

    async def read(self) -> tuple[runtime.Stream, bytes] | None:
        return await self._demux.next()

    async def resize(self, width: int, height: int) -> None:
        try:
            await self._resize(width, height)
        except runtime.ContainerRuntimeError as exc:
            # A resize racing with the process's exit is harmless.
            log.debug("resize ignored: %s", exc)

    async def wait(self) -> int:
        return await self._wait()

    async def close(self) -> None:
        self._resp.close()
        try:
            await self._resp.writer.wait_closed()
        except OSError:
            pass
