"""End to end: Services, the service proxy and cluster DNS as a user sees them.

The check of the networking issue, with the real kubectl on real Podman: two
ReplicaSets (``release: spring`` and ``release: summer``) run a busybox httpd
answering with its pod name; the Service ``echo`` selects only summer.  From
throw-away pods (``kubectl run -i --rm``), repeated ``curl http://echo/`` reach
only the summer pods, spread over both; ``echo``, ``echo.default`` and
``echo.default.svc.cluster.local`` resolve; the service-link environment
variables are there (and only ``KUBERNETES_*`` with ``enableServiceLinks:
false``).  From the host, the NodePort answers on 127.0.0.1 and the
LoadBalancer on its ingress IP.  A summer pod failing readiness leaves the
endpoints and gets no more traffic.

The client image has the host's dynamically linked curl (see
:func:`tests.support.images.curl_image`), so short names go through glibc's
resolver with the pod's ``search`` list and ``ndots:5``, as in a real image.
One server per module: pod CIDR 10.222.R.0/24, service CIDR 10.223.R.0/24.
"""

from __future__ import annotations

import random
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from microkube.controllers.endpointset import node_address
from tests.support import images
from tests.support.kube import NEEDS_CURL, PODMAN_E2E, eventually, get_json, ready
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, NEEDS_CURL, pytest.mark.kubectl, pytest.mark.timeout(300)]
R = random.randint(1, 199)  # 250+ are the benches'
LB_PORT = 20000 + R  # the LoadBalancer listens on the node address: keep off common ports
REQUESTS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    images.curl_image()
    base = tmp_path_factory.mktemp("svc")
    with podman_server(base, pod_cidr=f"10.222.{R}.0/24", service_cidr=f"10.223.{R}.0/24") as srv:
        yield srv


def replica_set(release: str) -> dict[str, Any]:
    labels = {"app": "echo", "release": release}
    serve = "mkdir -p /www; echo $POD_NAME > /www/index.html; exec httpd -f -p 8080 -h /www"
    ready = "[ ! -e /tmp/unready ] && wget -q -O /dev/null http://127.0.0.1:8080/"
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"echo-{release}", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "httpd",
                            "image": images.BUSYBOX_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", serve],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "exec": {"command": ["sh", "-c", ready]},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def service(name: str, svc_type: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": svc_type,
            "selector": {"app": "echo", "release": "summer"},
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def run_in_pod(kubectl: Kubectl, name: str, script: str, *extra: str) -> list[str]:
    """``kubectl run -i --rm`` a throw-away curl pod; its output lines.

    The script first reads a line from stdin, which arrives only once kubectl
    has attached: no output is written before anyone listens.
    """
    out = kubectl(
        "run", "-i", "--rm", "--restart=Never", name,
        f"--image={images.CURL_IMAGE}", "--image-pull-policy=Never", "--pod-running-timeout=2m", *extra,
        "--", "sh", "-c", "read go; " + script,
        input="go\n", timeout=180,
    )  # fmt: skip
    assert f'pod "{name}" deleted' in out.stdout, out
    assert kubectl("get", "pod", name, check=False).returncode == 1
    return out.stdout.splitlines()


def summer_pods(kubectl: Kubectl) -> dict[str, dict[str, Any]]:
    items = get_json(kubectl, "pods", "-l", "release=summer")["items"]
    return {p["metadata"]["name"]: p for p in items}


def endpoint_ips(kubectl: Kubectl) -> list[str]:
    subsets = get_json(kubectl, "endpoints", "echo").get("subsets") or [{}]
    return sorted(a["ip"] for s in subsets for a in s.get("addresses") or [])


# Requests to http://echo/ (glibc resolver, search list), one answering pod name a line.
CURL_LOOP = f'for i in $(seq {REQUESTS}); do echo "GOT $(curl -sS -m 3 http://echo/)"; done; '


