"""The DNS server over real UDP/TCP sockets on loopback, with a fake upstream."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import dnslib
import pytest

from microkube.dns.resolver import Resolver
from microkube.dns.server import DnsServer
from microkube.dns.upstream import read_upstreams
from tests.dns.fixtures import populated

pytestmark = pytest.mark.anyio


class Upstream(asyncio.DatagramProtocol):
    """Answers every A question with 192.0.2.99 (TTL 60) and counts queries."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dnslib.DNSRecord.parse(data)
        self.queries.append(str(q.q.qname))
        reply = q.reply(ra=1)
        if str(q.q.qname).lower() == "missing.example.":
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        else:
            reply.add_answer(
                dnslib.RR(q.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.99"), ttl=60)
            )
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    yield proto, transport.get_extra_info("sockname")[1]
    transport.close()


@pytest.fixture
async def server(upstream: tuple[Upstream, int]) -> AsyncIterator[DnsServer]:
    res = Resolver(populated(), domain="cluster.local", reverse_cidrs=("10.152.183.0/24",))
    srv = DnsServer(
        res, host="127.0.0.1", port=0, upstreams=[("127.0.0.1", upstream[1])], timeout=1
    )
    await srv.start()
    yield srv
    await srv.close()


async def udp(port: int, data: bytes, wait: float = 1.0) -> bytes | None:
    def go() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(wait)
            s.sendto(data, ("127.0.0.1", port))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None

    return await asyncio.to_thread(go)


async def tcp(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack("!H", len(data)) + data)
    await writer.drain()
    (n,) = struct.unpack("!H", await reader.readexactly(2))
    out = await reader.readexactly(n)
    writer.close()
    await writer.wait_closed()
    return out


def ask(name: str, qtype: str = "A") -> dnslib.DNSRecord:
    return dnslib.DNSRecord.question(name, qtype)


async def query(server: DnsServer, name: str, qtype: str = "A") -> dnslib.DNSRecord:
    q = ask(name, qtype)
    raw = await udp(server.port, q.pack())
    assert raw is not None
    reply = dnslib.DNSRecord.parse(raw)
    assert reply.header.id == q.header.id
    return reply


async def test_cluster_answers_udp_and_tcp(server: DnsServer) -> None:
    reply = await query(server, "web.default.svc.cluster.local")
    assert reply.header.aa == 1 and reply.header.rcode == dnslib.RCODE.NOERROR
    assert [str(rr.rdata) for rr in reply.rr] == ["10.152.183.20"]
    assert reply.rr[0].ttl == 5
    q = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    reply = dnslib.DNSRecord.parse(await tcp(server.port, q.pack()))
    assert sorted(str(rr.rdata.target) for rr in reply.rr) == [
        "10-1-0-8.db.default.svc.cluster.local.",
        "db-0.db.default.svc.cluster.local.",
    ]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["10.1.0.7", "10.1.0.8"]


async def test_nxdomain_and_nodata(server: DnsServer) -> None:
    reply = await query(server, "nope.default.svc.cluster.local")
    assert reply.header.rcode == dnslib.RCODE.NXDOMAIN
    assert reply.auth[0].rtype == dnslib.QTYPE.SOA
    reply = await query(server, "web.default.svc.cluster.local", "AAAA")
    assert reply.header.rcode == dnslib.RCODE.NOERROR and not reply.rr and reply.auth
    reply = await query(server, "20.183.152.10.in-addr.arpa", "PTR")
    assert str(reply.rr[0].rdata) == "web.default.svc.cluster.local."


async def test_forwarding_and_cache(server: DnsServer, upstream: tuple[Upstream, int]) -> None:
    proto, _ = upstream
    for _ in range(3):
        reply = await query(server, "www.example.org")
        assert str(reply.rr[0].rdata) == "192.0.2.99"
    assert proto.queries == ["www.example.org."]
    # The cached reply echoes the client's question case (0x20).
    reply = await query(server, "WwW.ExAmple.org")
    assert str(reply.q.qname) == "WwW.ExAmple.org." and str(reply.rr[0].rdata) == "192.0.2.99"
    assert len(proto.queries) == 1
    reply = await query(server, "missing.example")
    assert reply.header.rcode == dnslib.RCODE.NXDOMAIN


async def test_external_name_chases_target(server: DnsServer) -> None:
    reply = await query(server, "ext.default.svc.cluster.local")
    assert [(dnslib.QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [
        ("CNAME", "example.org."),
        ("A", "192.0.2.99"),
    ]


async def test_malformed_packets(server: DnsServer) -> None:
    # A header followed by garbage: FORMERR with the same id.
    raw = await udp(server.port, struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\xff\xff")
    assert raw is not None
    reply = dnslib.DNSRecord.parse(raw)
    assert reply.header.id == 0x1234 and reply.header.rcode == dnslib.RCODE.FORMERR
    # Too short for a header: dropped, and the server still works.
    assert await udp(server.port, b"\x01\x02", wait=0.3) is None
    # A response packet is never answered (no reflection loops).
    resp = ask("web.default.svc.cluster.local").reply().pack()
    assert await udp(server.port, resp, wait=0.3) is None
    assert (await query(server, "web.default.svc.cluster.local")).rr


async def test_upstream_down_is_servfail(upstream: tuple[Upstream, int]) -> None:
    res = Resolver(populated())
    srv = DnsServer(res, host="127.0.0.1", port=0, upstreams=[("127.0.0.1", 9)], timeout=0.3)
    await srv.start()
    try:
        reply = await query(srv, "www.example.org")
        assert reply.header.rcode == dnslib.RCODE.SERVFAIL
    finally:
        await srv.close()


def test_read_upstreams_skips_loopback(tmp_path: Any) -> None:
    stub = tmp_path / "stub.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    real = tmp_path / "real.conf"
    real.write_text(
        "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver 10.1.0.1\nsearch x\n"
    )
    assert read_upstreams((str(tmp_path / "absent"), str(real)), exclude=("10.1.0.1",)) == [
        ("192.0.2.1", 53)
    ]
    assert read_upstreams((str(stub),)) == []
