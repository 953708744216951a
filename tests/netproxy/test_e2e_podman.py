"""End to end with real Podman: cluster DNS and the service proxy seen from pods and the host.

One ``microkube serve`` (unique instance, random pod and service CIDRs so that
no other instance's ClusterIPs or DNS address collide).  What happens inside
pods is observed through readiness probes: the client pod only becomes Ready
when ``wget http://web.default.svc.cluster.local/`` returns a web pod's page,
which needs the DNS server, the kube-dns Service DNAT, the endpoints
controller (named targetPort) and the proxy's ClusterIP DNAT all working.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microkube.controllers.endpointset import node_address
from tests.support import images
from tests.support.kube import PODMAN_E2E, apply, eventually, get_json, ready
from tests.support.server import Kubectl, Server, kubectl_for, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.timeout(240)]
IMAGE = images.BUSYBOX_IMAGE
R = random.randint(1, 254)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    base = tmp_path_factory.mktemp("e2e")
    with podman_server(base, pod_cidr=f"10.217.{R}.0/24", service_cidr=f"10.218.{R}.0/24") as srv:
        yield srv


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for(server, tmp_path_factory)


def probe(cmd: str) -> dict[str, Any]:
    return {
        "exec": {"command": ["sh", "-c", cmd]},
        "periodSeconds": 1,
        "failureThreshold": 1,
        "timeoutSeconds": 5,
    }


# busybox's own resolver (the static binary's libc getaddrinfo crashes without NSS modules).
RESOLVE = "resolve() { nslookup $1 | awk '/^Address: /{print $2}' | tail -1; }; "
GET = RESOLVE + "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2"


def web_pod(
    name: str,
    probe_cmd: str = "wget -q -O- http://127.0.0.1:8080/",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": IMAGE,
                    "command": [
                        "sh",
                        "-c",
                        f"mkdir -p /www; echo {name} > /www/index.html; exec httpd -f -p 8080 -h /www",
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": probe(probe_cmd),
                }
            ],
        },
    }


def test_dns_and_service_proxy_from_pods_and_host(kubectl: Kubectl, server: Server) -> None:
    apply(
        kubectl,
        web_pod("web-a"),
        web_pod("web-b"),
        # Reaches itself through its own Service (hairpin); published while not ready.
        web_pod(
            "self",
            f"{GET} $(resolve self.default.svc.cluster.local) 80 | grep -q self",
            {"app": "self"},
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "self"},
            "spec": {
                "selector": {"app": "self"},
                "publishNotReadyAddresses": True,
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "image": IMAGE,
                        "command": ["sleep", "3600"],
                        "readinessProbe": probe(
                            f"{GET} $(resolve web.default.svc.cluster.local) 80 | grep -q web- && "
                            "nc -w 2 $(resolve kubernetes.default.svc.cluster.local) 443 </dev/null"
                        ),
                    }
                ],
            },
        },
    )
    for name in ("web-a", "web-b"):
        eventually(lambda n=name: ready(get_json(kubectl, "pod", n)), f"{name} ready")
    eventually(
        lambda: ready(get_json(kubectl, "pod", "client")), "client reaches web via DNS + ClusterIP"
    )

    svc = get_json(kubectl, "service", "web")
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    ep = get_json(kubectl, "endpoints", "web")
    assert sorted(a["ip"] for a in ep["subsets"][0]["addresses"]) == sorted(
        get_json(kubectl, "pod", n)["status"]["podIP"] for n in ("web-a", "web-b")
    )
    assert ep["subsets"][0]["ports"][0]["port"] == 8080

    def fetch(host: str, port: int) -> str:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as r:
            return r.read().decode().strip()

    # From the host: ClusterIP, NodePort on the node address and on 127.0.0.1, both pods used.
    seen = {eventually(lambda: fetch(cluster_ip, 80), "ClusterIP from host") for _ in range(20)}
    assert seen == {"web-a", "web-b"}
    assert fetch(node_address(), node_port) in ("web-a", "web-b")
    assert fetch("127.0.0.1", node_port) in ("web-a", "web-b")

    # The DNS server answers on the pod gateway, also for the host.
    import dnslib

    gateway = f"10.217.{R}.1"
    q = dnslib.DNSRecord.question("web.default.svc.cluster.local")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(q.pack(), (gateway, 53))
        reply = dnslib.DNSRecord.parse(s.recv(4096))
    assert [str(r.rdata) for r in reply.rr] == [cluster_ip]

    # No endpoints (once terminating pods are gone: until then they still serve, as
    # kube-proxy does): connection refused at once, not a timeout.
    kubectl("delete", "pod", "web-a", "web-b", "--wait=false")

    def refused() -> bool:
        try:
            socket.create_connection((cluster_ip, 80), timeout=3).close()
        except ConnectionRefusedError:
            return True
        return False

    eventually(refused, "connection refused without endpoints")
    start = time.monotonic()
    assert refused() and time.monotonic() - start < 1


def test_reset_removes_table(server: Server) -> None:
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert f"table ip {server.instance}" in tables
    assert Path(server.state_dir).exists()
