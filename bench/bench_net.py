"""Networking benchmark on a real ``microkube serve`` with Podman: DNS, ClusterIP, rule updates.

Run from the repository root as root: ``python bench/bench_net.py [--seconds 3] [--services 200]``.

One server (pod CIDR 10.222.250.0/24, service CIDR 10.223.250.0/24, no
registry) with ``--services`` filler Services, a busybox httpd pod behind the
Service ``web`` and an idle ``client`` pod.  "From a pod" means from the
client pod's network namespace (``ip netns exec``, found by its pod IP), so
packets take the pod's path: veth, bridge, the kube-dns ClusterIP DNAT.

- **DNS**: queries per second and latency for cluster names, from the host (to
  the DNS server on the pod gateway) and from the pod (to the kube-dns
  ClusterIP, as its resolv.conf says), by concurrent stub clients that each
  wait for the answer before asking again; *cached* repeats the same few
  hundred questions (answered from the server's rendered-answer cache),
  *uncached* sends each question with DNS 0x20 random case, so every one is
  new to the server, as after any Service or endpoint change.
- **Connection latency**: TCP handshake (``connect``) time to the web pod's IP
  directly and through its ClusterIP, interleaved, from the pod and the host;
  the ratio of medians is the proxy's cost.
- **Rule updates**: client time from the API request to the moment the
  kernel committed the new rules (seen by ``nft monitor``): a Service created
  → its ClusterIP in the service map (rules; no endpoints yet, so reject) →
  with endpoints (DNAT); a port added to an existing Service → the new port
  programmed.

Targets (issue 5): DNS ≥ 5,000 QPS and p99 ≤ 2 ms for cluster names;
ClusterIP ≤ 1.1× the pod IP; Service change to rules applied ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POD_CIDR = "10.222.250.0/24"
SERVICE_CIDR = "10.223.250.0/24"
PACE = 0.002
"""Seconds between two connects of the latency client."""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


# -- clients (also run inside the pod's network namespace) ----------------------


def dns_client(
    host: str, port: int, seconds: float, fresh: bool, names: list[str]
) -> dict[str, Any]:
    import dnslib

    from bench.bench_dns import randomize_case

    packets = [bytes(dnslib.DNSRecord.question(n).pack()) for n in names]
    if fresh:
        packets = [randomize_case(random.choice(packets)) for _ in range(40_000)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.connect((host, port))
    lat: list[float] = []
    lost, n = 0, 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
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
    return {"lat": lat, "lost": lost}


def connect_client(targets: list[str], rounds: int) -> dict[str, list[float]]:
    """Handshake time per target, the targets interleaved round by round."""
    out: dict[str, list[float]] = {t: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            host, port = t.rsplit(":", 1)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            t0 = time.perf_counter()
            s.connect((host, int(port)))
            out[t].append(time.perf_counter() - t0)
            s.close()  # linger 0: a reset, no TIME_WAIT pile-up
            # busybox httpd listens with a backlog of 9 and forks per connection: pace the
            # attempts, or a full queue drops SYNs (a 1 s retransmission in both paths).
            time.sleep(PACE)
    return out


def _child_main(argv: list[str]) -> None:
    kind, spec = argv[0], json.loads(argv[1])
    if kind == "dns":
        result: Any = dns_client(**spec)
    else:
        result = connect_client(**spec)
    sys.stdout.write(json.dumps(result))


def run_clients(netns: str | None, kind: str, spec: dict[str, Any], n: int = 1) -> list[Any]:
    """``n`` client processes, inside ``netns`` when given; their JSON results."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        for _ in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"client failed: {err.decode()[-2000:]}")
        results.append(json.loads(out))
    return results


# -- the cluster -----------------------------------------------------------------


def api(srv: Any, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    code, out = srv.request(method, path, body)
    if code >= 300:
        raise RuntimeError(f"{method} {path}: {code} {out}")
    return dict(out)


def service(name: str, selector: dict[str, str], port: int = 80) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": 8080}],
        },
    }


def pod(name: str, image: str, command: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", command],
                }
            ],
        },
    }


