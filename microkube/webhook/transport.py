"""A small HTTP/1.1 POST client over asyncio streams, with kept-alive connections.

Why not httpx/httpcore: on loopback they cost about 0.9 ms of CPU per call,
a plain stream write/read about 0.15 ms, and an admission webhook call sits
on every matching write (two webhooks would add ~2 ms to a 1 ms create).
This speaks only what webhooks need: one POST with a Content-Length body;
responses with Content-Length, chunked or close-delimited bodies.  Redirects
are not followed (as upstream's webhook client does not).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x we can read."""


@dataclass
class Response:
    status: int
    body: bytes


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class Pool:
    """Idle connections by (host, port, server name, context); at most ``per_key`` kept."""

    def __init__(self, per_key: int = 8) -> None:
        self.per_key = per_key
        self._idle: dict[tuple[str, int, str, int], list[_Conn]] = {}

    async def post(
        self,
        host: str,
        port: int,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        ssl_context: ssl.SSLContext,
        server_name: str,
    ) -> Response:
        key = (host, port, server_name, id(ssl_context))
        head = [f"POST {target} HTTP/1.1"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        idle = self._idle.setdefault(key, [])
        while idle:
            conn = idle.pop()
            if conn.reader.at_eof() or conn.writer.is_closing():
                _close(conn)
                continue
            try:
                return await self._exchange(key, conn, data, reused=True)
            except _Stale:
                continue
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl_context, server_hostname=server_name
        )
        return await self._exchange(key, _Conn(reader, writer), data, reused=False)

    async def _exchange(
        self, key: tuple[str, int, str, int], conn: _Conn, data: bytes, *, reused: bool
    ) -> Response:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            try:
                status_line = await conn.reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _Stale() from exc
                raise ProtocolError("EOF") from exc
            resp, keep = await _read_response(conn.reader, status_line)
        except (ConnectionResetError, BrokenPipeError) as exc:
            _close(conn)
            if reused:
                raise _Stale() from exc
            raise
        except BaseException:
            _close(conn)
            raise
        idle = self._idle.setdefault(key, [])
        if keep and len(idle) < self.per_key:
            idle.append(conn)
        else:
            _close(conn)
        return resp

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                _close(c)
        self._idle.clear()


class _Stale(Exception):
    """A kept-alive connection the server had already closed: retry on a new one."""


def _close(conn: _Conn) -> None:
    try:
        conn.writer.close()
    except (OSError, RuntimeError):
        pass


async def _read_response(reader: asyncio.StreamReader, status_line: bytes) -> tuple[Response, bool]:
    parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"malformed HTTP response {status_line[:64]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response header too long") from exc
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise ProtocolError("response headers too large")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunked(reader)
    elif "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError as exc:
            raise ProtocolError("invalid Content-Length") from exc
        if n < 0 or n > MAX_BODY_BYTES:
            raise ProtocolError("response body too large")
        body = await reader.readexactly(n)
    else:
        body = await reader.read(MAX_BODY_BYTES + 1)
        rest = body
        while rest and len(body) <= MAX_BODY_BYTES:
            rest = await reader.read(MAX_BODY_BYTES + 1 - len(body))
            body += rest
        if len(body) > MAX_BODY_BYTES:
            raise ProtocolError("response body too large")
        keep = False
    return Response(status, body), keep


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            n = int(line.split(b";")[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError("invalid chunk size") from exc
        if n == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return bytes(out)
        if len(out) + n > MAX_BODY_BYTES:
            raise ProtocolError("response body too large")
        out += await reader.readexactly(n)
        await reader.readexactly(2)
