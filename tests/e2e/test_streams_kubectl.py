"""End to end: logs, exec, attach, port-forward, run -i and cp with real kubectl and Podman.

One ``microkube serve`` per module (unique instance, random 10.215.X.0/24 pod CIDR, the
offline busybox image). kubectl 1.32 speaks WebSocket (exec/attach, and port-forward
tunnelled SPDY); kubectl 1.27 speaks SPDY upgrades, so both wire paths reach the
runtime. The module ends with ``microkube reset``.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import images
from tests.support.kube import PODMAN_E2E, pod_manifest, sh_container
from tests.support.server import Kubectl, Server, free_port, kubectl_for, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.kubectl, pytest.mark.timeout(240)]
IMAGE = images.BUSYBOX_IMAGE
TICKER = 'echo hello; echo oops >&2; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(1, 254)
    base = tmp_path_factory.mktemp("streams")
    with podman_server(base, pod_cidr=f"10.215.{r}.0/24", service_cidr=f"10.216.{r}.0/24") as srv:
        yield srv


@pytest.fixture(scope="module")
def kubectl127(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for(server, tmp_path_factory, "1.27")


@pytest.fixture(scope="module")
def pod(kubectl: Kubectl) -> str:
    """A running two-container pod: a ticker and a TCP server on 8080."""
    obj = pod_manifest(
        "p",
        sh_container("c", TICKER),
        sh_container("srv", "nc -ll -p 8080 -e echo hi"),
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    kubectl("wait", "--for=condition=Ready", "pod/p", "--timeout=90s", timeout=100)
    return "p"


def _until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


# -- logs ---------------------------------------------------------------------------


def test_logs_container_tail_timestamps_and_errors(kubectl: Kubectl, pod: str) -> None:
    out = _until(
        lambda: (
            kubectl("logs", pod, "-c", "c").stdout
            if "tick 2" in kubectl("logs", pod, "-c", "c").stdout
            else ""
        )
    )
    # stdout and stderr reach the log through separate pipes: their relative order
    # within a burst is conmon's (as with containerd), the order within each is kept.
    first = out.splitlines()[:4]
    assert sorted(first) == ["hello", "oops", "tick 1", "tick 2"]
    assert [x for x in first if x != "oops"] == ["hello", "tick 1", "tick 2"]
    tail = kubectl("logs", pod, "-c", "c", "--tail=1").stdout
    assert re.fullmatch(r"tick \d+\n", tail)
    stamped = kubectl("logs", pod, "-c", "c", "--tail=2", "--timestamps").stdout.splitlines()
    assert len(stamped) == 2
    for line in stamped:
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (tick \d+|oops|hello)", line
        ), line
    limited = kubectl("logs", pod, "-c", "c", "--limit-bytes=3").stdout
    assert limited == out[:3]
    bad = kubectl("logs", pod, "-c", "nope", check=False)
    assert bad.returncode == 1
    assert "container nope is not valid for pod p" in bad.stderr
    prev = kubectl("logs", pod, "-c", "c", "--previous", check=False)
    assert 'previous terminated container "c" in pod "p" not found' in prev.stderr
    # kubectl picks the first container itself and says so.
    default = kubectl("logs", pod, "--tail=1")
    assert 'Defaulted container "c" out of: c, srv' in default.stderr


def test_logs_follow_ends_with_the_container(kubectl: Kubectl) -> None:
    obj = pod_manifest(
        "fin",
        sh_container("c", "for i in 1 2 3; do echo line $i; sleep 1; done"),
        restartPolicy="Never",
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    _until(lambda: kubectl("logs", "fin", check=False).returncode == 0, timeout=60)
    started = time.monotonic()
    out = kubectl("logs", "-f", "fin", timeout=30).stdout
    assert out == "line 1\nline 2\nline 3\n"
    assert time.monotonic() - started < 15


# -- exec ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.32", "1.27"])
def test_exec_exit_code_and_stdin(
    version: str, kubectl: Kubectl, kubectl127: Kubectl, pod: str
) -> None:
    k = kubectl if version == "1.32" else kubectl127
    failed = k(
        "exec", pod, "-c", "c", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert failed.returncode == 3
    assert failed.stdout == "out\n"
    assert "err\n" in failed.stderr
    assert "command terminated with exit code 3" in failed.stderr
    echoed = k("exec", "-i", pod, "-c", "c", "--", "cat", input="through stdin\n")
    assert echoed.stdout == "through stdin\n"
    missing = k("exec", pod, "-c", "nope", "--", "true", check=False)
    assert missing.returncode != 0
    assert "container nope is not valid for pod p" in missing.stderr


def test_cp_both_ways(kubectl: Kubectl, pod: str, tmp_path: Path) -> None:
    src = tmp_path / "up.txt"
    src.write_text("copied content\n")
    kubectl("cp", str(src), f"{pod}:/tmp/up.txt", "-c", "c")
    assert kubectl("exec", pod, "-c", "c", "--", "cat", "/tmp/up.txt").stdout == "copied content\n"
    back = tmp_path / "down.txt"
    kubectl("cp", f"{pod}:/tmp/up.txt", str(back), "-c", "c")
    assert back.read_text() == "copied content\n"


# -- port-forward -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.32", "1.27"])
def test_port_forward(version: str, kubectl: Kubectl, kubectl127: Kubectl, pod: str) -> None:
    k = kubectl if version == "1.32" else kubectl127
    port = free_port()
    proc = k.popen("port-forward", f"pod/{pod}", f"{port}:8080")
    try:

        def answer() -> bytes:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    return s.recv(100)
            except OSError:
                return b""

        assert _until(answer, timeout=20) == b"hi\n"
        assert answer() == b"hi\n"  # a second connection on the same session
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# -- run -i / attach ----------------------------------------------------------------


def test_run_interactive_prints_output_and_deletes_the_pod(kubectl: Kubectl) -> None:
    out = kubectl(
        "run",
        "-i",
        "--rm",
        "--restart=Never",
        "x",
        f"--image={IMAGE}",
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "echo hello",
        timeout=120,
    )
    assert "hello\n" in out.stdout
    assert 'pod "x" deleted' in out.stdout
    assert kubectl("get", "pod", "x", check=False).returncode == 1


@pytest.mark.parametrize("version", ["1.32", "1.27"])
def test_run_interactive_feeds_stdin_and_returns_exit_code(
    version: str, kubectl: Kubectl, kubectl127: Kubectl
) -> None:
    k = kubectl if version == "1.32" else kubectl127
    name = "cat" + version.replace(".", "")
    out = k(
        "run",
        "-i",
        "--rm",
        "--restart=Never",
        name,
        f"--image={IMAGE}",
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "cat; exit 5",
        input="fed through attach\n",
        check=False,
        timeout=120,
    )
    assert out.returncode == 5, out.stderr
    assert out.stdout.count("fed through attach\n") == 1  # no fallback to logs
    assert "couldn't attach" not in out.stderr


def test_attach_to_a_running_container(kubectl: Kubectl) -> None:
    obj = pod_manifest("att", sh_container("c", 'while read l; do echo "got $l"; done', stdin=True))
    kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    kubectl("wait", "--for=condition=Ready", "pod/att", "--timeout=90s", timeout=100)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(HOME=str(kubectl.home), KUBECONFIG=str(kubectl.kubeconfig))
    proc = subprocess.Popen(
        [kubectl.binary, "attach", "-i", "att"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"got one\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
