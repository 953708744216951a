"""The cluster DNS server: dnslib wire format over asyncio UDP and TCP sockets.

Only this package imports dnslib.  Each query goes::

    datagram / TCP frame ─► parse (bad: FORMERR, or dropped if no header)
        ─► Resolver.resolve (cluster zone, cluster reverse zones) ─► authoritative reply
        └► not ours ─► TTL cache ─► upstream resolvers (UDP, TCP on truncation)

Plain queries for cluster names are parsed and answered by :mod:`.wire`
(struct, no dnslib objects: the cache-miss path); everything else uses dnslib.

Upstreams and their answer cache are in :mod:`.upstream`; a cache hit reuses
the stored bytes with the client's query id and question (keeping 0x20 case
randomisation intact).  Repeated identical UDP questions are answered straight
from ``datagram_received`` without a task (cluster answers are kept per cache
generation, so any Service/EndpointSlice change drops them).

In production the server binds the pod network gateway on port 53; tests bind
127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

import dnslib

from microkube.dns import upstream, wire
from microkube.dns.resolver import Answer, Record, Resolver

log = logging.getLogger(__name__)

_RCODES = {"NOERROR": dnslib.RCODE.NOERROR, "NXDOMAIN": dnslib.RCODE.NXDOMAIN}


def _rdata(r: Record) -> Any:
    v = r.value
    if r.rtype == "A":
        return dnslib.A(str(v))
    if r.rtype == "PTR":
        return dnslib.PTR(str(v))
    if r.rtype == "CNAME":
        return dnslib.CNAME(str(v))
    if r.rtype == "NS":
        return dnslib.NS(str(v))
    if r.rtype == "TXT":
        return dnslib.TXT(str(v))
    assert isinstance(v, tuple)
    if r.rtype == "SRV":
        return dnslib.SRV(priority=v[0], weight=v[1], port=v[2], target=v[3])
    if r.rtype == "SOA":
        return dnslib.SOA(mname=v[0], rname=v[1], times=v[2:])
    raise ValueError(r.rtype)


def _rr(r: Record) -> Any:
    return dnslib.RR(r.name, getattr(dnslib.QTYPE, r.rtype), rdata=_rdata(r), ttl=r.ttl)


def _formerr(data: bytes) -> bytes | None:
    """FORMERR with the query's id, or None when not even a header is there."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & 0x8000:  # a response: never answer it (reflection loops)
        return None
    opcode = flags & 0x7800
    return struct.pack("!HHHHHH", qid, 0x8000 | opcode | (flags & 0x0100) | 0x0080 | 1, 0, 0, 0, 0)


def _question_end(data: bytes) -> int:
    """Offset just past the first question (uncompressed, as queries are)."""
    i = 12
    while data[i]:
        i += 1 + data[i]
    return i + 1 + 4


