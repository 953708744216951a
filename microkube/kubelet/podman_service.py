"""A private, supervised ``podman system service`` for one microkube instance.

Why a private service: the kubelet needs Podman settings that differ from the
host's defaults (see below), and microkube must never edit ``/etc/containers``.
Podman reads ``CONTAINERS_CONF`` / ``CONTAINERS_REGISTRIES_CONF`` from its
environment, so we write microkube-owned files under
``<state_dir>/podman/`` and start ``podman system service --time=0`` on a
socket there with those variables set.  Images stay in Podman's normal
graphroot (``/var/lib/containers/storage``) so that images a user already has
are usable; tests may pass ``root``/``runroot`` to isolate storage.

Settings found necessary on the reference host (Debian 12, Podman 4.3.1,
hybrid cgroup v1 hierarchy, no systemd as PID 1):

* ``runtime = "runc"``: crun fails on hybrid cgroups.
* ``cgroup_manager = "cgroupfs"``: the systemd manager needs systemd as PID 1.
* ``events_logger = "file"``: journald is not available without systemd.
* ``default_ulimits``: Podman's defaults (nofile=1048576, nproc=4194304) are
  above the host's hard limits, and runc then fails with ``setrlimit ...
  operation not permitted``.  The limit that counts is the one conmon/runc
  inherit, which was lower than the shell's: conmon ran with nproc 32768
  (= ``kernel.pid_max`` here) while the shell's hard limit was 96364, and
  nproc=65536 still failed.  So we use ``nofile=16384`` and ``nproc=32768``,
  each clamped to the current hard limit.

The local registry (``registry``, e.g. ``localhost:32000``) is trusted through
a private ``HOME`` (``<state_dir>/podman/home``), which containers/image reads
for per-registry TLS (``.config/containers/certs.d/<host:port>/ca.crt``, the
instance CA when the registry serves TLS) and, as its fallback credential
store, ``.docker/config.json`` (the registry's basic-auth user, if any).
Without TLS the registry is marked ``insecure`` (plain HTTP).

A supervisor thread restarts the service with exponential backoff if it dies;
:meth:`PodmanService.close` stops it.  With ``existing_socket`` nothing is
started or supervised: microkube uses the given socket as it is.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_NOFILE = 16384
_NPROC = 32768


def _limit(kind: int, wanted: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def containers_conf(*, cgroup_manager: str) -> str:
    """The microkube-owned ``containers.conf`` text (see module docstring)."""
    nofile = _limit(resource.RLIMIT_NOFILE, _NOFILE)
    nproc = _limit(resource.RLIMIT_NPROC, _NPROC)
    return f"""# Written by microkube; do not edit (regenerated at every start).
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"
netns = "bridge"

[engine]
runtime = "runc"
cgroup_manager = "{cgroup_manager}"
events_logger = "file"

[network]
network_backend = "netavark"
"""


def registries_conf(registry: str, *, insecure: bool = True) -> str:
    """``registries.conf``: short names resolve to docker.io; the local registry is plain HTTP
    unless it serves TLS."""
    return f"""# Written by microkube; do not edit (regenerated at every start).
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"

[[registry]]
location = "{registry}"
insecure = {"true" if insecure else "false"}
"""


def _write_registry_trust(
    home: Path, registry: str, ca_pem: bytes | None, auth: tuple[str, str] | None
) -> None:
    """The CA and credentials of the local registry under the service's ``HOME``."""
    certs = home / ".config" / "containers" / "certs.d"
    shutil.rmtree(certs, ignore_errors=True)
    if ca_pem is not None:
        (certs / registry).mkdir(parents=True, mode=0o700)
        (certs / registry / "ca.crt").write_bytes(ca_pem)
    docker_config = home / ".docker" / "config.json"
    if auth is None:
        docker_config.unlink(missing_ok=True)
        return
    docker_config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    fd = os.open(docker_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {registry: {"auth": token}}}, f)


def storage_conf(root: Path, runroot: Path) -> str:
    return f"""[storage]
driver = "overlay"
graphroot = "{root}"
runroot = "{runroot}"
"""


