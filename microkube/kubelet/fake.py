"""Simulated containers behind the :class:`~microkube.kubelet.runtime.ContainerRuntime` Protocol.

Used by ``--runtime fake`` (many pods, no Podman) and by kubelet tests.  It is
cheap enough for thousands of pods because nothing runs: state is evaluated
lazily from an injected clock whenever it is read, so there is no task or
timer per container.

Behaviour is driven by the container's environment, like kwok's stages are
driven by data:

* ``MICROKUBE_FAKE_EXIT_AFTER``: seconds after start at which the container
  exits by itself (absent: it runs until stopped);
* ``MICROKUBE_FAKE_EXIT_CODE``: that exit code (default 0);
* ``MICROKUBE_FAKE_STOP_EXIT_CODE``: exit code when stopped (default 0, a
  process that handles SIGTERM);
* ``MICROKUBE_FAKE_EXEC_EXIT_CODE``: what ``exec_sync`` returns (default 0),
  which is also the outcome of ``httpGet`` and ``tcpSocket`` probes: there is
  no pod network to probe (``simulated_network``).

Images are "pulled" instantly unless listed in ``unpullable``; with policy
``Never`` only images pulled before or listed in ``preloaded`` are present.
Every sandbox gets the next free address of its network's CIDR.  ``logs``
yields one line per container start (and one at exit) and never blocks, even
with ``follow``; exec and attach sessions echo stdin to stdout.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from microkube.kubelet import runtime as rt

EXIT_AFTER = "MICROKUBE_FAKE_EXIT_AFTER"
EXIT_CODE = "MICROKUBE_FAKE_EXIT_CODE"
STOP_EXIT_CODE = "MICROKUBE_FAKE_STOP_EXIT_CODE"
EXEC_EXIT_CODE = "MICROKUBE_FAKE_EXEC_EXIT_CODE"


def _now() -> datetime:
    return datetime.now(UTC)


def _image_id(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()


@dataclass
class _Container:
    status: rt.ContainerStatus
    config: rt.ContainerConfig
    logs: list[rt.LogLine] = field(default_factory=list)


@dataclass
class _Network:
    hosts: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]
    gateway: str


class EchoSession:
    """An exec/attach session that echoes stdin to stdout and exits with ``code``."""

    def __init__(self, code: int = 0, output: bytes = b"") -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        if output:
            self._queue.put_nowait(output)
        self._code = code
        self._done = asyncio.Event()
        self.size: tuple[int, int] | None = None

    async def write(self, data: bytes) -> None:
        await self._queue.put(data)

    async def close_stdin(self) -> None:
        await self._queue.put(None)

    async def read(self) -> tuple[rt.Stream, bytes] | None:
        if self._done.is_set() and self._queue.empty():
            return None
        data = await self._queue.get()
        if data is None:
            self._done.set()
            return None
        return "stdout", data

    async def resize(self, width: int, height: int) -> None:
        self.size = (width, height)

    async def wait(self) -> int:
        await self._done.wait()
        return self._code

    async def close(self) -> None:
        self._done.set()
        self._queue.put_nowait(None)


class FakeRuntime:
    """In-memory containers; see the module docstring for the knobs."""

    #: Network probes are answered like exec probes (see probes.run).
    simulated_network = True

    def __init__(
        self,
        instance: str,
        *,
        clock: Callable[[], datetime] = _now,
        preloaded: Iterable[str] = (),
        unpullable: Iterable[str] = (),
        private: dict[str, rt.RegistryAuth] | None = None,
        default_cidr: str = "10.1.0.0/16",
    ) -> None:
        self.instance = instance
        self.clock = clock
        self._images = {rt.normalize_image(r) for r in preloaded}
        self._unpullable = {rt.normalize_image(r) for r in unpullable}
        self._private = {rt.normalize_image(r): a for r, a in (private or {}).items()}
        """Images that only pull with these credentials."""
        self.pull_auths: list[tuple[str, rt.RegistryAuth | None]] = []
        """Every pull attempt: (image, credentials given)."""
        self._ids = itertools.count(1)
        self._networks: dict[str, _Network] = {}
        self._default_cidr = default_cidr
        self.sandboxes: dict[str, rt.SandboxStatus] = {}
        self.containers: dict[str, _Container] = {}
        self._by_pod: dict[str, dict[str, None]] = {}
        """Pod UID → its container ids (in creation order): the kubelet lists per pod."""

    def _new_id(self) -> str:
        return hashlib.sha256(f"{self.instance}/{next(self._ids)}".encode()).hexdigest()

    async def version(self) -> str:
        return "fake"

    async def close(self) -> None:
        pass

    # -- networks and images ------------------------------------------------

    async def ensure_network(self, name: str, cidr: str, gateway: str) -> None:
        if name not in self._networks:
            net = ipaddress.ip_network(cidr)
            hosts = (h for h in net.hosts() if str(h) != gateway)
            self._networks[name] = _Network(hosts, gateway)

    async def remove_network(self, name: str) -> None:
        self._networks.pop(name, None)

    async def image_present(self, ref: str) -> rt.ImageInfo | None:
        name = rt.normalize_image(ref)
        if name not in self._images:
            return None
        return rt.ImageInfo(ref=name, id=_image_id(name), digest="sha256:" + _image_id(name))

    async def pull_image(
        self,
        ref: str,
        policy: rt.PullPolicy = "IfNotPresent",
        *,
        auth: rt.RegistryAuth | None = None,
    ) -> rt.ImageInfo:
        name = rt.normalize_image(ref)
        if policy == "Always" or name not in self._images:
            self.pull_auths.append((name, auth))
        if (
            name in self._private
            and self._private[name] != auth
            and (policy == "Always" or name not in self._images)
        ):
            raise rt.ImagePullError(f"pulling {name}: unauthorized: authentication required")
        if policy == "Never" and name not in self._images:
            raise rt.ImagePullError(
                f'Container image "{ref}" is not present with pull policy of Never',
                reason="ErrImageNeverPull",
            )
        if name in self._unpullable and (policy == "Always" or name not in self._images):
            raise rt.ImagePullError(f"pulling {name}: manifest unknown")
        self._images.add(name)
        info = await self.image_present(name)
        assert info is not None
        return info

    # -- sandboxes ----------------------------------------------------------

    async def create_pod_sandbox(self, config: rt.PodSandboxConfig) -> rt.SandboxStatus:
        network = config.network or "default"
        if network not in self._networks and not config.host_network:
            if config.network:
                raise rt.RuntimeNotFound(f"network {network} not found")
            await self.ensure_network(network, self._default_cidr, "")
        try:
            ip = "" if config.host_network else str(next(iter(self._networks[network].hosts)))
        except StopIteration:
            raise rt.ContainerRuntimeError(f"network {network} has no free address") from None
        labels = {
            **config.labels,
            rt.LABEL_INSTANCE: self.instance,
            rt.LABEL_POD_UID: config.uid,
            rt.LABEL_NAMESPACE: config.namespace,
            rt.LABEL_POD_NAME: config.name,
        }
        sandbox = rt.SandboxStatus(
            id=self._new_id(),
            name=f"{self.instance}_{config.namespace}_{config.name}_{config.uid[:8]}",
            uid=config.uid,
            namespace=config.namespace,
            pod_name=config.name,
            labels=labels,
            state="ready",
            ip=ip,
            created_at=self.clock(),
            host_network=config.host_network,
        )
        self.sandboxes[sandbox.id] = sandbox
        return sandbox

    async def sandbox_status(self, sandbox_id: str) -> rt.SandboxStatus:
        try:
            return self.sandboxes[sandbox_id]
        except KeyError:
            raise rt.RuntimeNotFound(f"sandbox {sandbox_id} not found") from None

    async def list_sandboxes(self, labels: dict[str, str] | None = None) -> list[rt.SandboxStatus]:
        return [s for s in self.sandboxes.values() if _matches(s.labels, labels)]

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        sandbox = await self.sandbox_status(sandbox_id)
        for c in self.containers.values():
            if c.status.sandbox_id == sandbox_id and c.status.state == "running":
                self._exit(c, 137, self.clock())
        sandbox.state, sandbox.ip = "notready", ""

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.sandboxes.pop(sandbox_id, None)
        for cid in [c for c, v in self.containers.items() if v.status.sandbox_id == sandbox_id]:
            self._drop(cid)

    async def open_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        raise rt.ContainerRuntimeError("the fake runtime has no pod network to connect to")

    # -- containers ---------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig) -> str:
        sandbox = await self.sandbox_status(sandbox_id)
        image = rt.normalize_image(config.image)
        if image not in self._images:
            raise rt.ContainerRuntimeError(f"image {image} not known: pull it first")
        labels = {
            **config.labels,
            **{k: v for k, v in sandbox.labels.items() if k.startswith("io.microkube.")},
            rt.LABEL_CONTAINER_NAME: config.name,
            rt.LABEL_RESTART_COUNT: str(config.restart_count),
        }
        status = rt.ContainerStatus(
            id=self._new_id(),
            name=config.name,
            sandbox_id=sandbox_id,
            pod_uid=sandbox.uid,
            labels=labels,
            state="created",
            created_at=self.clock(),
            image=image,
            image_id=_image_id(image),
            restart_count=config.restart_count,
        )
        self.containers[status.id] = _Container(status, config)
        self._by_pod.setdefault(sandbox.uid, {})[status.id] = None
        return status.id

    def _drop(self, container_id: str) -> None:
        c = self.containers.pop(container_id, None)
        if c is not None:
            ids = self._by_pod.get(c.status.pod_uid, {})
            ids.pop(container_id, None)
            if not ids:
                self._by_pod.pop(c.status.pod_uid, None)

    def _get(self, container_id: str) -> _Container:
        try:
            c = self.containers[container_id]
        except KeyError:
            raise rt.RuntimeNotFound(f"container {container_id} not found") from None
        self._advance(c)
        return c

    def _advance(self, c: _Container) -> None:
        """Apply a scheduled self-exit whose time has come."""
        st, env = c.status, c.config.env
        if st.state != "running" or EXIT_AFTER not in env or st.started_at is None:
            return
        at = st.started_at + timedelta(seconds=float(env[EXIT_AFTER]))
        if self.clock() >= at:
            self._exit(c, int(env.get(EXIT_CODE, "0")), at)

    def _exit(self, c: _Container, code: int, at: datetime) -> None:
        st = c.status
        st.state, st.exit_code, st.finished_at = "exited", code, at
        st.reason = "Completed" if code == 0 else "Error"
        c.logs.append(
            rt.LogLine("stdout", f"fake container {st.name} exited {code}\n".encode(), at)
        )

    async def start_container(self, container_id: str) -> None:
        c = self._get(container_id)
        if c.status.state != "created":
            raise rt.ContainerRuntimeError(f"container {container_id} is {c.status.state}")
        now = self.clock()
        c.status.state, c.status.started_at = "running", now
        c.logs.append(
            rt.LogLine("stdout", f"fake container {c.status.name} started\n".encode(), now)
        )
        self._advance(c)

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        c = self._get(container_id)
        if c.status.state == "running":
            self._exit(c, int(c.config.env.get(STOP_EXIT_CODE, "0")), self.clock())

    async def remove_container(self, container_id: str) -> None:
        self._drop(container_id)

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        return self._get(container_id).status

    async def list_containers(
        self, labels: dict[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[rt.ContainerStatus]:
        out = []
        uid = (labels or {}).get(rt.LABEL_POD_UID)
        candidates = (
            self.containers.values()
            if uid is None
            else [self.containers[i] for i in self._by_pod.get(uid, {}) if i in self.containers]
        )
        for c in candidates:
            if _matches(c.status.labels, labels) and sandbox_id in (None, c.status.sandbox_id):
                self._advance(c)
                out.append(c.status)
        return out

    async def exec_sync(
        self, container_id: str, cmd: list[str], timeout_seconds: float
    ) -> tuple[int, bytes, bytes]:
        c = self._get(container_id)
        if c.status.state != "running":
            raise rt.ContainerRuntimeError(f"container {container_id} is not running")
        return int(c.config.env.get(EXEC_EXIT_CODE, "0")), b"", b""

    async def exec_stream(
        self, container_id: str, cmd: list[str], *, tty: bool = False, stdin: bool = False
    ) -> EchoSession:
        code, _, _ = await self.exec_sync(container_id, cmd, 0)
        session = EchoSession(code)
        if not stdin:
            await session.close_stdin()
        return session

    async def attach(
        self, container_id: str, *, stdin: bool = False, tty: bool = False
    ) -> EchoSession:
        self._get(container_id)
        return EchoSession()

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        since: datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[rt.LogLine]:
        lines = [x for x in self._get(container_id).logs if since is None or x.timestamp >= since]  # type: ignore[operator]
        for line in lines[-tail:] if tail else ([] if tail == 0 else lines):
            yield line

    async def cleanup_all(self) -> None:
        self.sandboxes.clear()
        self.containers.clear()
        self._by_pod.clear()
        self._networks.clear()


def _matches(have: dict[str, str], want: dict[str, str] | None) -> bool:
    return all(have.get(k) == v for k, v in (want or {}).items())
