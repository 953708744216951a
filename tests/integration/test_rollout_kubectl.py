"""Rollouts with the real kubectl against a real server (``--runtime fake``).

Until a kubelet runs pods, a background thread plays kubelet: it marks every
pod Running and Ready through ``pods/status``, as tests/support/pods.py does
in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import make_kubectl, serve
from tests.support.pods import poll_until, stand_in_kubelet
from tests.support.server import Kubectl, Server

pytestmark = pytest.mark.kubectl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A control plane without a node: the stand-in kubelet below is alone."""
    yield from serve(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def fake_kubelet(server: Server) -> Iterator[None]:
    with stand_in_kubelet(server):
        yield


@pytest.fixture
def k(kubeconfig: Path, tmp_path: Path, fake_kubelet: None) -> Kubectl:
    return make_kubectl("1.32", kubeconfig, tmp_path / "home")


def pod_count(k: Kubectl, selector: str) -> int:
    out = k("get", "pods", "-l", selector, "-o", "json").stdout
    return sum(1 for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp"))


def image(k: Kubectl, name: str) -> str:
    return k(
        "get", "deploy", name, "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).stdout


def test_rollout_lifecycle(k: Kubectl) -> None:
    k("create", "deployment", "web", "--image=nginx:1", "--replicas=3")
    out = k("rollout", "status", "deploy/web", "--timeout=30s").stdout
    assert 'deployment "web" successfully rolled out' in out
    assert pod_count(k, "app=web") == 3

    k("set", "image", "deploy/web", "nginx=nginx:2")
    k("annotate", "deploy/web", "kubernetes.io/change-cause=to v2")
    assert "successfully rolled out" in k("rollout", "status", "deploy/web", "--timeout=30s").stdout
    hist = k("rollout", "history", "deploy/web").stdout
    lines = [line.split() for line in hist.splitlines()[2:] if line.strip()]
    assert [line[0] for line in lines] == ["1", "2"]
    assert "to v2" in hist
    assert "nginx:1" in k("rollout", "history", "deploy/web", "--revision=1").stdout

    k("rollout", "undo", "deploy/web")
    k("rollout", "status", "deploy/web", "--timeout=30s")
    assert image(k, "web") == "nginx:1"
    hist = k("rollout", "history", "deploy/web").stdout
    assert [line.split()[0] for line in hist.splitlines()[2:] if line.strip()] == ["2", "3"]
    k("rollout", "undo", "deploy/web", "--to-revision=2")
    k("rollout", "status", "deploy/web", "--timeout=30s")
    assert image(k, "web") == "nginx:2"

    rs_before = set(k("get", "rs", "-l", "app=web", "-o", "name").stdout.split())
    k("rollout", "restart", "deploy/web")
    k("rollout", "status", "deploy/web", "--timeout=30s")
    rs_after = set(k("get", "rs", "-l", "app=web", "-o", "name").stdout.split())
    assert len(rs_after - rs_before) == 1

    k("rollout", "pause", "deploy/web")
    k("set", "image", "deploy/web", "nginx=nginx:3")
    time.sleep(0.5)
    assert set(k("get", "rs", "-l", "app=web", "-o", "name").stdout.split()) == rs_after
    k("rollout", "resume", "deploy/web")
    k("rollout", "status", "deploy/web", "--timeout=30s")

    k("scale", "deploy/web", "--replicas=5")
    k("rollout", "status", "deploy/web", "--timeout=30s")
    poll_until(lambda: pod_count(k, "app=web") == 5)
    k("scale", "deploy/web", "--replicas=1")
    k("rollout", "status", "deploy/web", "--timeout=30s")
    poll_until(lambda: pod_count(k, "app=web") == 1)
    events = k("get", "events", "--field-selector", "involvedObject.name=web").stdout
    assert "ScalingReplicaSet" in events

    k("delete", "deploy/web", "--timeout=30s")
    poll_until(lambda: k("get", "rs", "-l", "app=web", "-o", "name").stdout.strip() == "")
    poll_until(lambda: pod_count(k, "app=web") == 0)


def test_delete_cascade_orphan_and_foreground(k: Kubectl) -> None:
    k("create", "deployment", "keep", "--image=nginx:1", "--replicas=2")
    k("rollout", "status", "deploy/keep", "--timeout=30s")
    k("delete", "deploy/keep", "--cascade=orphan", "--timeout=30s")
    rs = json.loads(k("get", "rs", "-l", "app=keep", "-o", "json").stdout)["items"]
    assert len(rs) == 1 and "ownerReferences" not in rs[0]["metadata"]
    assert pod_count(k, "app=keep") == 2
    k("delete", "rs", rs[0]["metadata"]["name"], "--cascade=foreground", "--timeout=30s")
    assert pod_count(k, "app=keep") == 0


def test_old_kubectl_rollout(kubeconfig: Path, tmp_path: Path, fake_kubelet: None) -> None:
    k = make_kubectl("1.27", kubeconfig, tmp_path / "home127")
    k("create", "deployment", "old", "--image=nginx:1", "--replicas=2")
    k("rollout", "status", "deploy/old", "--timeout=30s")
    k("set", "image", "deploy/old", "nginx=nginx:2")
    k("rollout", "status", "deploy/old", "--timeout=30s")
    hist = k("rollout", "history", "deploy/old").stdout
    assert [line.split()[0] for line in hist.splitlines()[2:] if line.strip()] == ["1", "2"]
    k("delete", "deploy/old", "--timeout=30s")