def test_services_dns_env_and_readiness(kubectl: Kubectl, server: Server) -> None:
    # The Services exist before the pods: service links are fixed at container start.
    docs = [
        service("echo", "NodePort", 80),
        service("echo-lb", "LoadBalancer", LB_PORT),
        replica_set("spring"),
        replica_set("summer"),
    ]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    for release in ("spring", "summer"):
        eventually(
            lambda r=release: (
                get_json(kubectl, "rs", f"echo-{r}")["status"].get("readyReplicas") == 2
            ),
            f"{release} pods ready",
        )
    summer = summer_pods(kubectl)
    assert len(summer) == 2
    summer_ips = sorted(p["status"]["podIP"] for p in summer.values())
    eventually(lambda: endpoint_ips(kubectl) == summer_ips, "endpoints hold the summer pods")
    svc = get_json(kubectl, "service", "echo")
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    assert cluster_ip.startswith(f"10.223.{R}.")
    master_ip = get_json(kubectl, "service", "kubernetes")["spec"]["clusterIP"]

    # -- from a pod: DNS, service links, and traffic to summer only, over both pods.
    lines = run_in_pod(
        kubectl,
        "client",
        "for n in echo echo.default echo.default.svc.cluster.local; do "
        "  echo \"NS $n $(nslookup $n | awk '/^Address: /{print $2}' | tail -1)\"; "
        "  echo \"GETENT $n $(getent hosts $n | awk '{print $1}')\"; "
        '  echo "HOST $n $(curl -sS -m 3 http://$n/)"; '
        "done; "
        "env | grep -E '^(ECHO_(SERVICE|PORT)|KUBERNETES_)' | sed 's/^/ENV /'; " + CURL_LOOP,
    )
    names = ["echo", "echo.default", "echo.default.svc.cluster.local"]
    # glibc: the search list and ndots:5, as in any real image.
    assert [ln for ln in lines if ln.startswith("GETENT ")] == [
        f"GETENT {n} {cluster_ip}" for n in names
    ], lines
    # busybox nslookup applies the search list only to names without a dot.
    nslookup = [ln for ln in lines if ln.startswith("NS ")]
    assert f"NS echo {cluster_ip}" in nslookup, lines
    assert f"NS echo.default.svc.cluster.local {cluster_ip}" in nslookup, lines
    by_name = [ln.split(" ", 2) for ln in lines if ln.startswith("HOST ")]
    assert len(by_name) == 3 and all(answer in summer for _, _, answer in by_name), lines
    env = dict(ln[4:].split("=", 1) for ln in lines if ln.startswith("ENV "))
    assert env == {
        "ECHO_SERVICE_HOST": cluster_ip,
        "ECHO_SERVICE_PORT": "80",
        "ECHO_SERVICE_PORT_HTTP": "80",
        "ECHO_PORT": f"tcp://{cluster_ip}:80",
        "ECHO_PORT_80_TCP": f"tcp://{cluster_ip}:80",
        "ECHO_PORT_80_TCP_PROTO": "tcp",
        "ECHO_PORT_80_TCP_PORT": "80",
        "ECHO_PORT_80_TCP_ADDR": cluster_ip,
        "KUBERNETES_SERVICE_HOST": master_ip,
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{master_ip}:443",
        "KUBERNETES_PORT_443_TCP": f"tcp://{master_ip}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": master_ip,
    }, lines
    hits = Counter(ln[4:] for ln in lines if ln.startswith("GOT "))
    assert sum(hits.values()) == REQUESTS
    assert set(hits) == set(summer), hits  # only summer, and both of them

    # enableServiceLinks: false keeps the KUBERNETES_* variables only.
    lines = run_in_pod(
        kubectl,
        "nolinks",
        "env | grep -E '^(ECHO|KUBERNETES)_' | sed 's/^/ENV /'",
        '--overrides={"spec":{"enableServiceLinks":false}}',
    )
    names = {ln[4:].split("=", 1)[0] for ln in lines if ln.startswith("ENV ")}
    assert names and all(n.startswith("KUBERNETES_") for n in names), lines

    # -- from the host: NodePort on 127.0.0.1, the LoadBalancer on its ingress IP.
    def fetch(host: str, port: int) -> str:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as r:
            return str(r.read().decode().strip())

    assert {fetch("127.0.0.1", node_port) for _ in range(20)} == set(summer)
    lb = eventually(
        lambda: get_json(kubectl, "service", "echo-lb")["status"]["loadBalancer"].get("ingress"),
        "LoadBalancer ingress",
    )
    assert lb[0]["ip"] == node_address()
    table = kubectl("get", "service", "echo-lb").stdout
    assert re.search(rf"LoadBalancer\s+\S+\s+{re.escape(node_address())}\s+{LB_PORT}:", table), (
        table
    )
    assert eventually(lambda: fetch(lb[0]["ip"], LB_PORT), "LoadBalancer answers") in summer

    # -- a summer pod failing readiness leaves the endpoints and gets no traffic.
    sick, healthy = sorted(summer)
    kubectl("exec", sick, "--", "touch", "/tmp/unready")
    eventually(lambda: not ready(get_json(kubectl, "pod", sick)), f"{sick} not ready")
    healthy_ip = summer[healthy]["status"]["podIP"]
    eventually(lambda: endpoint_ips(kubectl) == [healthy_ip], "the sick pod leaves the endpoints")
    not_ready = get_json(kubectl, "endpoints", "echo")["subsets"][0].get("notReadyAddresses") or []
    assert [a["ip"] for a in not_ready] == [summer[sick]["status"]["podIP"]]
    lines = run_in_pod(kubectl, "client2", CURL_LOOP)
    hits = Counter(ln[4:] for ln in lines if ln.startswith("GOT "))
    assert hits == {healthy: REQUESTS}, hits
    assert {fetch("127.0.0.1", node_port) for _ in range(10)} == {healthy}
