"""The real kubectl binaries against the streaming endpoints (exec, port-forward).

kubectl ≤ 1.29 execs over SPDY, 1.30+ over WebSocket v5; port-forward is a SPDY upgrade
before 1.31 and SPDY tunnelled in WebSocket after. The binaries are called directly
(not through the gcloud dispatcher), each against the same small TLS server.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.api import test_streams_harness as harness

BIN = Path("/usr/lib/google-cloud-sdk/bin")
VERSIONS = ["27", "28", "29", "30", "31", "32", "33"]

pytestmark = pytest.mark.kubectl


def _kubectl(minor: str) -> Path:
    path = BIN / f"kubectl.1.{minor}"
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    return path


@dataclass
class Cluster:
    directory: Path
    env: dict[str, str]
    transports: list[str] = field(default_factory=list)

    def run(self, minor: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        cmd = [str(_kubectl(minor)), *args]
        return subprocess.run(
            cmd, input=stdin, capture_output=True, env=self.env, timeout=30, check=False
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("kubectl")
    transports: list[str] = []
    with harness.echo_server() as echo_port:
        app = harness.build_app(harness.connect_to({80: echo_port}), transports=transports)
        with harness.serve(app, directory) as port:
            kubeconfig = harness.write_kubeconfig(directory, port)
            yield Cluster(directory, harness.kubectl_env(directory, kubeconfig), transports)


def _expected_transport(minor: str, ws_since: int) -> str:
    return "ws" if int(minor) >= ws_since else "spdy"


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_prints_output_and_exits_with_the_remote_code(cluster: Cluster, minor: str) -> None:
    before = len(cluster.transports)
    result = cluster.run(minor, "exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.stdout == b"out\n"
    assert b"err\n" in result.stderr
    assert b"command terminated with exit code 3" in result.stderr
    assert result.returncode == 3
    assert cluster.transports[before:] == [f"exec {_expected_transport(minor, 30)}"]


@pytest.mark.parametrize("minor", ["27", "32"])
def test_exec_stdin_passes_through(cluster: Cluster, minor: str) -> None:
    payload = b"".join(b"line %d\n" % i for i in range(2000))
    result = cluster.run(minor, "exec", "-i", "p", "--", "cat", stdin=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _port_forward(cluster: Cluster, minor: str, mapping: str) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [str(_kubectl(minor)), "port-forward", "pod/p", mapping]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cluster.env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:N -> 80"
        assert line.startswith(b"Forwarding from"), (
            line,
            proc.stderr.read() if proc.poll() is not None else b"",
        )
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def _echo_roundtrip(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(message)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("minor", ["27", "30", "31", "32"])
def test_port_forward_concurrent_connections(cluster: Cluster, minor: str) -> None:
    local = _free_port()
    before = len(cluster.transports)
    with _port_forward(cluster, minor, f"{local}:80"):
        results: dict[int, bool] = {}

        def one(i: int) -> None:
            message = f"connection {i} ".encode() * 5000
            results[i] = _echo_roundtrip(local, message) == message

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == {i: True for i in range(8)}
        assert _echo_roundtrip(local, b"again") == b"again"  # the session outlives connections
    assert cluster.transports[before:] == [f"portforward {_expected_transport(minor, 31)}"]


def test_port_forward_reports_a_refused_port(cluster: Cluster) -> None:
    local = _free_port()
    with _port_forward(cluster, "32", f"{local}:81") as proc:
        with contextlib.suppress(OSError):
            _echo_roundtrip(local, b"x")
        proc.wait(10)  # kubectl ≥ 1.28 gives up the session after a forwarding error
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert b"error forwarding port 81 to pod" in stderr
    assert b"connection refused" in stderr
