"""The container runtime seen by the kubelet: a Protocol plus plain dataclasses.

Two implementations exist: :mod:`microkube.kubelet.podman` (real containers
through the Podman REST API) and :mod:`microkube.kubelet.fake` (simulated
containers, cheap enough for thousands of pods).  The kubelet talks only to
this Protocol, modelled on a small subset of the CRI:

* a *sandbox* is a Podman pod whose infra container owns the shared network,
  IPC and UTS namespaces, ``/etc/resolv.conf`` and ``/etc/hosts``;
* containers are created into a sandbox, started, stopped (SIGTERM, then
  SIGKILL after the grace period) and removed;
* a sandbox is stopped (its network released, its exited containers and their
  logs kept) when its pod has finished, and removed when the pod is deleted;
* every object carries labels (:data:`LABEL_INSTANCE` …) so that after a
  microkube restart the kubelet re-discovers (adopts) its sandboxes and
  containers with :meth:`ContainerRuntime.list_sandboxes` /
  :meth:`ContainerRuntime.list_containers`, and ``microkube reset`` removes
  them with :meth:`ContainerRuntime.cleanup_all`.

Concurrency: every method is ``async``.  The Podman implementation runs
podman-py's blocking calls (a ``requests.Session``) in worker threads via
``anyio.to_thread.run_sync`` bounded by a ``CapacityLimiter``; streams (exec,
attach, logs) use a native asyncio connection to the API socket.  The kubelet
therefore never wraps calls itself.

Known gaps of the Podman mapping: ``stdin_once`` is recorded but Podman has
no equivalent (stdin stays open after the first attach ends); log timestamps
from Podman have one-second resolution.

Port forwarding: the pod network is a local bridge, so the host reaches a pod
directly at ``pod_ip:port`` (``asyncio.open_connection(sandbox.ip, port)``);
:meth:`ContainerRuntime.open_port` does exactly that.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

LABEL_INSTANCE = "io.microkube.instance"
LABEL_POD_UID = "io.microkube.pod-uid"
LABEL_NAMESPACE = "io.microkube.namespace"
LABEL_POD_NAME = "io.microkube.pod-name"
LABEL_CONTAINER_NAME = "io.microkube.container-name"
LABEL_RESTART_COUNT = "io.microkube.restart-count"

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
ContainerState = Literal["created", "running", "exited", "unknown"]
SandboxState = Literal["ready", "notready"]
Stream = Literal["stdout", "stderr"]


class ContainerRuntimeError(Exception):
    """A runtime operation failed (the kubelet reports it in the pod status)."""


class RuntimeNotFound(ContainerRuntimeError):
    """The sandbox, container, exec session or network does not exist."""


class ImagePullError(ContainerRuntimeError):
    """The image could not be pulled.

    ``reason`` is the Kubernetes waiting reason: ``ErrImagePull``,
    ``ErrImageNeverPull`` (policy Never and image absent) or ``InvalidImageName``.
    """

    def __init__(self, message: str, *, reason: str = "ErrImagePull") -> None:
        super().__init__(message)
        self.reason = reason


_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


def normalize_image(ref: str) -> str:
    """Fully qualify an image reference the way Docker/Kubernetes do.

    ``nginx`` → ``docker.io/library/nginx:latest``; ``me/app`` →
    ``docker.io/me/app:latest``; ``localhost:32000/app:1`` is kept; a digest
    reference keeps its digest and gets no tag.  Raises :class:`ImagePullError`
    with reason ``InvalidImageName`` for malformed references.
    """
    bad = ImagePullError(f"invalid image name {ref!r}", reason="InvalidImageName")
    name, at, digest = ref.strip().partition("@")
    if at and not _DIGEST.match(digest):
        raise bad
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise bad
    if not _REPO.match(path):
        raise bad
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if not tag and not at:
        tag = "latest"
    return f"{domain}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if at else "")


@dataclass
class ImageInfo:
    ref: str
    """The normalized reference that was pulled or found."""
    id: str
    """Image ID (``sha256:…``)."""
    digest: str = ""
    """Repository digest when known (``sha256:…``), for ``status.imageID``."""
    size: int = 0


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one image pull (from the pod's ``imagePullSecrets``)."""

    username: str
    password: str = field(repr=False)


