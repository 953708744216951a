"""Hand-rolled DNS wire format for the hot path: one plain question in, one answer out.

dnslib parses and packs through generic, descriptor-driven objects: about
150 µs per cluster answer on a small machine, which capped a cache miss (the
first query for a name, any 0x20-randomised query, every query after a
Service or endpoint change) at some 5,000 answers a second.  A cluster answer
needs only the header, the question copied verbatim and a handful of records
of known types, so this module reads and writes them with :mod:`struct`.

:func:`parse_query` accepts only the common shape: a standard query (QR=0,
opcode QUERY), one question of class IN with an uncompressed name of plain
host-name characters, no answer or authority records and at most one
additional record, an EDNS OPT.  Anything else returns None and takes the
dnslib path in :mod:`.server`, as do answers of a type not listed in
:data:`TYPE_CODES`.  Replies follow dnslib's ``DNSRecord.reply``: the query's
flags with QR, AA and RA set, no OPT record; answer names are compressed
against the question, so they echo the client's letter case; SRV targets are
not compressed (RFC 2782).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from microkube.dns.resolver import Answer, Record

TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "SRV": 33}
RCODES = {"NOERROR": 0, "NXDOMAIN": 3}
_OPT = 41
_HOSTNAME_BYTES = bytes(range(256)).translate(
    None, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*"
)


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    qname: str
    """As dnslib prints it: the labels as sent, dot-terminated."""
    qtype: int
    question: bytes
    """The question section exactly as received (name, type, class)."""
    udp_limit: int
    """Largest UDP reply: 512, or the EDNS payload size (at most 4096)."""


def parse_query(data: bytes) -> Query | None:
    """The query in ``data`` if it has the common shape (see module docstring), else None."""
    if len(data) < 17:
        return None
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    if flags & 0xF800 or qd != 1 or an or ns or ar > 1:
        return None
    i, size, labels = 12, len(data), []
    while True:
        if i >= size:
            return None
        n = data[i]
        if n == 0:
            i += 1
            break
        label = data[i + 1 : i + 1 + n]
        if n > 63 or len(label) != n or label.translate(None, _HOSTNAME_BYTES) != label:
            return None
        labels.append(label.decode("ascii"))
        i += 1 + n
    if i + 4 > size:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    end = i + 4
    limit = 512
    if ar:
        if end + 11 > size or data[end] != 0:
            return None
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, end + 1)
        if rtype != _OPT or end + 11 + rdlen != size:
            return None
        limit = max(512, min(rclass, 4096))
    elif end != size:
        return None
    if qclass != 1:
        return None
    qname = ".".join(labels) + "."
    return Query(qid, flags, qname, qtype, bytes(data[12:end]), limit)


class _Writer:
    def __init__(self, q: Query) -> None:
        self.out = bytearray(12) + q.question
        #: Offsets of the names written so far, by lower-case suffix (for compression).
        self.names: dict[str, int] = {}
        labels = [lb for lb in q.qname.split(".") if lb]
        at = 12
        for k in range(len(labels)):
            self.names.setdefault(".".join(labels[k:]).lower(), at)
            at += 1 + len(labels[k])

    def _name(self, name: str, *, compress: bool = True) -> None:
        labels = [lb for lb in name.split(".") if lb]
        out = self.out
        for k in range(len(labels)):
            suffix = ".".join(labels[k:]).lower()
            at = self.names.get(suffix)
            if compress and at is not None:
                out += struct.pack("!H", 0xC000 | at)
                return
            if at is None and len(out) < 0x3FFF:
                self.names[suffix] = len(out)
            raw = labels[k].encode()
            if len(raw) > 63:
                raise ValueError(f"label too long: {labels[k]!r}")
            out.append(len(raw))
            out += raw
        out.append(0)

    def record(self, r: Record) -> None:
        out = self.out
        self._name(r.name)
        out += struct.pack("!HHIH", TYPE_CODES[r.rtype], 1, r.ttl, 0)
        start = len(out)
        v = r.value
        if r.rtype == "A":
            out += socket.inet_aton(str(v))
        elif r.rtype in ("PTR", "CNAME", "NS"):
            self._name(str(v))
        elif r.rtype == "TXT":
            text = str(v).encode()
            for i in range(0, max(len(text), 1), 255):
                chunk = text[i : i + 255]
                out.append(len(chunk))
                out += chunk
        elif r.rtype == "SRV":
            assert isinstance(v, tuple)
            out += struct.pack("!HHH", int(v[0]), int(v[1]), int(v[2]))
            self._name(str(v[3]), compress=False)
        else:  # SOA
            assert isinstance(v, tuple)
            self._name(str(v[0]))
            self._name(str(v[1]))
            out += struct.pack("!IIIII", *(int(x) for x in v[2:7]))
        struct.pack_into("!H", out, start - 2, len(out) - start)


def encode_reply(q: Query, answer: Answer, *, udp: bool) -> bytes | None:
    """The authoritative reply carrying ``answer`` (None: a record type this module lacks).

    Over UDP a reply larger than the client's limit becomes an empty one with
    TC set, so the client retries over TCP.
    """
    sections = (answer.answer, answer.authority, answer.additional)
    if any(r.rtype not in TYPE_CODES for s in sections for r in s):
        return None
    flags = (q.flags | 0x8000 | 0x0400 | 0x0080) & ~0x000F | RCODES[answer.rcode]
    w = _Writer(q)
    for section in sections:
        for r in section:
            w.record(r)
    out = w.out
    if udp and len(out) > q.udp_limit:
        return struct.pack("!HHHHHH", q.id, flags | 0x0200, 1, 0, 0, 0) + q.question
    struct.pack_into("!HHHHHH", out, 0, q.id, flags, 1, *map(len, sections))
    return bytes(out)
