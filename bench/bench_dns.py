"""Cluster DNS benchmark: queries per second and latency percentiles over loopback.

Run from the repository root: ``python bench/bench_dns.py [seconds] [clients]``.
A child process runs :class:`microkube.dns.server.DnsServer` on 127.0.0.1 with
1,000 Services (one headless with 50 endpoints) and a local fake upstream; this
process sends queries from ``clients`` concurrent UDP sockets (each waits for
its answer before asking again, like stub resolvers do) and reports, per mix:

- cluster A records (ClusterIP services);
- headless A records (50 addresses per answer);
- NXDOMAIN for names in the cluster zone;
- forwarded names answered from the TTL cache;
- cluster A and NXDOMAIN with DNS 0x20 random letter case, so every query
  misses the server's rendered-answer cache (the path after any change).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dnslib  # noqa: E402

from microkube.dns.cache import ClusterCache  # noqa: E402
from microkube.dns.resolver import Resolver  # noqa: E402
from microkube.dns.server import DnsServer  # noqa: E402

N_SERVICES = 1000
FRESH_PACKETS = 40_000


def _cache() -> ClusterCache:
    c = ClusterCache()
    c.apply("Namespace", "ADDED", {"metadata": {"name": "default"}})
    for i in range(N_SERVICES):
        c.apply(
            "Service",
            "ADDED",
            {
                "metadata": {"namespace": "default", "name": f"svc{i}"},
                "spec": {
                    "clusterIP": f"10.152.{180 + i // 250}.{i % 250 + 1}",
                    "ports": [{"name": "http", "port": 80}],
                },
            },
        )
    c.apply(
        "Service",
        "ADDED",
        {"metadata": {"namespace": "default", "name": "hl"}, "spec": {"clusterIP": "None"}},
    )
    c.apply(
        "EndpointSlice",
        "ADDED",
        {
            "metadata": {
                "namespace": "default",
                "name": "hl-1",
                "labels": {"kubernetes.io/service-name": "hl"},
            },
            "ports": [],
            "endpoints": [
                {"addresses": [f"10.1.1.{i}"], "conditions": {"ready": True}} for i in range(1, 51)
            ],
        },
    )
    return c


def _serve(port_q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Upstream(asyncio.DatagramProtocol):
            def connection_made(self, t: asyncio.BaseTransport) -> None:
                self.t = t

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                q = dnslib.DNSRecord.parse(data)
                r = q.reply()
                r.add_answer(dnslib.RR(q.q.qname, rdata=dnslib.A("192.0.2.1"), ttl=300))
                self.t.sendto(r.pack(), addr)  # type: ignore[attr-defined]

        up, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
        srv = DnsServer(
            Resolver(_cache()),
            host="127.0.0.1",
            port=0,
            upstreams=[("127.0.0.1", up.get_extra_info("sockname")[1])],
        )
        await srv.start()
        port_q.put(srv.port)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def randomize_case(packet: bytes) -> bytes:
    """DNS 0x20: random letter case in the question, so every query is new to the server."""
    bits = random.getrandbits(len(packet))
    return bytes(packet[:12]) + bytes(
        b ^ 0x20 if 97 <= (b | 0x20) <= 122 and (bits >> i) & 1 else b
        for i, b in enumerate(packet[12:])
    )


def _client(
    port: int,
    names: list[str],
    seconds: float,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
    fresh: bool = False,
    host: str = "127.0.0.1",
) -> None:
    packets = [dnslib.DNSRecord.question(n).pack() for n in names]
    if fresh:  # made up front, so the client's own work does not slow it down
        packets = [randomize_case(random.choice(packets)) for _ in range(FRESH_PACKETS)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.connect((host, port))
    lat: list[float] = []
    lost = 0
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        # Fresh packets in order: each is new to the server until the list wraps.
        p = packets[n % len(packets)] if fresh else random.choice(packets)
        n += 1
        t0 = time.perf_counter()
        s.send(p)
        try:
            s.recv(65535)
        except TimeoutError:
            lost += 1
            continue
        lat.append(time.perf_counter() - t0)
    out.put((lat, lost))


def run_mix(
    port: int,
    label: str,
    names: list[str],
    seconds: float,
    clients: int,
    *,
    fresh: bool = False,
    host: str = "127.0.0.1",
) -> None:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_client, args=(port, names, seconds, out, fresh, host))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    lat: list[float] = []
    lost = 0
    for _ in procs:
        got, n = out.get()
        lat += got
        lost += n
    for p in procs:
        p.join()
    lat.sort()
    q = len(lat) / seconds

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] * 1000 if lat else float("nan")

    print(f"{label:28s} {q:9.0f} qps   p50 {pct(50):6.3f} ms   p99 {pct(99):6.3f} ms   lost {lost}")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else max(2, (os.cpu_count() or 2) // 2)
    port_q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    server = multiprocessing.Process(target=_serve, args=(port_q,), daemon=True)
    server.start()
    port = port_q.get(timeout=10)
    print(
        f"DNS server 127.0.0.1:{port}, {N_SERVICES} services, {clients} clients, {seconds:.0f} s per mix"
    )
    try:
        mixes = [
            (
                "cluster A (ClusterIP)",
                [f"svc{i}.default.svc.cluster.local" for i in range(0, N_SERVICES, 7)],
            ),
            ("headless A (50 IPs)", ["hl.default.svc.cluster.local"]),
            ("NXDOMAIN in zone", [f"nope{i}.default.svc.cluster.local" for i in range(100)]),
            ("forwarded (cache hits)", [f"host{i}.example.org" for i in range(100)]),
        ]
        for label, names in mixes:
            run_mix(port, label, names, seconds, clients)
        # Every query new to the server (0x20 case), as after any Service/endpoint change.
        run_mix(port, "cluster A, uncached (0x20)", mixes[0][1], seconds, clients, fresh=True)
        run_mix(port, "NXDOMAIN, uncached (0x20)", mixes[2][1], seconds, clients, fresh=True)
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
