"""End to end: ``podman push`` to a microkube's registry, then run the image with kubectl.

One ``microkube serve`` with real Podman and its built-in registry on a free
port (pod CIDR 10.224.X.0/24, service CIDR 10.225.X.0/24).  The image is built
by the test on private storage (:mod:`tests.support.oci_clients`), so the
kubelet's Podman can only get it by pulling ``localhost:<port>/app:1`` from
the registry: its ``registries.conf`` must follow the registry's real address.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import oci_clients
from tests.support.kube import NEEDS_KUBECTL
from tests.support.oci_clients import Clients, clients  # noqa: F401 - fixture
from tests.support.server import Kubectl, Server, free_port, kubectl_for, podman_server

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(not oci_clients.available("podman"), reason="needs podman and busybox"),
    NEEDS_KUBECTL,
    pytest.mark.timeout(300),
]

FILES = {"/app/greeting.txt": "hello from the registry\n", "/app/name.txt": "layer two\n"}
CMD = ["sh", "-c", "cat /app/greeting.txt /app/name.txt; exec sleep 3600"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    r = random.randint(1, 127)
    port = free_port()
    base = tmp_path_factory.mktemp("regpull")
    with podman_server(
        base,
        pod_cidr=f"10.224.{r}.0/24",
        service_cidr=f"10.225.{r}.0/24",
        registry_args=["--registry-port", str(port)],
    ) as srv:
        yield srv, port
    remove_host_images(f"localhost:{port}/")


def remove_host_images(prefix: str) -> None:
    """Delete what the kubelet pulled into the host's storage (reset keeps images)."""
    names = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    mine = [n for n in names if n.startswith(prefix)]
    if mine:
        subprocess.run(["podman", "rmi", "-f", *mine], capture_output=True, check=False)


@pytest.fixture(scope="module")
def kubectl(server: tuple[Server, int], tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for(server[0], tmp_path_factory)


def wait_running(kubectl: Kubectl, selector: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pods = json.loads(kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
        if pods and pods[0].get("status", {}).get("phase") == "Running":
            return pods[0]
        if time.monotonic() > deadline:
            raise AssertionError(json.dumps([p.get("status") for p in pods], indent=1))
        time.sleep(0.5)


def logs(kubectl: Kubectl, pod: str, expected: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl("logs", pod, check=False).stdout
        if expected in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def test_push_then_create_deployment(
    server: tuple[Server, int], kubectl: Kubectl, clients: Clients, tmp_path: Path  # noqa: F811
) -> None:
    _, port = server
    address = f"localhost:{port}"
    clients.trust(address)
    image = oci_clients.build_image(clients, "localhost/mk-app:1", FILES, CMD)
    layers = json.loads(clients.out("image", "inspect", "--format", "{{json .RootFS.Layers}}", image))
    assert len(layers) == 3  # busybox, then one layer per COPY
    target = f"{address}/app:1"
    digestfile = tmp_path / "digest"
    clients.run("push", "--digestfile", str(digestfile), image, target)
    pushed = digestfile.read_text().strip()

    kubectl("create", "deployment", "app", f"--image={target}")
    pod = wait_running(kubectl, "app=app")
    name = pod["metadata"]["name"]
    out = logs(kubectl, name, "layer two")
    assert out == FILES["/app/greeting.txt"] + FILES["/app/name.txt"], out
    status = pod["status"]["containerStatuses"][0]
    assert status["image"] == target
    assert pushed in status["imageID"], status
    # The kubelet's Podman pulled it: the host storage now holds the pushed digest.
    host_digest = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Digest}}", target],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert host_digest == pushed

    # kubectl run, the other path users take, against a second tag of the same image.
    clients.run("push", image, f"{address}/app:2")
    kubectl("run", "app2", f"--image={address}/app:2", "--labels=run=app2")
    pod2 = wait_running(kubectl, "run=app2")
    assert "hello from the registry" in logs(kubectl, pod2["metadata"]["name"], "hello")
    kubectl("delete", "deployment", "app", "--wait=false")
    kubectl("delete", "pod", "app2", "--wait=false", "--grace-period=1")