def _systemd_is_init() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def ping(socket_path: Path, timeout: float = 2.0) -> bool:
    """True when the Podman API on ``socket_path`` answers ``GET /_ping`` with OK."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.startswith(b"HTTP/1.1 200") and data.rstrip().endswith(b"OK")
    except OSError:
        return False
    finally:
        sock.close()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (its new parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class PodmanService:
    """Own the Podman API socket of one microkube instance."""

    def __init__(
        self,
        state_dir: Path,
        instance: str,
        *,
        pod_cidr: str,
        registry: str = "localhost:32000",
        registry_ca: bytes | None = None,
        registry_auth: tuple[str, str] | None = None,
        existing_socket: str | Path | None = None,
        root: Path | None = None,
        runroot: Path | None = None,
        podman_binary: str = "podman",
    ) -> None:
        self.instance = instance
        self.pod_cidr = pod_cidr
        """Recorded for the kubelet; the network itself is made by ``ensure_network``."""
        self.registry = registry
        self.registry_ca = registry_ca
        """PEM of the CA that signed the registry's certificate (it serves TLS), or None."""
        self.registry_auth = registry_auth
        """(user, password) of the registry's basic auth, or None."""
        self.dir = Path(state_dir) / "podman"
        self.containers_conf = self.dir / "containers.conf"
        self.registries_conf = self.dir / "registries.conf"
        self.home = self.dir / "home"
        self.storage_conf = self.dir / "storage.conf" if root else None
        self._root, self._runroot = root, runroot
        self._external = existing_socket is not None
        self.socket_path = (
            Path(str(existing_socket).removeprefix("unix://"))
            if existing_socket
            else self.dir / "podman.sock"
        )
        if len(str(self.socket_path).encode()) > 107:
            raise ValueError(f"socket path too long for AF_UNIX: {self.socket_path}")
        self._binary = podman_binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        """How many times the supervisor restarted a dead service."""

    @property
    def url(self) -> str:
        """The ``unix://`` URL of the API socket."""
        return f"unix://{self.socket_path}"

    def env(self) -> dict[str, str]:
        """Environment for any ``podman`` command that must see microkube's configuration."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.containers_conf)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        env["HOME"] = str(self.home)
        if self.storage_conf is not None:
            env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf)
        return env

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        manager = "systemd" if _systemd_is_init() else "cgroupfs"
        self.containers_conf.write_text(containers_conf(cgroup_manager=manager))
        insecure = self.registry_ca is None
        self.registries_conf.write_text(registries_conf(self.registry, insecure=insecure))
        self.home.mkdir(exist_ok=True, mode=0o700)
        _write_registry_trust(self.home, self.registry, self.registry_ca, self.registry_auth)
        if self.storage_conf is not None and self._root is not None:
            runroot = self._runroot or self.dir / "runroot"
            self.storage_conf.write_text(storage_conf(self._root, runroot))

    def start(self, timeout: float = 20.0) -> None:
        """Write the configuration, start the service and wait until it answers."""
        if self._external:
            if not ping(self.socket_path):
                raise RuntimeError(f"podman socket {self.socket_path} does not answer /_ping")
            return
        if shutil.which(self._binary) is None:
            raise RuntimeError(f"{self._binary!r} is not installed")
        self.write_config()
        self._stop_stale()
        self._spawn()
        self._wait_ready(timeout)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._supervise, name=f"podman-service-{self.instance}", daemon=True
        )
        self._thread.start()

    @property
    def pid_file(self) -> Path:
        return self.dir / "service.pid"

    def _stop_stale(self) -> None:
        """End the service a previous microkube left behind (it was killed with ``kill -9``).

        Only the process recorded in :attr:`pid_file`, and only if its command
        line is still ``podman system service`` on our socket.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if b"service" not in cmdline or self.url.encode() not in cmdline:
            return
        log.info("stopping the podman service (pid %d) left by a previous run", pid)
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    return
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _spawn(self) -> None:
        with self._lock:
            self.socket_path.unlink(missing_ok=True)
            logf = open(self.dir / "service.log", "ab")  # noqa: SIM115 - child owns it
            try:
                self._proc = subprocess.Popen(
                    [self._binary, "system", "service", "--time=0", self.url],
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=logf,
                    start_new_session=True,
                )
            finally:
                logf.close()
            self.pid_file.write_text(f"{self._proc.pid}\n")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"podman system service exited with {proc.returncode}; "
                    f"see {self.dir / 'service.log'}"
                )
            if ping(self.socket_path, timeout=1.0):
                return
            time.sleep(0.05)
        raise RuntimeError(f"podman system service did not answer within {timeout}s")

    def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None or proc.poll() is None:
                self._stopping.wait(0.5)
                continue
            log.warning("podman system service exited with %s; restarting", proc.returncode)
            if self._stopping.wait(backoff):
                return
            try:
                self._spawn()
                self._wait_ready(20.0)
                self.restarts += 1
                backoff = 0.5
            except (OSError, RuntimeError) as exc:
                log.error("restarting podman system service failed: %s", exc)
                backoff = min(backoff * 2, 30.0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop supervising and terminate the service (containers keep running)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not self._external:
            self.socket_path.unlink(missing_ok=True)
            self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> PodmanService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
