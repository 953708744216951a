"""End to end: ``kubectl top`` over real Podman containers (usage read from their cgroups).

One server on its own CIDRs (pods 10.230.X.0/24, services 10.231.X.0/24); a
busybox pod holding some memory and doing a little work, then ``kubectl top
pod --containers`` and ``kubectl top node``.  The module ends with ``microkube
reset`` and checks that nothing of the instance is left in Podman.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.support import images
from tests.support.kube import PODMAN_E2E
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(1, 250)
    base = tmp_path_factory.mktemp("metrics")
    with podman_server(base, pod_cidr=f"10.230.{r}.0/24", service_cidr=f"10.231.{r}.0/24") as srv:
        yield srv


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "load"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                # awk holds an 8 MB string while it waits for sleep
                "name": "hold",
                "image": images.BUSYBOX_IMAGE,
                "command": ["awk", 'BEGIN { s = sprintf("%8000000s", ""); system("sleep 3600") }'],
            },
            {
                "name": "spin",
                "image": images.BUSYBOX_IMAGE,
                "command": [
                    "sh",
                    "-c",
                    "while true; do i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; sleep 0.05; done",
                ],
            },
        ],
    },
}


def until(fn, timeout: float = 90):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(1)


def test_top_pod_and_node_show_real_usage(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump(POD))

    def running() -> bool:
        pod = json.loads(kubectl("get", "pod", "load", "-o", "json").stdout)
        return pod.get("status", {}).get("phase") == "Running"

    until(running)

    def top() -> str | None:
        p = kubectl("top", "pod", "load", "--containers", check=False)
        return p.stdout if p.returncode == 0 else None

    out = until(top)
    rows = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert set(rows) == {"hold", "spin"}, out
    assert rows["hold"][3].endswith("Mi") and int(rows["hold"][3][:-2]) >= 7, out  # MEMORY(bytes)
    raw = json.loads(
        kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/load").stdout
    )
    usage = {c["name"]: c["usage"] for c in raw["containers"]}
    memory = {name: _bytes(u["memory"]) for name, u in usage.items()}
    assert memory["hold"] >= 8_000_000 and memory["spin"] > 0, usage
    assert usage["spin"]["cpu"].endswith("n") and int(usage["spin"]["cpu"][:-1]) > 0, usage
    assert raw["window"].endswith("s") and raw["timestamp"].endswith("Z")
    node = until(lambda: (p := kubectl("top", "node", check=False)).returncode == 0 and p.stdout)
    assert "CPU(cores)" in node and "MEMORY(bytes)" in node and len(node.splitlines()) == 2
    kubectl("delete", "pod", "load", "--wait=true")


def _bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6}
    for suffix, mult in units.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * mult
    return int(q)