class DnsServer:
    """Cluster DNS on one address, UDP and TCP on the same port."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        host: str = "127.0.0.1",
        port: int = 53,
        upstreams: list[tuple[str, int]] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.resolver = resolver
        self.host = host
        self.port = port
        self.upstreams = (
            upstreams if upstreams is not None else upstream.read_upstreams(exclude=(host,))
        )
        self.timeout = timeout
        self.cache = upstream.AnswerCache()
        self._fast_forwards = upstream.AnswerCache()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Rendered cluster answers by query bytes after the id, valid for one cache generation.
        self._answers: dict[bytes, bytes] = {}
        self._answers_generation = -1

    # --- lifecycle ----------------------------------------------------------

    async def start(self, *, freebind: bool = False) -> None:
        """Bind UDP then TCP on the same port (port 0: a free one, found by retrying).

        ``freebind`` binds an address the host does not have yet (IP_FREEBIND):
        the pod network gateway appears only when Podman creates the bridge.
        """
        loop = asyncio.get_running_loop()
        for _ in range(20):
            usock = _socket(socket.SOCK_DGRAM, self.host, self.port, freebind)
            port = usock.getsockname()[1]
            try:
                tsock = _socket(socket.SOCK_STREAM, self.host, port, freebind)
            except OSError:
                usock.close()
                if self.port:
                    raise
                continue
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=usock
            )
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tsock)
            self._udp = transport
            self.port = port
            return
        raise OSError("no free port for both UDP and TCP")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # --- transports ---------------------------------------------------------

    async def _answer_udp(self, data: bytes, addr: Any) -> None:
        reply = await self.handle(data, udp=True)
        if reply is not None and self._udp is not None:
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), 10)
                (n,) = struct.unpack("!H", head)
                data = await asyncio.wait_for(reader.readexactly(n), 10)
                reply = await self.handle(data, udp=False)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --- queries ------------------------------------------------------------

    def cached_answer(self, data: bytes) -> bytes | None:
        """A rendered cluster answer to the very same query, if the cache has not changed."""
        if self._answers_generation != self.resolver.cache.generation:
            self._answers.clear()
            self._answers_generation = self.resolver.cache.generation
            return None
        hit = self._answers.get(data[2:]) or self._fast_forwards.get(data[2:])
        return None if hit is None else data[:2] + hit

    async def handle(self, data: bytes, *, udp: bool) -> bytes | None:
        """The reply to one wire-format query (None: drop it)."""
        hit = self.cached_answer(data) if udp else None
        if hit is not None:
            return hit
        generation = self.resolver.cache.generation
        fast = wire.parse_query(data)
        if fast is not None:
            qtype = dnslib.QTYPE.get(fast.qtype, str(fast.qtype))
            answer = self.resolver.resolve(fast.qname, qtype)
            if answer is not None and not _needs_chase(answer, qtype):
                raw = wire.encode_reply(fast, answer, udp=udp)
                if raw is not None:
                    self._remember(data, raw, generation, udp=udp)
                    return raw
        try:
            query = dnslib.DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - any parse failure is a malformed packet
            return _formerr(data)
        if query.header.qr:
            return None
        if query.header.opcode != dnslib.OPCODE.QUERY:
            reply = query.reply()
            reply.header.rcode = dnslib.RCODE.NOTIMP
            return bytes(reply.pack())
        if len(query.questions) != 1:
            return _formerr(data)
        q = query.questions[0]
        qtype = dnslib.QTYPE.get(q.qtype, str(q.qtype))
        answer = self.resolver.resolve(str(q.qname), qtype)
        if answer is None:
            return await self._forward(query, data, udp=udp)
        reply = await self._build(query, answer, qtype)
        raw = self._fit(query, reply, udp=udp)
        if len(reply.rr) == len(answer.answer):  # not chased: depends on the cluster only
            self._remember(data, raw, generation, udp=udp)
        return raw

    def _remember(self, data: bytes, raw: bytes, generation: int, *, udp: bool) -> None:
        """Keep a rendered cluster answer for the same query bytes (UDP, same generation)."""
        if udp and generation == self.resolver.cache.generation:
            if len(self._answers) >= upstream.CACHE_SIZE:
                self._answers.clear()
            self._answers[bytes(data[2:])] = raw[2:]

    async def _build(self, query: Any, answer: Answer, qtype: str) -> Any:
        reply = query.reply(aa=1, ra=1)
        reply.header.rcode = _RCODES[answer.rcode]
        for r in answer.answer:
            reply.add_answer(_rr(r))
        for r in answer.authority:
            reply.add_auth(_rr(r))
        for r in answer.additional:
            reply.add_ar(_rr(r))
        if _needs_chase(answer, qtype):
            # ExternalName: resolve the target too, as CoreDNS' upstream option does.
            target = str(answer.answer[-1].value)
            sub = dnslib.DNSRecord.question(target, qtype)
            raw = await self._forward(sub, bytes(sub.pack()), udp=False)
            if raw is not None:
                with contextlib.suppress(Exception):
                    for rr in dnslib.DNSRecord.parse(raw).rr:
                        reply.add_answer(rr)
        return reply

    @staticmethod
    def _fit(query: Any, reply: Any, *, udp: bool) -> bytes:
        raw = bytes(reply.pack())
        if not udp:
            return raw
        limit = 512
        for ar in query.ar:
            if ar.rtype == dnslib.QTYPE.OPT:
                limit = max(512, min(int(ar.rclass), 4096))
        if len(raw) <= limit:
            return raw
        reply.rr, reply.auth, reply.ar = [], [], []
        reply.header.tc = 1
        return bytes(reply.pack())

    async def _forward(self, query: Any, data: bytes, *, udp: bool) -> bytes | None:
        q = query.questions[0]
        key = (str(q.qname).lower(), int(q.qtype), int(q.qclass))
        hit = self.cache.get(key)
        if hit is not None:
            end = _question_end(hit)
            return data[:2] + hit[2:12] + data[12:end] + hit[end:]
        for host, port in self.upstreams:
            try:
                raw = await upstream.ask(host, port, data, tcp=False, wait=self.timeout)
                parsed = dnslib.DNSRecord.parse(raw)
                if parsed.header.tc:
                    raw = await upstream.ask(host, port, data, tcp=True, wait=self.timeout)
                    parsed = dnslib.DNSRecord.parse(raw)
            except (TimeoutError, OSError, dnslib.DNSError) as exc:
                log.debug("dns upstream %s:%d: %r", host, port, exc)
                continue
            if parsed.header.id != query.header.id:
                continue
            self.cache.put(key, parsed, raw)
            if udp and len(raw) > 512 and not query.ar:
                return self._fit(query, parsed, udp=True)
            if udp:
                self._fast_forwards.put(data[2:], parsed, raw[2:])
            return raw
        reply = query.reply(ra=1)
        reply.header.rcode = dnslib.RCODE.SERVFAIL
        return bytes(reply.pack())


def _needs_chase(answer: Answer, qtype: str) -> bool:
    """Only CNAMEs (an ExternalName) for another type: the target is resolved upstream."""
    return (
        bool(answer.answer)
        and qtype not in ("CNAME", "ANY")
        and all(r.rtype == "CNAME" for r in answer.answer)
    )


def _socket(kind: int, host: str, port: int, freebind: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:  # not UDP: it would let two servers share a port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        hit = self.server.cached_answer(data)
        if hit is not None and self.server._udp is not None:
            self.server._udp.sendto(hit, addr)
            return
        self.server._spawn(self.server._answer_udp(data, addr))
