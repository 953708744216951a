"""The generated ruleset loaded into the kernel, driving real traffic between
network namespaces (root, nft and ip required; skipped otherwise).

Each test uses its own table name and always deletes it.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microkube.controllers.endpointset import node_address
from microkube.netproxy import apply, model, proxier, rules
from microkube.settings import Settings
from tests.netproxy.conftest import PodNet, need_nft


@pytest.fixture
def table() -> Iterator[str]:
    need_nft()
    name = f"mktest{os.getpid()}_{random.randint(0, 9999)}"
    try:
        yield name
    finally:
        apply.run_nft(rules.delete_script(name))
        assert (
            name
            not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        )


ALL_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")


def localnet_of(dev: str) -> str:
    return Path(f"/proc/sys/net/ipv4/conf/{dev}/route_localnet").read_text().strip()


def svc(name: str, ip: str, *, port: int = 80, node_port: int = 0, **spec: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"name": "http", "port": port, "protocol": "TCP"}
    if node_port:
        p["nodePort"] = node_port
    return {
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "clusterIP": ip,
            "ports": [p],
            **spec,
        },
    }


def eslice(service: str, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "name": f"{service}-x",
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


def get(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def vip() -> str:
    return f"10.239.{random.randint(0, 250)}.{random.randint(2, 250)}"


def free_node_port() -> int:
    return random.randint(30000, 32767)


def test_cluster_ip_load_balancing_hairpin_and_updates(table: str, pods: list[PodNet]) -> None:
    ip = vip()
    a = apply.Applier(rules.ProxyConfig(table))
    services = [svc("web", ip)]
    a.sync(model.build(services, [eslice("web", [p.ip for p in pods])]))
    hits = Counter(get(ip, 80) for _ in range(120))
    assert set(hits) == {"pod0", "pod1"}
    assert min(hits.values()) >= 25, hits  # even random split (p of failing ~1e-10)
    # Pod → ClusterIP → itself (hairpin) and → the other pod.
    out = pods[0].run(
        "python3",
        "-c",
        f"import urllib.request as u; print(u.urlopen('http://{ip}/', timeout=2).read().decode())",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("pod0", "pod1")
    # Scale down to one endpoint: the stale endpoint chain is removed.
    a.sync(model.build(services, [eslice("web", [pods[1].ip])]))
    assert {get(ip, 80) for _ in range(10)} == {"pod1"}
    listing = subprocess.run(
        ["nft", "list", "table", "ip", table], capture_output=True, text=True
    ).stdout
    assert pods[0].ip not in listing
    # Deleting the table on close removes everything.
    a.close()
    assert (
        table
        not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    )


def test_no_endpoints_rejects_with_reset(table: str, pods: list[PodNet]) -> None:
    ip = vip()
    a = apply.Applier(rules.ProxyConfig(table))
    a.sync(model.build([svc("empty", ip)], []))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 80), timeout=2).close()
    # From a pod too (forward hook).
    out = pods[0].run("python3", "-c", f"import socket; socket.create_connection(('{ip}', 80), 2)")
    assert "ConnectionRefusedError" in out.stderr


def test_client_ip_affinity(table: str, pods: list[PodNet]) -> None:
    ip = vip()
    a = apply.Applier(rules.ProxyConfig(table))
    services = [
        svc(
            "sticky",
            ip,
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        )
    ]
    slices = [eslice("sticky", [p.ip for p in pods])]
    a.sync(model.build(services, slices))
    assert len({get(ip, 80) for _ in range(30)}) == 1
    # A reload keeps the affinity state.
    first = get(ip, 80)
    a.sync(model.build(services + [svc("other", vip())], slices))
    assert {get(ip, 80) for _ in range(10)} == {first}


def test_node_ports_on_node_address_and_localhost(
    table: str, pods: list[PodNet], tmp_path: Path
) -> None:
    ip, port = vip(), free_node_port()
    before = ALL_LOCALNET.read_text()
    a = apply.Applier(rules.ProxyConfig(table), localnet_cidrs=(pods[0].cidr,))
    try:
        a.sync(model.build([svc("np", ip, node_port=port)], [eslice("np", [pods[0].ip])]))
        assert get(node_address(), port) == "pod0"
        # route_localnet only on the pod network's interface, never host-wide.
        assert localnet_of(pods[0].host_if) == "1" and localnet_of(pods[1].host_if) == "0"
        assert ALL_LOCALNET.read_text() == before
        assert get("127.0.0.1", port) == "pod0"
    finally:
        a.close()


def test_loopback_api_reachable_from_pods(table: str, pods: list[PodNet], tmp_path: Path) -> None:
    """The API server on 127.0.0.1 only: pods reach it through the kubernetes ClusterIP."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"api")

        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    api_port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ip = vip()
    node_ip = node_address()
    before = ALL_LOCALNET.read_text()
    settings = Settings(state_dir=tmp_path)
    settings.api.bind_address, settings.api.port = "127.0.0.1", api_port
    kube = svc("kubernetes", ip, port=443)
    kube["spec"]["ports"][0]["name"] = "https"
    sl = {
        "metadata": {
            "namespace": "default",
            "name": "kubernetes",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
    }
    a = apply.Applier(rules.ProxyConfig(table), localnet_cidrs=(pods[0].cidr,))
    try:
        a.sync(proxier.localize_api(model.build([kube], [sl]), settings))
        out = pods[0].run(
            "python3",
            "-c",
            f"import urllib.request as u; print(u.urlopen('http://{ip}:443/', timeout=3).read().decode())",
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "api"
        # Without DNAT, 127/8 stays unreachable from the pod.
        out = pods[0].run(
            "python3",
            "-c",
            f"import socket; s=socket.socket(); s.settimeout(1); s.connect(('127.0.0.1', {api_port}))",
        )
        assert out.returncode != 0
    finally:
        a.close()
        httpd.shutdown()
        httpd.server_close()
    assert ALL_LOCALNET.read_text() == before


def test_udp_conntrack_follows_endpoint_changes(table: str, pods: list[PodNet]) -> None:
    """A UDP client keeping its socket is moved off a removed endpoint."""
    from microkube.netproxy import conntrack

    ip = vip()
    udp_svc = svc("dns", ip, port=53)
    udp_svc["spec"]["ports"][0].update(protocol="UDP", name="dns")

    def udp_slice(pod: PodNet) -> dict[str, Any]:
        sl = eslice("dns", [pod.ip])
        sl["ports"] = [{"name": "dns", "port": 8081, "protocol": "UDP"}]
        return sl

    a = apply.Applier(rules.ProxyConfig(table))
    first = model.build([udp_svc], [udp_slice(pods[0])])
    a.sync(first)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((ip, 53))
        s.send(b"?")
        assert s.recv(100) == b"pod0"
        second = model.build([udp_svc], [udp_slice(pods[1])])
        a.sync(second)
        assert conntrack.cleanup(first, second) == 1
        s.send(b"?")
        assert s.recv(100) == b"pod1"


def test_partial_syncs_end_where_a_full_load_does() -> None:
    """Random Service/endpoint churn loaded incrementally equals one full load of the end state."""
    need_nft()
    rng = random.Random(5)
    tag = f"{os.getpid()}_{random.randint(0, 9999)}"
    inc_table, full_table = f"mkinc{tag}", f"mkfull{tag}"
    inc = apply.Applier(rules.ProxyConfig(inc_table))
    full = apply.Applier(rules.ProxyConfig(full_table))

    def world() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        services, slices = [], []
        for i in rng.sample(range(12), rng.randint(0, 12)):
            extra: dict[str, Any] = {}
            if rng.random() < 0.3:
                timeout = rng.choice([30, 60])
                extra = {
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
                }
            node_port = 30100 + i if rng.random() < 0.3 else 0
            services.append(svc(f"s{i}", f"10.239.9.{i + 1}", node_port=node_port, **extra))
            ips = [f"10.238.9.{j}" for j in rng.sample(range(1, 9), rng.randint(0, 4))]
            slices.append(eslice(f"s{i}", ips))
        return services, slices

    try:
        for _ in range(25):
            last = world()
            inc.sync(model.build(*last))
        full.sync(model.build(*last))

        def listing(table: str) -> dict[str, str]:
            """Chains, sets and maps by name; element order and block order do not matter."""
            out = subprocess.run(
                ["nft", "list", "table", "ip", table], capture_output=True, text=True, check=True
            ).stdout
            blocks = re.findall(r"^\t(\w+ \S+) \{\n(.*?)^\t\}", out, re.M | re.S)
            norm = {}
            for head, body in blocks:
                text = " ".join(body.split())
                m = re.search(r"elements = \{ (.*?) \}", text)
                if m:
                    items = sorted(x.strip() for x in m.group(1).split(","))
                    text = text.replace(m.group(0), "elements = " + ", ".join(items))
                norm[head] = text
            return norm

        got, want = listing(inc_table), listing(full_table)
        assert len(want) > 10 and got == want
    finally:
        inc.close()
        full.close()
