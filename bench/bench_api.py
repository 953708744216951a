"""API server benchmark: start-up, memory, latency, write throughput, watch delivery.

Run from the repository root: ``python bench/bench_api.py``.  It starts a real
``microkube serve`` (fake runtime, no registry) in a temporary state dir and
measures, in one run on this machine:

- cold start to ``/readyz``;
- idle RSS of the server process;
- single-object GET and CREATE latency p50/p99 (one keep-alive TLS connection);
- creates per second with 1 and 16 clients, next to a raw sqlite3 commit loop
  with the same durability (WAL, synchronous=FULL) on the same disk;
- watch delivery latency (write → event received) to 100 HTTP watchers.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import Server  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class Conn:
    def __init__(self, srv: Server) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        self.c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
        self.h = {"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"}

    def req(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        self.c.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.h)
        r = self.c.getresponse()
        return r.status, r.read()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_sqlite(path: Path, n: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    value = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x" * 10}, "data": {"a": "b"}})
    t0 = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"/registry/configmaps/b/{i}", value))
        db.execute("COMMIT")
    dt = time.perf_counter() - t0
    db.close()
    return n / dt


def creates(srv: Server, clients: int, per_client: int, ns: str) -> float:
    def work(w: int) -> None:
        c = Conn(srv)
        for i in range(per_client):
            code, _ = c.req("POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"c{clients}-{w}-{i}"}, "data": {"a": "b"}})
            assert code == 201, code

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - t0)


def watch_latency(srv: Server, watchers: int, events: int) -> tuple[float, float]:
    c = Conn(srv)
    code, body = c.req("POST", "/api/v1/namespaces", {"metadata": {"name": "wbench"}})
    rv = json.loads(c.req("GET", "/api/v1/namespaces/wbench/configmaps")[1])["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    lat: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(watchers + 1)

    def watcher() -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        s = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=60)
        s.request("GET", f"/api/v1/namespaces/wbench/configmaps?watch=true&resourceVersion={rv}", headers={"Authorization": "Bearer " + srv.token})
        r = s.getresponse()
        ready.wait()
        got = 0
        while got < events:
            line = r.readline()
            if not line:
                break
            now = time.perf_counter()
            ev = json.loads(line)
            name = ev["object"]["metadata"]["name"]
            if name not in sent:  # the namespace's published kube-root-ca.crt
                continue
            with lock:
                lat.append(now - sent[name])
            got += 1
        s.close()

    threads = [threading.Thread(target=watcher) for _ in range(watchers)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.5)
    for i in range(events):
        name = f"e{i}"
        sent[name] = time.perf_counter()
        c.req("POST", "/api/v1/namespaces/wbench/configmaps", {"metadata": {"name": name}})
        time.sleep(0.02)
    for t in threads:
        t.join(60)
    return pct(lat, 50) * 1000, pct(lat, 99) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        base = Path(d)
        srv = Server(base / "state", extra_args=["--no-registry", "--runtime", "fake"])
        t0 = time.perf_counter()
        srv.start()
        cold = time.perf_counter() - t0
        try:
            run_benches(srv, base, cold)
        finally:
            srv.stop()  # also when a step fails, so no server is left behind


def run_benches(srv: Server, base: Path, cold: float) -> None:
    assert srv.proc is not None
    time.sleep(2)
    idle = rss_mb(srv.proc.pid)
    c = Conn(srv)
    c.req("POST", "/api/v1/namespaces", {"metadata": {"name": "b"}})
    c.req("POST", "/api/v1/namespaces/b/configmaps", {"metadata": {"name": "g"}, "data": {"a": "b"}})
    get_lat, create_lat = [], []
    for _ in range(500):
        t = time.perf_counter()
        c.req("GET", "/api/v1/namespaces/b/configmaps/g")
        get_lat.append(time.perf_counter() - t)
    for i in range(300):
        t = time.perf_counter()
        c.req("POST", "/api/v1/namespaces/b/configmaps", {"metadata": {"name": f"l{i}"}})
        create_lat.append(time.perf_counter() - t)
    raw = raw_sqlite(base / "raw.db", 2000)
    one = creates(srv, 1, 600, "b")
    sixteen = creates(srv, 16, 80, "b")
    w50, w99 = watch_latency(srv, 100, 50)
    print("microkube API benchmark (this machine, one run)")
    print(f"  cold start to /readyz        {cold * 1000:8.0f} ms   (target <= 1000 ms; includes Python start-up)")
    print(f"  idle RSS                     {idle:8.1f} MB   (target <= 80 MB)")
    print(f"  GET    p50 / p99             {pct(get_lat, 50) * 1000:6.2f} / {pct(get_lat, 99) * 1000:6.2f} ms")
    print(f"  CREATE p50 / p99             {pct(create_lat, 50) * 1000:6.2f} / {pct(create_lat, 99) * 1000:6.2f} ms")
    print(f"  raw sqlite3 commit loop      {raw:8.0f} /s   (WAL, synchronous=FULL)")
    print(f"  creates/s, 1 client          {one:8.0f} /s   ({one / raw * 100:.0f}% of raw)")
    print(f"  creates/s, 16 clients        {sixteen:8.0f} /s   ({sixteen / raw * 100:.0f}% of raw)")
    print(f"  watch delivery to 100 watchers p50 / p99  {w50:.2f} / {w99:.2f} ms  (target p99 <= 20 ms)")


if __name__ == "__main__":
    main()
