"""Upstream resolvers: where they are, how to ask them, and a TTL cache of their answers.

Upstreams come from ``/run/systemd/resolve/resolv.conf`` when present (the real
servers behind systemd-resolved) else ``/etc/resolv.conf``; loopback stub
addresses such as 127.0.0.53 and the server's own address are skipped, since
forwarding to them would loop.  Answers are cached for their smallest TTL
(capped at :data:`MAX_CACHE_TTL`; negative answers for at most 30 s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import dnslib

MAX_CACHE_TTL = 300
NEGATIVE_TTL = 5
CACHE_SIZE = 10_000
RESOLV_CONFS = ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")


def read_upstreams(
    paths: tuple[str, ...] = RESOLV_CONFS, *, exclude: tuple[str, ...] = ()
) -> list[tuple[str, int]]:
    """Nameservers of the first resolv.conf that exists, without loopback stubs."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            continue
        out = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                addr = parts[1].split("%")[0]
                try:
                    ip = ipaddress.ip_address(addr)
                except ValueError:
                    continue
                if ip.is_loopback or addr in exclude:
                    continue
                out.append((addr, 53))
        return out
    return []


class AnswerCache:
    """Key → raw upstream response, with an expiry from the response's TTLs.

    Keys are (qname, qtype, qclass), or the exact query bytes after the id for
    the UDP fast path.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, reply: Any, raw: bytes) -> None:
        rcode = reply.header.rcode
        if rcode not in (dnslib.RCODE.NOERROR, dnslib.RCODE.NXDOMAIN) or reply.header.tc:
            return
        ttls = [rr.ttl for rr in reply.rr]
        if not ttls:
            ttls = [min(NEGATIVE_TTL * 6, rr.ttl) for rr in reply.auth] or [NEGATIVE_TTL]
        ttl = min(min(ttls), MAX_CACHE_TTL)
        if ttl <= 0:
            return
        self._items[key] = (time.monotonic() + ttl, raw)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


async def ask(host: str, port: int, data: bytes, *, tcp: bool, wait: float) -> bytes:
    """One query to an upstream over UDP or TCP (length-prefixed), ``wait`` seconds per step."""
    if tcp:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), wait))
            return await asyncio.wait_for(reader.readexactly(n), wait)
        finally:
            writer.close()
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ClientProtocol(fut), remote_addr=(host, port)
    )
    try:
        transport.sendto(data)
        return await asyncio.wait_for(fut, wait)
    finally:
        transport.close()


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future[bytes]) -> None:
        self.fut = fut

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)
