"""SPDY/3.1 frame codec: the wire format under kubectl's exec (≤ 1.29) and port-forward.

kubectl speaks SPDY through ``moby/spdystream`` (itself Go's old ``spdy`` package), so this
module follows that implementation rather than the whole draft:

* Every frame starts with 8 bytes. A control frame has the high bit set, version 3, a
  16-bit type, 8-bit flags and a 24-bit length; a DATA frame has a 31-bit stream id,
  flags (FIN = 1) and a 24-bit length.
* Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are ``u32 count`` then ``u32 len, name,
  u32 len, value`` pairs, with several values joined by NUL. Names must be lowercase
  (spdystream rejects others). Blocks are zlib-compressed with the SPDY/3 dictionary and
  **one zlib stream per direction per connection**: each block is a sync-flushed piece
  of that stream. So a :class:`Codec` is stateful and belongs to one connection.
* Flow control (WINDOW_UPDATE) is parsed and ignored, exactly as spdystream ignores it.

The codec is pure (bytes in, frames out) so that the same code runs over a raw TLS
connection and inside WebSocket binary messages (port-forward's
``SPDY/3.1+portforward.k8s.io``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1

MAX_DATA_LENGTH = (1 << 24) - 1


def _build_dictionary() -> bytes:
    """The SPDY/3 zlib dictionary (draft 3, section 2.6.10.1); its Adler-32 is 0xe3c6a7c2."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split()
    words += ["200 OK"]
    words += "version HTTP/1.1 url public set-cookie keep-alive origin".split()
    prefixed = b"".join(struct.pack("!I", len(w)) + w.encode() for w in words)
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY = _build_dictionary()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3; the connection must be dropped."""


@dataclass
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)


@dataclass
class Ping:
    ping_id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


Frame = (
    DataFrame
    | SynStream
    | SynReply
    | HeadersFrame
    | RstStream
    | Settings
    | Ping
    | GoAway
    | WindowUpdate
)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block; names are lowercased as SPDY/3 requires."""
    out = [struct.pack("!I", len(headers))]
    for name, values in headers.items():
        raw_name = name.lower().encode()
        raw_value = "\x00".join(values).encode()
        out += [struct.pack("!I", len(raw_name)), raw_name]
        out += [struct.pack("!I", len(raw_value)), raw_value]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block into ``{name: [values]}``."""
    try:
        (count,) = struct.unpack_from("!I", block, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from("!I", block, pos)
            name = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from("!I", block, pos)
            value = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            headers.setdefault(name.lower(), []).extend(value.split("\x00"))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed header block: {exc}") from exc
    if pos != len(block):
        raise ProtocolError("header block has trailing bytes")
    return headers


class Codec:
    """Encoder and incremental decoder of one connection's frames (stateful: zlib)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(
            9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
        )
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._buffer = bytearray()

    # -- encoding -----------------------------------------------------------------------

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
        head = struct.pack("!HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload))
        return head + payload

    def encode(self, frame: Frame) -> bytes:
        """Serialise ``frame``; header blocks go through this connection's compressor."""
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_DATA_LENGTH:
                raise ValueError("DATA frame too large; split it")
            flags = FLAG_FIN if frame.fin else 0
            return (
                struct.pack("!II", frame.stream_id & 0x7FFFFFFF, (flags << 24) | len(frame.data))
                + frame.data
            )
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            payload = struct.pack(
                "!IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0
            )
            return self._control(SYN_STREAM, flags, payload + self._compress(frame.headers))
        if isinstance(frame, SynReply | HeadersFrame):
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            payload = struct.pack("!I", frame.stream_id) + self._compress(frame.headers)
            return self._control(kind, FLAG_FIN if frame.fin else 0, payload)
        if isinstance(frame, RstStream):
            return self._control(RST_STREAM, 0, struct.pack("!II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack("!I", len(frame.entries))
            for flags, ident, value in frame.entries:
                body += struct.pack("!II", (flags << 24) | ident, value)
            return self._control(SETTINGS, 0, body)
        if isinstance(frame, Ping):
            return self._control(PING, 0, struct.pack("!I", frame.ping_id))
        if isinstance(frame, GoAway):
            return self._control(
                GOAWAY, 0, struct.pack("!II", frame.last_good_stream_id, frame.status)
            )
        if isinstance(frame, WindowUpdate):
            return self._control(WINDOW_UPDATE, 0, struct.pack("!II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # -- decoding -----------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every complete frame they finish, in order."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            (length_word,) = struct.unpack_from("!I", self._buffer, 4)
            length = length_word & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            frame = self._decode(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _decompress(self, data: bytes) -> Headers:
        try:
            block = self._inflate.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"header block does not inflate: {exc}") from exc
        return decode_header_block(block)

    def _decode(self, head: bytes, payload: bytes) -> Frame | None:
        first, length_word = struct.unpack("!II", head)
        flags = length_word >> 24
        if not first & 0x80000000:
            return DataFrame(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN))
        version = (first >> 16) & 0x7FFF
        kind = first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            return self._decode_control(kind, flags, payload)
        except struct.error as exc:
            raise ProtocolError(f"short control frame of type {kind}") from exc

    def _decode_control(self, kind: int, flags: int, payload: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            stream_id, assoc, prio, _slot = struct.unpack_from("!IIBB", payload)
            return SynStream(
                stream_id & 0x7FFFFFFF,
                self._decompress(payload[10:]),
                associated_id=assoc & 0x7FFFFFFF,
                priority=prio >> 5,
                fin=fin,
                unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (SYN_REPLY, HEADERS):
            (stream_id,) = struct.unpack_from("!I", payload)
            headers = self._decompress(payload[4:])
            cls = SynReply if kind == SYN_REPLY else HeadersFrame
            return cls(stream_id & 0x7FFFFFFF, headers, fin=fin)
        if kind == RST_STREAM:
            stream_id, status = struct.unpack_from("!II", payload)
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            (count,) = struct.unpack_from("!I", payload)
            entries = []
            for i in range(count):
                word, value = struct.unpack_from("!II", payload, 4 + 8 * i)
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(entries)
        if kind == PING:
            return Ping(struct.unpack_from("!I", payload)[0])
        if kind == GOAWAY:
            last, status = struct.unpack_from("!II", payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from("!II", payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # unknown control frames are ignored, as the draft says