@dataclass
class PortMapping:
    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass
class HostAlias:
    ip: str
    hostnames: list[str]


@dataclass
class PodSandboxConfig:
    uid: str
    namespace: str
    name: str
    hostname: str = ""
    network: str = ""
    """Network to join (from :meth:`ContainerRuntime.ensure_network`); empty: runtime default."""
    labels: dict[str, str] = field(default_factory=dict)
    dns_servers: list[str] = field(default_factory=list)
    dns_searches: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    host_aliases: list[HostAlias] = field(default_factory=list)
    port_mappings: list[PortMapping] = field(default_factory=list)
    host_network: bool = False
    """``hostNetwork``: the host's network (and hostname); no pod IP of its own."""


@dataclass
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    """Kubernetes ``command``: replaces the image ENTRYPOINT (and its CMD)."""
    args: list[str] = field(default_factory=list)
    """Kubernetes ``args``: replaces the image CMD."""
    working_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    """Not enforced by the Podman runtime (no equivalent); kept for the kubelet."""
    user: int | None = None
    group: int | None = None
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    read_only_rootfs: bool = False
    cpu_limit_millis: int | None = None
    """CPU limit in millicores (1000 = one CPU)."""
    memory_limit_bytes: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    restart_count: int = 0
    """Attempt number, recorded as :data:`LABEL_RESTART_COUNT`."""


@dataclass
class SandboxStatus:
    id: str
    name: str
    uid: str
    namespace: str
    pod_name: str
    labels: dict[str, str]
    state: SandboxState
    ip: str = ""
    created_at: datetime | None = None
    host_network: bool = False


@dataclass
class ContainerStatus:
    id: str
    name: str
    """The Kubernetes container name (from :data:`LABEL_CONTAINER_NAME`)."""
    sandbox_id: str
    pod_uid: str
    labels: dict[str, str]
    state: ContainerState
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None
    image: str = ""
    image_id: str = ""
    restart_count: int = 0
    oom_killed: bool = False
    reason: str = ""
    """``Completed``/``Error``/``OOMKilled`` for exited containers."""
    message: str = ""


@dataclass
class LogLine:
    stream: Stream
    data: bytes
    """One line including its trailing newline (if any)."""
    timestamp: datetime | None = None


class ExecSession(Protocol):
    """A live exec or attach stream."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin."""

    async def close_stdin(self) -> None:
        """Signal EOF on stdin."""

    async def read(self) -> tuple[Stream, bytes] | None:
        """Next chunk of output, or None at end of stream."""

    async def resize(self, width: int, height: int) -> None:
        """Resize the TTY."""

    async def wait(self) -> int:
        """Wait for the process to end; its exit code."""

    async def close(self) -> None:
        """Tear the stream down (the process may go on)."""


@runtime_checkable
class ContainerRuntime(Protocol):
    instance: str
    #: No pod network exists (simulated pods): httpGet/tcpSocket probes answer like exec ones.
    simulated_network: bool

    async def version(self) -> str: ...
    async def ensure_network(self, name: str, cidr: str, gateway: str) -> None: ...
    async def remove_network(self, name: str) -> None: ...
    async def image_present(self, ref: str) -> ImageInfo | None: ...
    async def pull_image(
        self, ref: str, policy: PullPolicy = "IfNotPresent", *, auth: RegistryAuth | None = None
    ) -> ImageInfo: ...
    async def create_pod_sandbox(self, config: PodSandboxConfig) -> SandboxStatus: ...
    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus: ...
    async def list_sandboxes(self, labels: dict[str, str] | None = None) -> list[SandboxStatus]: ...
    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, grace_period: float) -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(
        self, labels: dict[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[ContainerStatus]: ...
    async def exec_sync(
        self, container_id: str, cmd: list[str], timeout_seconds: float
    ) -> tuple[int, bytes, bytes]: ...
    async def exec_stream(
        self, container_id: str, cmd: list[str], *, tty: bool = False, stdin: bool = False
    ) -> ExecSession: ...
    async def attach(
        self, container_id: str, *, stdin: bool = False, tty: bool = False
    ) -> ExecSession: ...
    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        since: datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[LogLine]: ...
    async def open_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...
    async def cleanup_all(self) -> None: ...
    async def close(self) -> None: ...