def wait_running(srv: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = api(srv, "GET", f"/api/v1/namespaces/default/pods/{name}")
        if p.get("status", {}).get("podIP") and p["status"].get("phase") == "Running":
            return p
        time.sleep(0.3)
    raise TimeoutError(f"pod {name} not running")


def netns_of(ip: str) -> str:
    for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True
    ).stdout.splitlines():
        ns = line.split()[0]
        addrs = subprocess.run(
            ["ip", "netns", "exec", ns, "ip", "-4", "-o", "addr"], capture_output=True, text=True
        ).stdout
        if f" {ip}/" in addrs:
            return ns
    raise RuntimeError(f"no network namespace holds {ip}")


def wait_port(ip: str, port: int, timeout: float = 60.0) -> None:
    """Until a TCP connect to ip:port succeeds (the first rules loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{ip}:{port} does not answer")


class NftMonitor:
    """``nft monitor new elements`` in a thread: when did an element first reach the kernel?

    A connect attempt cannot tell: on some hosts the default gateway answers
    any SYN, so a ClusterIP without rules looks open.  The monitor prints each
    committed element as the kernel accepts the transaction.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["nft", "monitor", "new", "elements"], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.perf_counter()
            if f" ip {self.table} " in line:
                with self.cond:
                    self.lines.append((now, line))
                    self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait(self, since: int, needle: str, timeout: float = 10.0) -> float:
        """perf_counter time of the first line after ``since`` containing ``needle``."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while True:
                for t, line in self.lines[since:]:
                    if needle in line:
                        return t
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"no nft element {needle!r} within {timeout}s")
                self.cond.wait(left)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# -- measurements ----------------------------------------------------------------


def dns_line(label: str, results: list[dict[str, Any]], seconds: float) -> str:
    lat = [x for r in results for x in r["lat"]]
    lost = sum(r["lost"] for r in results)
    qps = len(lat) / seconds
    return (
        f"  {label:<40} {qps:8.0f} qps   p50 {pct(lat, 50) * 1000:6.3f} ms   "
        f"p99 {pct(lat, 99) * 1000:6.3f} ms   lost {lost}"
    )


def bench_dns(
    netns: str, gateway: str, dns_ip: str, names: list[str], seconds: float, clients: int
) -> None:
    print(
        f"DNS, cluster A records of {len(names)} Services, {clients} clients, {seconds:.0f} s each"
    )
    for where, ns, host in (
        ("host → gateway", None, gateway),
        ("pod → kube-dns ClusterIP", netns, dns_ip),
    ):
        for fresh in (False, True):
            spec = {"host": host, "port": 53, "seconds": seconds, "fresh": fresh, "names": names}
            res = run_clients(ns, "dns", spec, clients)
            print(dns_line(f"{where}, {'uncached (0x20)' if fresh else 'cached'}", res, seconds))


def bench_connect(netns: str, pod_ip: str, cluster_ip: str, rounds: int) -> None:
    print(f"TCP connect latency to the web pod, {rounds} interleaved rounds")
    direct, via = f"{pod_ip}:8080", f"{cluster_ip}:80"
    for where, ns in (("from the pod", netns), ("from the host", None)):
        (res,) = run_clients(ns, "connect", {"targets": [direct, via], "rounds": rounds})
        d, v = res[direct], res[via]
        slow = sum(x > 0.2 for x in d + v)
        print(
            f"  {where:<14} pod IP     p50 {pct(d, 50) * 1e3:6.3f} ms  p99 {pct(d, 99) * 1e3:6.3f} ms  "
            f"mean {statistics.mean(d) * 1e3:6.3f} ms"
        )
        print(
            f"  {where:<14} ClusterIP  p50 {pct(v, 50) * 1e3:6.3f} ms  p99 {pct(v, 99) * 1e3:6.3f} ms  "
            f"mean {statistics.mean(v) * 1e3:6.3f} ms   ratio p50 {pct(v, 50) / pct(d, 50):.2f}x"
            f"  mean {statistics.mean(v) / statistics.mean(d):.2f}x"
            + (f"  ({slow} SYN retransmissions)" if slow else "")
        )


def bench_rules(srv: Any, n: int) -> None:
    from microkube.netproxy import rules

    print(
        f"Service change → rules applied ({n} changes each; ms after the API answered, "
        "i.e. the change was committed, and after the request was sent)"
    )
    mon = NftMonitor(rules.table_name(srv.instance))
    stages: dict[str, list[tuple[float, float]]] = {
        "Service created → ClusterIP rules (reject)": [],
        "Service created → endpoints programmed": [],
        "port added → port rules (reject)": [],
        "port added → port's endpoints programmed": [],
    }
    names = list(stages)
    try:
        for i in range(n):
            mark, t0 = mon.mark(), time.perf_counter()
            body = service(f"probe{i}", {"app": "web"})
            ip = api(srv, "POST", "/api/v1/namespaces/default/services", body)["spec"]["clusterIP"]
            t1 = time.perf_counter()
            for name, needle in (
                (names[0], f"{{ {ip} . tcp . 80"),
                (names[1], f"{{ {ip} . tcp . 80 : goto"),
            ):
                t = mon.wait(mark, needle)
                stages[name].append((t - t1, t - t0))
            port = {"name": "alt", "port": 81, "targetPort": 8080}
            patch = [{"op": "add", "path": "/spec/ports/-", "value": port}]
            mark, t0 = mon.mark(), time.perf_counter()
            code, out = srv.request(
                "PATCH",
                f"/api/v1/namespaces/default/services/probe{i}",
                patch,
                "application/json-patch+json",
            )
            t1 = time.perf_counter()
            if code != 200:
                raise RuntimeError(f"patch: {code} {out}")
            for name, needle in (
                (names[2], f"{{ {ip} . tcp . 81"),
                (names[3], f"{{ {ip} . tcp . 81 : goto"),
            ):
                t = mon.wait(mark, needle)
                stages[name].append((t - t1, t - t0))
            api(srv, "DELETE", f"/api/v1/namespaces/default/services/probe{i}")
            time.sleep(0.2)
    finally:
        mon.close()
    for label, pairs in stages.items():
        after = [a for a, _ in pairs]
        total = [b for _, b in pairs]
        print(
            f"  {label:<42} after commit p50 {pct(after, 50) * 1e3:6.1f}  p99 {pct(after, 99) * 1e3:6.1f}"
            f"   after request p50 {pct(total, 50) * 1e3:6.1f}  p99 {pct(total, 99) * 1e3:6.1f}"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--parts", default="dns,connect,rules", help="comma-separated subset")
    args = ap.parse_args()

    from tests.support import images
    from tests.support.server import podman_server

    if os.geteuid() != 0 or not images.busybox_available():
        raise SystemExit("needs root, podman and /bin/busybox")
    image = images.busybox_image()
    import tempfile

    with (
        tempfile.TemporaryDirectory(prefix="mkbench-net") as tmp,
        podman_server(Path(tmp), pod_cidr=POD_CIDR, service_cidr=SERVICE_CIDR) as srv,
    ):
        for i in range(args.services):
            api(
                srv,
                "POST",
                "/api/v1/namespaces/default/services",
                service(f"svc{i}", {"app": f"none{i}"}),
            )
        api(srv, "POST", "/api/v1/namespaces/default/services", service("web", {"app": "web"}))
        serve = "mkdir -p /www; echo web > /www/index.html; exec httpd -f -p 8080 -h /www"
        api(
            srv, "POST", "/api/v1/namespaces/default/pods", pod("web", image, serve, {"app": "web"})
        )
        api(srv, "POST", "/api/v1/namespaces/default/pods", pod("client", image, "sleep 3600", {}))
        web, client = wait_running(srv, "web"), wait_running(srv, "client")
        cluster_ip = api(srv, "GET", "/api/v1/namespaces/default/services/web")["spec"]["clusterIP"]
        netns = netns_of(client["status"]["podIP"])
        wait_port(cluster_ip, 80)
        gateway = POD_CIDR.replace("0/24", "1")
        dns_ip = SERVICE_CIDR.replace("0/24", "10")
        print(
            f"microkube on Podman, {args.services + 1} Services, this machine ({os.cpu_count()} CPUs), one run"
        )
        names = [f"svc{i}.default.svc.cluster.local" for i in range(args.services)]
        parts = args.parts.split(",")
        if "dns" in parts:
            bench_dns(netns, gateway, dns_ip, names, args.seconds, args.clients)
        if "connect" in parts:
            bench_connect(netns, web["status"]["podIP"], cluster_ip, args.rounds)
        if "rules" in parts:
            bench_rules(srv, args.changes)


if __name__ == "__main__":
    main()
