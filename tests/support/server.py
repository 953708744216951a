"""A real ``microkube serve`` in a subprocess, and the real kubectl pointed at it.

Each server gets its own state dir, a free port and a unique instance name, so
tests never collide with each other or with a microkube running on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from microkube.netproxy.rules import table_name

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl_binary(version: str) -> str | None:
    path = KUBECTL_DIR / f"kubectl.{version}"
    return str(path) if path.exists() else None


@dataclass
class Server:
    state_dir: Path
    port: int = field(default_factory=free_port)
    instance: str = field(default_factory=lambda: "mkt" + uuid.uuid4().hex[:6])
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.state_dir / "pki" / "admin.token").read_text().strip()

    @property
    def ca(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    def start(self, timeout: float = 30.0) -> Server:
        self.log_path = self.state_dir.parent / f"{self.state_dir.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115
        cmd = [
            sys.executable, "-m", "microkube", "serve",
            "--state-dir", str(self.state_dir), "--port", str(self.port),
            "--instance", self.instance, *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"microkube exited: {self.log_path.read_text()[-3000:]}")
            if self.ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"microkube not ready in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def ready(self) -> bool:
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            req = urllib.request.Request(self.url + "/readyz", headers={"Authorization": "Bearer " + self.token})
            with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kubeconfig(self, directory: Path) -> Path:
        out = subprocess.run(
            [sys.executable, "-m", "microkube", "config", "--state-dir", str(self.state_dir), "--port", str(self.port)],
            check=True, capture_output=True,
        ).stdout
        path = directory / "kubeconfig"
        path.write_bytes(out)
        return path

    def request(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json") -> tuple[int, dict]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Authorization": "Bearer " + self.token, "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


@dataclass
class Kubectl:
    """Runs one kubectl binary with its own HOME (a fresh discovery cache)."""

    binary: str
    kubeconfig: Path
    home: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(HOME=str(self.home), KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(self.home / "cache"))
        proc = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env.update(HOME=str(self.home), KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(self.home / "cache"))
        return subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def reset(srv: Server) -> None:
    """``microkube reset`` of a test server's state and host resources."""
    subprocess.run(
        [sys.executable, "-m", "microkube", "reset", "--state-dir", str(srv.state_dir), "--instance", srv.instance],
        capture_output=True,
        timeout=120,
        check=False,
    )


@contextlib.contextmanager
def podman_server(
    base: Path, *, pod_cidr: str, service_cidr: str, registry_args: list[str] | None = None
) -> Iterator[Server]:
    """A real-Podman server on its own pod and service CIDRs, reset afterwards.

    After the reset, asserts that nothing of the instance is left on the host
    (:func:`leftovers`: containers, pods, pod network, nft table).

    The service CIDR must be unique too: the proxy's nft hooks see the whole
    host, so two instances on one service CIDR would answer for each other.
    The built-in registry is off unless ``registry_args`` (e.g. ``["--registry-port",
    str(free_port())]``) are given.
    """
    registry = ["--no-registry"] if registry_args is None else registry_args
    srv = Server(base / "state", extra_args=[*registry, "--pod-cidr", pod_cidr, "--service-cidr", service_cidr])
    srv.start(timeout=60)
    try:
        yield srv
    finally:
        srv.stop()
        reset(srv)
        if "--registry-port" in registry:
            remove_registry_images(int(registry[registry.index("--registry-port") + 1]))
    left = leftovers(srv)
    assert not left, f"microkube reset left host resources of {srv.instance}: {left}"


def remove_registry_images(port: int) -> None:
    """Untag what the kubelet pulled from a test registry on ``port`` (the registry is gone).

    microkube's Podman shares the host's image store, so without this every run
    would leave ``localhost:<random port>/…`` images behind.
    """
    out = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout.split()
    mine = [ref for ref in out if ref.startswith((f"localhost:{port}/", f"127.0.0.1:{port}/"))]
    if mine:
        subprocess.run(["podman", "rmi", "-f", *mine], capture_output=True, timeout=120, check=False)


def leftovers(srv: Server) -> dict[str, list[str]]:
    """What of ``srv``'s instance is still on the host, by kind (only non-empty kinds).

    Podman containers and pods carrying its ``io.microkube.instance`` label, its
    ``<instance>-pods`` network, and its nft table.
    """
    flt = f"label=io.microkube.instance={srv.instance}"

    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout

    table = f"table ip {table_name(srv.instance)}"
    found = {
        "containers": run("podman", "ps", "-aq", "--filter", flt).split(),
        "pods": run("podman", "pod", "ps", "-q", "--filter", flt).split(),
        "networks": run("podman", "network", "ls", "-q", "--filter", f"name={srv.instance}-pods").split(),
        "nft": [t for t in run("nft", "list", "tables").splitlines() if t.strip() == table]
        if shutil.which("nft")
        else [],
    }
    return {kind: names for kind, names in found.items() if names}


def kubectl_for(server: Server, tmp_path_factory: pytest.TempPathFactory, version: str = "1.32") -> Kubectl:
    """kubectl ``version`` with a fresh kubeconfig and HOME for ``server`` (skips if not installed)."""
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} missing")
    d = tmp_path_factory.mktemp("kc")
    return Kubectl(binary, server.kubeconfig(d), d / "home")
