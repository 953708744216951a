"""Server side of a SPDY/3.1 connection: streams opened by the client, multiplexed on one pipe.

kubectl (client-go over ``moby/spdystream``) always opens the streams; the server only
answers. The behaviour mirrors spdystream's server handler as kubelet uses it:

* every SYN_STREAM is answered at once with an empty SYN_REPLY, because client-go's
  ``CreateStream`` blocks until that reply arrives;
* a client PING is echoed with the same id (client-go pings every few seconds and drops
  the connection without an answer);
* DATA with FIN half-closes the client's side: reads then return ``b""``; our
  ``Stream.close()`` sends an empty DATA frame with FIN, which is what ends client-go's
  ``io.Copy``/``io.ReadAll`` on that stream;
* shutting down sends GOAWAY (status OK) and closes the pipe, like spdystream's
  ``Connection.Close``.

The bytes travel over a :class:`Pipe`: the raw TLS connection after an HTTP upgrade, or
binary WebSocket messages (port-forward's ``SPDY/3.1+portforward.k8s.io``). Frames are
encoded and written under one lock, because header compression is one zlib stream whose
pieces must reach the peer in the order they were produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from microkube.api.streams import spdy

_log = logging.getLogger(__name__)

_CHUNK = 32 * 1024


class Pipe(Protocol):
    """A bidirectional byte pipe; ``read`` returns ``b""`` once the peer is gone."""

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class StreamPipe:
    """:class:`Pipe` over an asyncio reader/writer pair (the upgraded HTTP connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            return await self._reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


class Stream:
    """One SPDY stream as the server sees it: headers from the client, two half-closes."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: spdy.Headers) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.remote_closed = False
        self.local_closed = False
        self.reset = False

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    # Called by the connection's read loop.
    def _deliver(self, data: bytes, fin: bool) -> None:
        if self.remote_closed:
            return
        if data:
            self._incoming.put_nowait(data)
        if fin:
            self.remote_closed = True
            self._incoming.put_nowait(b"")

    def _abort(self) -> None:
        self.reset = True
        self.local_closed = True
        self._deliver(b"", True)

    async def read(self) -> bytes:
        """Next chunk sent by the client; ``b""`` after its FIN, a reset or a lost connection."""
        data = await self._incoming.get()
        if not data:
            self._incoming.put_nowait(b"")  # keep reporting EOF
        return data

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            return
        for start in range(0, len(data), _CHUNK):
            await self.conn.send(spdy.DataFrame(self.id, data[start : start + _CHUNK]))

    async def close(self) -> None:
        """Half-close: send FIN; the client sees EOF."""
        if self.local_closed:
            return
        self.local_closed = True
        await self.conn.send(spdy.DataFrame(self.id, b"", fin=True))

    async def abort(self, status: int = spdy.RST_CANCEL) -> None:
        if not self.reset:
            self._abort()
            await self.conn.send(spdy.RstStream(self.id, status))


class SpdyConnection:
    """Multiplexes client-initiated streams over a :class:`Pipe`.

    Run :meth:`run` in a task; take new streams with :meth:`accept` (``None`` once the
    connection ended); finish with :meth:`close`.
    """

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._codec = spdy.Codec()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, Stream] = {}
        self._new: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._last_id = 0
        self.closed = False

    async def send(self, frame: spdy.Frame) -> None:
        if self.closed:
            return
        async with self._write_lock:
            data = self._codec.encode(frame)
            try:
                await self._pipe.write(data)
            except (ConnectionError, OSError, RuntimeError):
                self.closed = True

    async def accept(self) -> Stream | None:
        return await self._new.get()

    async def run(self) -> None:
        """Read frames until the pipe ends or the peer breaks the protocol."""
        try:
            while True:
                data = await self._pipe.read()
                if not data:
                    break
                for frame in self._codec.feed(data):
                    await self._dispatch(frame)
        except spdy.ProtocolError as exc:
            _log.warning("SPDY protocol error: %s", exc)
            await self.send(spdy.GoAway(self._last_id, spdy.GOAWAY_PROTOCOL_ERROR))
        finally:
            for stream in self._streams.values():
                stream._abort()
            self._new.put_nowait(None)

    async def _dispatch(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.DataFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is None:
                await self.send(spdy.RstStream(frame.stream_id, spdy.RST_INVALID_STREAM))
            else:
                stream._deliver(frame.data, frame.fin)
        elif isinstance(frame, spdy.SynStream):
            if frame.stream_id in self._streams or frame.stream_id % 2 == 0:
                await self.send(spdy.RstStream(frame.stream_id, spdy.RST_PROTOCOL_ERROR))
                return
            self._last_id = max(self._last_id, frame.stream_id)
            stream = Stream(self, frame.stream_id, frame.headers)
            self._streams[frame.stream_id] = stream
            await self.send(spdy.SynReply(frame.stream_id, {}))
            if frame.fin:
                stream._deliver(b"", True)
            self._new.put_nowait(stream)
        elif isinstance(frame, spdy.RstStream):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream._abort()
        elif isinstance(frame, spdy.Ping):
            if frame.ping_id % 2 == 1:  # client-initiated; even ids would answer our own
                await self.send(frame)
        elif isinstance(frame, spdy.GoAway):
            self._new.put_nowait(None)
        elif isinstance(frame, spdy.HeadersFrame) and frame.fin:
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream._deliver(b"", True)
        # SETTINGS, WINDOW_UPDATE, SYN_REPLY: nothing to do (spdystream has no flow control).

    async def close(self) -> None:
        """GOAWAY, then close the pipe (mirrors spdystream's ``Connection.Close``)."""
        if self.closed:
            return
        await self.send(spdy.GoAway(self._last_id, spdy.GOAWAY_OK))
        self.closed = True
        with contextlib.suppress(Exception):
            await self._pipe.close()
