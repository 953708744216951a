"""End to end: ``microkube serve`` with real Podman, driven by the real kubectl.

One server per module (unique instance, random 10.214.X.0/24 pod CIDR, the
offline busybox image imported into Podman's storage).  Behaviour inside the
pods is checked through readiness probes (a pod only becomes Ready when its
probe command, run inside the container, succeeds), so the tests need no
exec/logs plumbing.  The module ends with ``microkube reset`` and checks that
no Podman pod, container or network of the instance is left.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import images
from tests.support.kube import PODMAN_E2E, apply, ready, wait_for
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.timeout(240)]
IMAGE = images.BUSYBOX_IMAGE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(1, 254)
    base = tmp_path_factory.mktemp("e2e")
    with podman_server(base, pod_cidr=f"10.214.{r}.0/24", service_cidr=f"10.219.{r}.0/24") as srv:
        yield srv


def probe(cmd: str) -> dict[str, Any]:
    return {
        "exec": {"command": ["sh", "-c", cmd]},
        "periodSeconds": 1,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": containers, **spec},
    }


def test_shared_localhost_and_empty_dir(kubectl: Kubectl) -> None:
    web = {
        "name": "web",
        "image": IMAGE,
        "command": ["sh", "-c", "echo hello > /data/index.html; exec httpd -f -p 8080 -h /data"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "ports": [{"containerPort": 8080}],
    }
    client = {
        "name": "client",
        "image": IMAGE,
        "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/shared"}],
        # localhost is shared (httpd in the other container) and so is the emptyDir
        "readinessProbe": probe(
            "wget -qO- http://localhost:8080/index.html | grep -q hello && grep -q hello /shared/index.html"
        ),
    }
    apply(kubectl, pod("duo", [web, client], volumes=[{"name": "data", "emptyDir": {}}]))
    p = wait_for(kubectl, "duo", ready)
    assert p["status"]["phase"] == "Running"
    ip = p["status"]["podIP"]
    wide = kubectl("get", "pod", "duo", "-o", "wide").stdout
    assert ip in wide and p["spec"]["nodeName"] in wide and "2/2" in wide
    # the pod IP is real: the host reaches httpd on it
    with socket.create_connection((ip, 8080), timeout=5) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):  # HTTP/1.0: the server closes after the body
            data += chunk
        assert b"hello" in data
    for cs in p["status"]["containerStatuses"]:
        assert cs["containerID"].startswith("podman://") and cs["ready"] and cs["started"]


def test_config_map_env_volume_and_init_order(kubectl: Kubectl) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"greeting": "hi", "file.txt": "from-configmap"},
    }
    init = {
        "name": "init",
        "image": IMAGE,
        "command": ["sh", "-c", "sleep 1; echo init > /work/order"],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
    }
    main = {
        "name": "main",
        "image": IMAGE,
        "command": [
            "sh",
            "-c",
            "test -f /work/order || exit 3; echo main >> /work/order; sleep 3600",
        ],
        "env": [
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
            }
        ],
        "volumeMounts": [
            {"name": "work", "mountPath": "/work"},
            {"name": "conf", "mountPath": "/etc/conf"},
        ],
        "readinessProbe": probe(
            'test "$GREETING" = hi && grep -qx from-configmap /etc/conf/file.txt'
            ' && test "$(cat /work/order | tr "\\n" " ")" = "init main "'
            " && test -s /var/run/secrets/kubernetes.io/serviceaccount/token"
        ),
    }
    apply(
        kubectl,
        cm,
        pod(
            "ordered",
            [main],
            initContainers=[init],
            volumes=[
                {"name": "work", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "cfg"}},
            ],
        ),
    )
    p = wait_for(kubectl, "ordered", ready)
    assert p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0


def test_bad_image_pull_backoff_with_events(kubectl: Kubectl) -> None:
    apply(kubectl, pod("badimg", [{"name": "c", "image": "127.0.0.1:1/nope/nothing:v1"}]))
    p = wait_for(
        kubectl,
        "badimg",
        lambda p: any(
            cs["state"].get("waiting", {}).get("reason") == "ImagePullBackOff"
            for cs in p.get("status", {}).get("containerStatuses", [])
        ),
        timeout=90,
    )
    assert p["status"]["phase"] == "Pending"
    evs = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    mine = {(e["reason"], e["type"]) for e in evs if e["involvedObject"]["name"] == "badimg"}
    assert {("Pulling", "Normal"), ("Failed", "Warning"), ("BackOff", "Normal")} <= mine
    assert "ImagePullBackOff" in kubectl("get", "pod", "badimg").stdout
    kubectl("delete", "pod", "badimg", "--wait=false")


def test_delete_is_graceful_and_complete(kubectl: Kubectl) -> None:
    apply(kubectl, pod("short", [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    wait_for(kubectl, "short", ready)
    t0 = time.monotonic()
    kubectl("delete", "pod", "short", "--timeout=60s")
    # sleep ignores SIGTERM as PID 1: killed after the 2 s grace period
    assert time.monotonic() - t0 < 30
    assert kubectl("get", "pod", "short", check=False).returncode != 0


def test_restart_keeps_containers(server: Server, kubectl: Kubectl) -> None:
    apply(kubectl, pod("keeper", [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    before = wait_for(kubectl, "keeper", ready)["status"]["containerStatuses"][0]
    server.stop()
    server.start(timeout=60)
    time.sleep(3)  # let the kubelet resync at least once
    after = wait_for(kubectl, "keeper", ready)["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]


def test_orphan_sandbox_removed_after_restart(
    server: Server, kubectl: Kubectl, tmp_path: Path
) -> None:
    apply(kubectl, pod("orphan", [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]))
    uid = wait_for(kubectl, "orphan", ready)["metadata"]["uid"]
    server.stop()
    # delete the object behind the kubelet's back: start the API, force-delete, restart
    server.start(timeout=60)
    kubectl("delete", "pod", "orphan", "--grace-period=0", "--force")
    deadline = time.monotonic() + 30
    flt = f"label=io.microkube.pod-uid={uid}"
    while subprocess.run(
        ["podman", "pod", "ps", "-q", "--filter", flt], capture_output=True, text=True, check=False
    ).stdout.strip():
        assert time.monotonic() < deadline, "sandbox of a deleted pod was not removed"
        time.sleep(0.5)


def test_crash_loop_back_off(kubectl: Kubectl) -> None:
    apply(
        kubectl,
        pod(
            "crasher",
            [
                {
                    "name": "c",
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo bye > /dev/termination-log; exit 3"],
                }
            ],
        ),
    )
    p = wait_for(
        kubectl,
        "crasher",
        lambda p: any(
            cs["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
            for cs in p.get("status", {}).get("containerStatuses", [])
        ),
        timeout=60,
    )
    cs = p["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["lastState"]["terminated"]["message"] == "bye\n"
    assert cs["restartCount"] >= 1
    assert "CrashLoopBackOff" in kubectl("get", "pod", "crasher").stdout
    kubectl("delete", "pod", "crasher", "--wait=false")


def test_hooks_security_context_and_completion(kubectl: Kubectl, tmp_path: Path) -> None:
    host = tmp_path / "hooks"
    host.mkdir(mode=0o777)
    host.chmod(0o777)
    c = {
        "name": "c",
        "image": IMAGE,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
        "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo started > /host/post"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /host/pre"]}},
        },
        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
        "readinessProbe": probe('test "$(id -u):$(id -g)" = 1000:3000 && test -f /host/post'),
    }
    vols = [{"name": "host", "hostPath": {"path": str(host), "type": "Directory"}}]
    apply(kubectl, pod("hooks", [c], volumes=vols))
    wait_for(kubectl, "hooks", ready)
    assert (host / "post").read_text() == "started\n"
    kubectl("delete", "pod", "hooks", "--timeout=60s")
    assert (host / "pre").read_text() == "stopping\n"
    once = {"name": "c", "image": IMAGE, "command": ["true"]}
    apply(kubectl, pod("once", [once], restartPolicy="Never"))
    p = wait_for(kubectl, "once", lambda p: p.get("status", {}).get("phase") == "Succeeded")
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert "Completed" in kubectl("get", "pod", "once").stdout
