"""End to end: interactive sessions through a pseudo-terminal, and port-forward to svc/deploy.

One ``microkube serve`` with real Podman per module (pod CIDR 10.228.X.0/24 with
X in 1..120, service CIDR 10.229.X.0/24).  kubectl runs on the slave side of a
real pty (``os.openpty``), exactly as in a user's terminal: it sees a TTY,
puts it in raw mode, sends the window size and forwards keystrokes; the test
types on the master side and reads what the remote shell prints.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import select
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from tests.support import images
from tests.support.kube import PODMAN_E2E, apply
from tests.support.server import Kubectl, Server, free_port, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.kubectl, pytest.mark.timeout(240)]
IMAGE = images.BUSYBOX_IMAGE
ROWS, COLS = 37, 101


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(1, 120)
    base = tmp_path_factory.mktemp("interactive")
    with podman_server(base, pod_cidr=f"10.228.{r}.0/24", service_cidr=f"10.229.{r}.0/24") as srv:
        yield srv


class Terminal:
    """kubectl on the slave side of a pty; the test is the keyboard and the screen."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(
            HOME=str(kubectl.home),
            KUBECONFIG=str(kubectl.kubeconfig),
            KUBECACHEDIR=str(kubectl.home / "cache"),
            TERM="xterm",
        )
        self.proc = subprocess.Popen(
            [kubectl.binary, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.screen = b""

    def read_until(self, needle: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; screen: {self.screen[-2000:]!r}")
            if not self._read(min(left, 0.5)) and self.proc.poll() is not None:
                raise AssertionError(f"kubectl exited before {needle!r}: {self.screen!r}")
        return self.screen

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError as exc:  # EIO: the slave side is closed
            if exc.errno != errno.EIO:
                raise
            return False
        self.screen += data
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.1):
            pass
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture(scope="module")
def shell_pod(kubectl: Kubectl) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shell"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "side", "image": IMAGE, "command": ["sleep", "3600"]},
                {"name": "c", "image": IMAGE, "command": ["sleep", "3600"]},
            ],
        },
    }
    apply(kubectl, pod)
    kubectl("wait", "--for=condition=Ready", "pod/shell", "--timeout=90s", timeout=100)
    return "shell"


def test_exec_it_is_an_interactive_shell(kubectl: Kubectl, shell_pod: str) -> None:
    term = Terminal(kubectl, "exec", "-it", shell_pod, "-c", "c", "--", "sh")
    try:
        term.read_until(b"# ")  # busybox sh prompt: a TTY on the other side
        term.type("echo $((6*7))-answer\r")
        term.read_until(b"42-answer")
        # the window size of our pty reached the container's TTY
        term.type("stty size; tty\r")
        screen = term.read_until(b"/dev/pts/")
        assert f"{ROWS} {COLS}".encode() in screen
        # the line discipline is remote: ^C interrupts the remote command, not kubectl
        term.type("sleep 30\r")
        time.sleep(1)
        term.type("\x03")
        term.type("echo after-$((2+3))\r")
        term.read_until(b"after-5")
        term.type("exit 3\r")
        assert term.wait() == 3
        assert b"command terminated with exit code 3" in term.screen
    finally:
        term.close()


def test_run_it_rm_is_an_interactive_session(kubectl: Kubectl) -> None:
    term = Terminal(
        kubectl,
        "run",
        "-i",
        "--rm",
        "--tty",
        "debug",
        f"--image={IMAGE}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--",
        "sh",
    )
    try:
        term.read_until(b"If you don't see a command prompt, try pressing enter.", timeout=90)
        term.type("\r")
        term.read_until(b"# ")
        term.type("echo hi-$((1+1)) from $(hostname)\r")
        term.read_until(b"hi-2 from debug")
        term.type("exit\r")
        assert term.wait(timeout=60) == 0
        assert b'pod "debug" deleted' in term.screen
    finally:
        term.close()
    assert kubectl("get", "pod", "debug", check=False).returncode == 1


def test_port_forward_to_a_service_and_a_deployment(kubectl: Kubectl) -> None:
    labels = {"app": "web"}
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "srv",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["nc", "-ll", "-p", "8080", "-e", "echo", "web"],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ],
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    apply(kubectl, deploy, svc)
    kubectl("rollout", "status", "deployment/web", "--timeout=90s", timeout=100)
    for target, remote in (("svc/web", "80"), ("deploy/web", "8080")):
        port = free_port()
        proc = kubectl.popen("port-forward", target, f"{port}:{remote}")
        try:
            deadline = time.monotonic() + 20
            got = b""
            while got != b"web\n" and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                        got = s.recv(100)
                except OSError:
                    time.sleep(0.3)
            assert got == b"web\n", (target, proc.poll())
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    kubectl("delete", "deployment/web", "service/web", "--wait=false")
