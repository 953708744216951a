"""End to end: persistent volumes with real Podman, driven by the real kubectl.

One ``microkube serve`` per module (unique instance, 10.226.X.0/24 pod CIDR,
10.227.X.0/24 service CIDR, the offline busybox image).  The default
``microkube-hostpath`` class provisions a directory under the state dir once
the scheduler picks a node for a pod using the claim; the kubelet bind-mounts
it.  Checked from inside the containers with ``kubectl exec``: data written by
one pod is there for the next one, a read-only claim mount refuses writes, a
claim in use is only deleted once its pod is gone, each StatefulSet replica
gets its own claim back after its pod is deleted, and data and bindings
survive a restart of microkube itself.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import images
from tests.support.kube import PODMAN_E2E, apply, get_json, pod_manifest, sh_container
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.kubectl, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(1, 254)
    base = tmp_path_factory.mktemp("storage")
    with podman_server(base, pod_cidr=f"10.226.{r}.0/24", service_cidr=f"10.227.{r}.0/24") as srv:
        yield srv


def wait_until(what: Callable[[], Any], timeout: float = 90, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(message or "timed out")
        time.sleep(0.5)


def running(kubectl: Kubectl, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        proc = kubectl("get", "pod", name, "-o", "json", check=False)
        if proc.returncode != 0:
            return None
        pod = dict(json.loads(proc.stdout))
        return pod if pod.get("status", {}).get("phase") == "Running" else None

    def describe() -> str:
        return kubectl("describe", "pod", name, check=False).stdout

    try:
        return dict(wait_until(check, message=f"pod {name} not Running"))
    except AssertionError as exc:
        raise AssertionError(describe()) from exc


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }


def claim_pod(
    name: str, claim_name: str, script: str, *, read_only: bool = False
) -> dict[str, Any]:
    src: dict[str, Any] = {"claimName": claim_name}
    if read_only:
        src["readOnly"] = True
    return pod_manifest(
        name, data_container(script), volumes=[{"name": "data", "persistentVolumeClaim": src}]
    )


def data_container(script: str) -> dict[str, Any]:
    """Container ``c``: ``script`` with the volume ``data`` at /data, then sleep."""
    mounts = [{"name": "data", "mountPath": "/data"}]
    return sh_container("c", script + "; exec sleep 3600", volumeMounts=mounts)


def test_claim_data_outlives_the_pod(kubectl: Kubectl, server: Server) -> None:
    apply(kubectl, claim("data"))
    pvc = get_json(kubectl, "pvc", "data")
    assert pvc["status"]["phase"] == "Pending"  # WaitForFirstConsumer
    assert pvc["spec"]["storageClassName"] == "microkube-hostpath"
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]

    apply(kubectl, claim_pod("writer", "data", "echo first > /data/f; echo run >> /data/runs"))
    running(kubectl, "writer")
    pvc = get_json(kubectl, "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
    table = kubectl("get", "pvc", "data").stdout.split("\n")
    assert table[0].split() == [
        "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS", "AGE",
    ]  # fmt: skip
    assert table[1].split()[:6] == [
        "data", "Bound", pvc["spec"]["volumeName"], "64Mi", "RWO", "microkube-hostpath",
    ]  # fmt: skip
    pv = get_json(kubectl, "pv", pvc["spec"]["volumeName"])
    host = Path(pv["spec"]["hostPath"]["path"])
    assert host.parent == server.state_dir / "volumes"
    assert kubectl("exec", "writer", "--", "cat", "/data/f").stdout == "first\n"

    kubectl("delete", "pod", "writer", "--timeout=60s")
    assert (host / "f").read_text() == "first\n"
    apply(kubectl, claim_pod("writer", "data", "echo run >> /data/runs"))
    running(kubectl, "writer")
    assert kubectl("exec", "writer", "--", "cat", "/data/f").stdout == "first\n"
    assert kubectl("exec", "writer", "--", "cat", "/data/runs").stdout == "run\nrun\n"

    # readOnly on the claim source makes the mount read-only.
    apply(kubectl, claim_pod("reader", "data", "true", read_only=True))
    running(kubectl, "reader")
    assert kubectl("exec", "reader", "--", "cat", "/data/f").stdout == "first\n"
    denied = kubectl("exec", "reader", "--", "touch", "/data/new", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    kubectl("delete", "pod", "reader", "--timeout=60s")

    # A claim in use is only removed once no pod uses it (pvc-protection).
    kubectl("delete", "pvc", "data", "--wait=false")
    time.sleep(1.5)
    dying = get_json(kubectl, "pvc", "data")
    assert dying["metadata"].get("deletionTimestamp")
    assert "Terminating" in kubectl("get", "pvc", "data").stdout
    assert kubectl("exec", "writer", "--", "cat", "/data/f").stdout == "first\n"
    kubectl("delete", "pod", "writer", "--timeout=60s")
    wait_until(
        lambda: kubectl("get", "pvc", "data", check=False).returncode != 0,
        message="claim not deleted after its pod",
    )
    # reclaimPolicy Delete: the volume and its directory go too.
    wait_until(
        lambda: (
            kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0
            and not host.exists()
        ),
        message="volume not reclaimed",
    )


def test_missing_claim_keeps_the_pod_pending(kubectl: Kubectl) -> None:
    apply(kubectl, claim_pod("lonely", "nosuchclaim", "true"))

    def message() -> str:
        pod = get_json(kubectl, "pod", "lonely")
        conds = pod.get("status", {}).get("conditions") or []
        return next((c.get("message", "") for c in conds if c["type"] == "PodScheduled"), "")

    assert wait_until(message) == (
        '0/1 nodes are available: persistentvolumeclaim "nosuchclaim" not found.'
    )
    kubectl("delete", "pod", "lonely", "--timeout=60s")


def test_statefulset_replicas_keep_their_data(kubectl: Kubectl) -> None:
    script = "[ -f /data/id ] || hostname > /data/id; echo start >> /data/starts"
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [data_container(script)],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "32Mi"}},
                    },
                }
            ],
        },
    }
    apply(kubectl, sts)
    kubectl("rollout", "status", "statefulset/db", "--timeout=120s", timeout=150)
    uids = {}
    for i in range(2):
        pod = running(kubectl, f"db-{i}")
        uids[i] = pod["metadata"]["uid"]
        assert kubectl("exec", f"db-{i}", "--", "cat", "/data/id").stdout == f"db-{i}\n"
    pvcs = get_json(kubectl, "pvc", "data-db-0", "data-db-1")["items"]
    assert sorted(p["metadata"]["name"] for p in pvcs) == ["data-db-0", "data-db-1"]
    assert {p["status"]["phase"] for p in pvcs} == {"Bound"}

    kubectl("delete", "pod", "db-0", "db-1", "--timeout=60s")
    for i in range(2):
        wait_until(
            lambda i=i: (
                get_json(kubectl, "pod", f"db-{i}")["metadata"]["uid"] != uids[i]
                if kubectl("get", "pod", f"db-{i}", check=False).returncode == 0
                else None
            ),
            message=f"db-{i} not recreated",
        )
        running(kubectl, f"db-{i}")
        assert kubectl("exec", f"db-{i}", "--", "cat", "/data/id").stdout == f"db-{i}\n"
        assert kubectl("exec", f"db-{i}", "--", "cat", "/data/starts").stdout == "start\nstart\n"
    kubectl("delete", "statefulset", "db", "--timeout=60s")


def test_data_survives_a_microkube_restart(kubectl: Kubectl, server: Server) -> None:
    apply(kubectl, claim("keep"), claim_pod("keeper", "keep", "echo kept > /data/f"))
    running(kubectl, "keeper")
    volume = get_json(kubectl, "pvc", "keep")["spec"]["volumeName"]
    server.stop()
    server.start(timeout=60)
    assert get_json(kubectl, "pvc", "keep")["spec"]["volumeName"] == volume
    running(kubectl, "keeper")
    assert kubectl("exec", "keeper", "--", "cat", "/data/f").stdout == "kept\n"
    # A new pod after the restart mounts the same volume.
    kubectl("delete", "pod", "keeper", "--timeout=60s")
    apply(kubectl, claim_pod("keeper", "keep", "true"))
    running(kubectl, "keeper")
    assert kubectl("exec", "keeper", "--", "cat", "/data/f").stdout == "kept\n"
    kubectl("delete", "pod", "keeper", "--timeout=60s")
    kubectl("delete", "pvc", "keep", "--timeout=60s")
