"""The struct-based fast path answers exactly as the dnslib path does."""

from __future__ import annotations

import struct

import dnslib
import pytest

from microkube.dns import wire
from microkube.dns.resolver import Resolver
from microkube.dns.server import DnsServer
from tests.dns.fixtures import ep, eslice, populated, service


def resolver() -> Resolver:
    c = populated()
    c.apply("Service", "ADDED", service("default", "big", "None"))
    c.apply(
        "EndpointSlice",
        "ADDED",
        eslice("default", "big", "big-1", [ep(f"10.1.1.{i}") for i in range(1, 61)], []),
    )
    return Resolver(c, domain="cluster.local", reverse_cidrs=("10.152.183.0/24",))


def slow_reply(res: Resolver, query: dnslib.DNSRecord, *, udp: bool) -> bytes:
    """What the dnslib path of the server renders."""
    q = query.questions[0]
    qtype = dnslib.QTYPE.get(q.qtype, str(q.qtype))
    answer = res.resolve(str(q.qname), qtype)
    assert answer is not None
    srv = DnsServer(res, upstreams=[])
    reply = query.reply(aa=1, ra=1)
    reply.header.rcode = getattr(dnslib.RCODE, answer.rcode)
    for r in answer.answer:
        reply.add_answer(dnslib.RR(r.name, getattr(dnslib.QTYPE, r.rtype), rdata=_rd(r), ttl=r.ttl))
    for r in answer.authority:
        reply.add_auth(dnslib.RR(r.name, getattr(dnslib.QTYPE, r.rtype), rdata=_rd(r), ttl=r.ttl))
    for r in answer.additional:
        reply.add_ar(dnslib.RR(r.name, getattr(dnslib.QTYPE, r.rtype), rdata=_rd(r), ttl=r.ttl))
    return srv._fit(query, reply, udp=udp)


def _rd(r: object) -> object:
    from microkube.dns.server import _rdata

    return _rdata(r)  # type: ignore[arg-type]


def fast_reply(res: Resolver, data: bytes, *, udp: bool) -> bytes:
    q = wire.parse_query(data)
    assert q is not None
    answer = res.resolve(q.qname, dnslib.QTYPE.get(q.qtype, str(q.qtype)))
    assert answer is not None
    raw = wire.encode_reply(q, answer, udp=udp)
    assert raw is not None
    return raw


CASES = [
    ("web.default.svc.cluster.local", "A"),
    ("WeB.DeFault.SVC.cluster.LOCAL", "A"),  # DNS 0x20
    ("web.default.svc.cluster.local", "SRV"),
    ("web.default.svc.cluster.local", "AAAA"),  # NODATA
    ("web.default.svc.cluster.local", "ANY"),
    ("_http._tcp.web.default.svc.cluster.local", "SRV"),
    ("_pg._tcp.db.default.svc.cluster.local", "SRV"),  # headless: glue in additional
    ("db.default.svc.cluster.local", "A"),
    ("db-0.db.default.svc.cluster.local", "A"),
    ("nope.default.svc.cluster.local", "A"),  # NXDOMAIN + SOA
    ("NoPe.Default.svc.Cluster.Local", "A"),
    ("10-1-0-9.default.pod.cluster.local", "A"),
    ("20.183.152.10.in-addr.arpa", "PTR"),
    ("99.183.152.10.in-addr.arpa", "PTR"),  # NXDOMAIN in a cluster reverse zone
    ("dns-version.cluster.local", "TXT"),
    ("cluster.local", "SOA"),
    ("cluster.local", "NS"),
    ("ext.default.svc.cluster.local", "CNAME"),
    ("big.default.svc.cluster.local", "A"),  # 60 addresses: TC over UDP without EDNS
]


@pytest.mark.parametrize("name,qtype", CASES)
@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize("udp", [True, False])
def test_same_answer_as_dnslib(name: str, qtype: str, edns: bool, udp: bool) -> None:
    res = resolver()
    query = dnslib.DNSRecord.question(name, qtype)
    if edns:
        query.add_ar(dnslib.EDNS0(udp_len=4096))
    data = bytes(query.pack())
    fast = dnslib.DNSRecord.parse(fast_reply(res, data, udp=udp))
    slow = dnslib.DNSRecord.parse(slow_reply(res, query, udp=udp))
    assert fast.header.id == query.header.id
    assert str(fast.header) == str(slow.header)
    assert str(fast.q) == str(query.q)  # the question echoed byte for byte (0x20)
    assert str(fast).lower() == str(slow).lower()


def test_udp_truncation_and_edns_size() -> None:
    res = resolver()
    query = dnslib.DNSRecord.question("big.default.svc.cluster.local")
    raw = fast_reply(res, bytes(query.pack()), udp=True)
    reply = dnslib.DNSRecord.parse(raw)
    assert reply.header.tc == 1 and not reply.rr and len(raw) <= 512
    query.add_ar(dnslib.EDNS0(udp_len=4096))
    reply = dnslib.DNSRecord.parse(fast_reply(res, bytes(query.pack()), udp=True))
    assert reply.header.tc == 0 and len(reply.rr) == 60


def test_answer_names_are_compressed_against_the_question() -> None:
    res = resolver()
    data = bytes(dnslib.DNSRecord.question("WEB.default.svc.cluster.local").pack())
    raw = fast_reply(res, data, udp=True)
    end = len(data)
    assert raw[end : end + 2] == b"\xc0\x0c"  # the answer's name points at the question


def header(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 7, flags, qd, an, ns, ar)


QNAME = b"\x03web\x07default\x03svc\x07cluster\x05local\x00"


@pytest.mark.parametrize(
    "data",
    [
        header(flags=0x8100) + QNAME + b"\x00\x01\x00\x01",  # a response
        header(flags=0x2100) + QNAME + b"\x00\x01\x00\x01",  # opcode UPDATE
        header(qd=2) + QNAME + b"\x00\x01\x00\x01" * 2,  # two questions
        header(an=1) + QNAME + b"\x00\x01\x00\x01",
        header() + b"\x03web\xc0\x0c" + b"\x00\x01\x00\x01",  # compression pointer
        header() + b"\x03w.b\x00" + b"\x00\x01\x00\x01",  # a dot inside a label
        header() + b"\x03w\x00b\x00" + b"\x00\x01\x00\x01",  # a NUL inside a label
        header() + QNAME + b"\x00\x01\x00\x03",  # class CH
        header() + QNAME + b"\x00\x01\x00\x01junk",  # trailing bytes
        header() + QNAME + b"\x00\x01",  # truncated question
        header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x00\x00\x01\x00\x01",  # not an OPT
        header()[:10],
    ],
)
def test_unusual_queries_take_the_dnslib_path(data: bytes) -> None:
    assert wire.parse_query(data) is None


def test_plain_and_edns_queries_parse() -> None:
    q = wire.parse_query(header() + QNAME + b"\x00\x21\x00\x01")
    assert q is not None and (q.qname, q.qtype, q.udp_limit) == (
        "web.default.svc.cluster.local.",
        33,
        512,
    )
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    q = wire.parse_query(header(ar=1) + QNAME + b"\x00\x01\x00\x01" + opt)
    assert q is not None and q.udp_limit == 1232
