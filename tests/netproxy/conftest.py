"""Fixtures: a Registry on real SQLite; network namespaces acting as pods (root only)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from microkube.resources.registry import Registry
from tests.support.registry import open_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path) as reg:
        yield reg


def need_nft() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft and ip")


_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
def udp():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 8081))
    while True:
        _, addr = s.recvfrom(100)
        s.sendto(sys.argv[1].encode(), addr)
import threading
threading.Thread(target=udp, daemon=True).start()
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


@dataclass
class PodNet:
    name: str
    ip: str
    host_ip: str
    host_if: str
    proc: subprocess.Popen[bytes]

    @property
    def cidr(self) -> str:
        return self.host_ip.rsplit(".", 1)[0] + ".0/24"

    def run(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture
def pods() -> Iterator[list[PodNet]]:
    """Two network namespaces, each answering its own name over HTTP :8080 and UDP :8081."""
    need_nft()
    tag = f"{os.getpid() % 1000:03d}{random.randint(0, 99):02d}"
    made: list[PodNet] = []
    cleanup: list[tuple[str, str]] = []
    try:
        for i in range(2):
            name = f"mkt{tag}p{i}"
            subnet = f"10.{240 + i}.{random.randint(0, 250)}"
            host_if, pod_if = f"mk{tag}h{i}", f"mk{tag}p{i}"
            cleanup.append((name, host_if))
            _sh("ip", "netns", "add", name)
            _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
            _sh("ip", "link", "set", pod_if, "netns", name)
            _sh("ip", "addr", "add", f"{subnet}.1/24", "dev", host_if)
            _sh("ip", "link", "set", host_if, "up")
            for cmd in (
                ["ip", "addr", "add", f"{subnet}.2/24", "dev", pod_if],
                ["ip", "link", "set", pod_if, "up"],
                ["ip", "link", "set", "lo", "up"],
                ["ip", "route", "add", "default", "via", f"{subnet}.1"],
            ):
                _sh("ip", "netns", "exec", name, *cmd)
            proc = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, "-c", _SERVER, f"pod{i}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            made.append(PodNet(name, f"{subnet}.2", f"{subnet}.1", host_if, proc))
        for p in made:
            for _ in range(100):
                if p.run(sys.executable, "-c", _PROBE).returncode == 0:
                    break
                time.sleep(0.05)
        yield made
    finally:
        for p in made:
            p.proc.terminate()
            p.proc.wait(5)
        for name, host_if in cleanup:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)


_PROBE = "import socket; socket.create_connection(('127.0.0.1', 8080), 1).close()"
