"""PodmanRuntime against real Podman: a private service, busybox pods, real I/O.

One private ``podman system service`` (unique instance name, tmp state dir)
and one network (random 10.213.X.0/24) serve the whole module; each test makes
its own sandboxes.  The module finalizer runs ``cleanup_all`` and checks with
the podman CLI that nothing labelled with the instance is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from microkube.kubelet import runtime as rt
from microkube.kubelet.podman import PodmanRuntime
from microkube.kubelet.podman_service import PodmanService, ping
from tests.support import images

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(not images.busybox_available(), reason="podman or busybox missing"),
    pytest.mark.timeout(120),
]
T = TypeVar("T")


@dataclass
class Env:
    service: PodmanService
    network: str
    image: str

    def run(self, body: Callable[[PodmanRuntime], Awaitable[T]], instance: str = "") -> T:
        async def main() -> T:
            runtime = PodmanRuntime(self.service.socket_path, instance or self.service.instance)
            try:
                return await body(runtime)
            finally:
                await runtime.close()

        return asyncio.run(main())

    def podman(self, *args: str) -> str:
        out = subprocess.run(
            ["podman", *args], env=self.service.env(), capture_output=True, text=True, timeout=60
        )
        return out.stdout


def _leftovers(env: Env, instance: str) -> dict[str, Any]:
    flt = f"label=io.microkube.instance={instance}"
    return {
        "pods": env.podman("pod", "ps", "-q", "--filter", flt).split(),
        "containers": env.podman("ps", "-aq", "--filter", flt).split(),
        "networks": [
            n["name"]
            for n in json.loads(env.podman("network", "ls", "--format", "json") or "[]")
            if (n.get("labels") or {}).get(rt.LABEL_INSTANCE) == instance
        ],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    instance = f"mkt{uuid.uuid4().hex[:8]}"
    service = PodmanService(tmp_path_factory.mktemp("state"), instance, pod_cidr="10.213.0.0/16")
    service.start()
    e = Env(service, f"{instance}-pods", images.busybox_image(service.env()))
    try:
        for _ in range(10):  # a random /24 that no other network uses
            x = random.randint(1, 254)
            try:
                e.run(
                    lambda r, x=x: r.ensure_network(e.network, f"10.213.{x}.0/24", f"10.213.{x}.1")
                )
                break
            except rt.ContainerRuntimeError:
                continue
        else:
            pytest.fail("no free 10.213.X.0/24 subnet")
        yield e
    finally:
        try:
            e.run(lambda r: r.cleanup_all())
            assert _leftovers(e, instance) == {"pods": [], "containers": [], "networks": []}
        finally:
            service.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sandbox(env: Env, name: str, **kw: Any) -> rt.PodSandboxConfig:
    return rt.PodSandboxConfig(
        uid=str(uuid.uuid4()), namespace="default", name=name, network=env.network, **kw
    )


async def _wait_exited(r: PodmanRuntime, cid: str, limit: float = 15) -> rt.ContainerStatus:
    deadline = time.monotonic() + limit
    while (st := await r.container_status(cid)).state != "exited":
        assert time.monotonic() < deadline, st
        await asyncio.sleep(0.1)
    return st


def test_pod_containers_share_localhost_volume_and_dns(env: Env, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    host_port = _free_port()

    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(
            _sandbox(
                env,
                "web",
                hostname="web-host",
                dns_servers=["10.152.183.10"],
                dns_searches=["default.svc.cluster.local"],
                dns_options=["ndots:5"],
                host_aliases=[rt.HostAlias("10.9.9.9", ["alias.example"])],
                port_mappings=[rt.PortMapping(8080, host_port, host_ip="127.0.0.1")],
            )
        )
        assert sb.state == "ready" and sb.ip.startswith("10.213.")
        mount = rt.Mount(str(shared), "/shared")
        server = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="server",
                image=env.image,
                command=["nc", "-ll", "-p", "8080", "-e", "echo", "hi"],
            ),
        )
        script = (
            'for i in $(seq 50); do r=$(nc 127.0.0.1 8080 </dev/null); [ -n "$r" ] && break;'
            ' sleep 0.1; done; echo "$r" > /shared/got; hostname >> /shared/got;'
            " cat /etc/resolv.conf /etc/hosts >> /shared/got; echo $GREETING >> /shared/got"
        )
        client = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="client",
                image=env.image,
                command=["sh", "-c", script],
                env={"GREETING": "hello-env"},
                mounts=[mount],
            ),
        )
        await r.start_container(server)
        await r.start_container(client)
        st = await _wait_exited(r, client)
        assert (st.exit_code, st.reason, st.name, st.sandbox_id) == (
            0,
            "Completed",
            "client",
            sb.id,
        )
        got = (shared / "got").read_text().splitlines()
        assert got[0] == "hi" and got[1] == "web-host"
        assert "nameserver 10.152.183.10" in got and "options ndots:5" in got
        assert "search default.svc.cluster.local" in got
        assert any(line.split() == ["10.9.9.9", "alias.example"] for line in got)
        assert got[-1] == "hello-env"
        # Port forwarding: the host reaches the pod IP on the local bridge.
        reader, writer = await r.open_port(sb.id, 8080)
        assert await asyncio.wait_for(reader.read(), 5) == b"hi\n"
        writer.close()
        # hostPort: published on the host's loopback.
        reader, writer = await asyncio.open_connection("127.0.0.1", host_port)
        assert await asyncio.wait_for(reader.read(), 5) == b"hi\n"
        writer.close()
        await r.remove_pod_sandbox(sb.id)
        with pytest.raises(rt.RuntimeNotFound):
            await r.container_status(server)

    env.run(body)


def test_read_only_mount_and_user(env: Env, tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()

    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "ro"))
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="c",
                image=env.image,
                command=["sh", "-c", "id -u; touch /data/x"],
                mounts=[rt.Mount(str(tmp_path / "ro"), "/data", read_only=True)],
                user=65534,
            ),
        )
        await r.start_container(cid)
        st = await _wait_exited(r, cid)
        assert st.exit_code == 1 and st.reason == "Error"
        lines = [line async for line in r.logs(cid)]
        assert lines[0].stream == "stdout" and lines[0].data == b"65534\n"
        assert lines[1].stream == "stderr" and b"Read-only file system" in lines[1].data
        assert not (tmp_path / "ro" / "x").exists()

    env.run(body)


def test_exit_code_logs_and_command_args(env: Env) -> None:
    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "exit"))
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="c",
                image=env.image,
                command=["sh", "-c"],
                args=["echo out; echo err >&2; exit 3"],
                restart_count=2,
            ),
        )
        await r.start_container(cid)
        st = await _wait_exited(r, cid)
        assert (st.exit_code, st.reason, st.restart_count) == (3, "Error", 2)
        assert st.started_at is not None and st.finished_at is not None
        assert st.finished_at >= st.started_at
        lines = [(line.stream, line.data) async for line in r.logs(cid)]
        assert lines == [("stdout", b"out\n"), ("stderr", b"err\n")]
        assert all([line.timestamp is not None async for line in r.logs(cid)])
        tail = [line.data async for line in r.logs(cid, tail=1)]
        assert tail == [b"err\n"]

    env.run(body)


def test_exec_sync_exec_stream_and_attach(env: Env) -> None:
    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "exec"))
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="c", image=env.image, command=["cat"], stdin=True, env={"V": "42"}
            ),
        )
        await r.start_container(cid)
        code, out, err = await r.exec_sync(cid, ["sh", "-c", "echo $V; echo oops >&2; exit 4"], 10)
        assert (code, out, err) == (4, b"42\n", b"oops\n")
        with pytest.raises(TimeoutError):
            await r.exec_sync(cid, ["sleep", "5"], 0.5)

        session = await r.exec_stream(
            cid, ["sh", "-c", "read x; echo got-$x; echo e >&2"], stdin=True
        )
        await session.write(b"ping\n")
        await session.close_stdin()
        chunks = []
        while (chunk := await session.read()) is not None:
            chunks.append(chunk)
        assert sorted(chunks) == [("stderr", b"e\n"), ("stdout", b"got-ping\n")]
        assert await session.wait() == 0
        await session.close()

        tty = await r.exec_stream(
            cid, ["sh", "-c", "read x; stty size; exit 7"], tty=True, stdin=True
        )
        await tty.resize(100, 30)
        await tty.write(b"go\n")
        data = b""
        while (chunk := await tty.read()) is not None:
            data += chunk[1]
        assert await tty.wait() == 7
        assert b"30 100\r\n" in data  # a pty, resized, translating newlines
        await tty.close()

        attached = await r.attach(cid, stdin=True)
        await attached.write(b"through-attach\n")
        assert await asyncio.wait_for(attached.read(), 5) == ("stdout", b"through-attach\n")
        await attached.close()
        await r.stop_container(cid, 5)

    env.run(body)


def test_stop_sigterm_then_sigkill(env: Env) -> None:
    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "stop"))
        polite = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="polite",
                image=env.image,
                command=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
            ),
        )
        stubborn = await r.create_container(
            sb.id, rt.ContainerConfig(name="stubborn", image=env.image, command=["sleep", "1000"])
        )
        await r.start_container(polite)
        await r.start_container(stubborn)
        await asyncio.sleep(0.3)
        assert {c.name: c.state for c in await r.list_containers(sandbox_id=sb.id)} == {
            "polite": "running",
            "stubborn": "running",
        }
        t0 = time.monotonic()
        await r.stop_container(polite, 10)
        assert time.monotonic() - t0 < 3  # SIGTERM handled: no wait for the grace period
        assert (await r.container_status(polite)).exit_code == 0
        t0 = time.monotonic()
        await r.stop_container(stubborn, 1)  # PID 1 ignores SIGTERM → SIGKILL after 1 s
        elapsed = time.monotonic() - t0
        assert 0.9 < elapsed < 5
        st = await r.container_status(stubborn)
        assert (st.state, st.exit_code) == ("exited", 137)

    env.run(body)


def test_adopt_after_new_runtime_object(env: Env) -> None:
    cfg = _sandbox(env, "adopt", labels={"app": "x"})

    async def create(r: PodmanRuntime) -> tuple[str, str]:
        sb = await r.create_pod_sandbox(cfg)
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="main",
                image="localhost/mk-busybox:test",
                command=["sleep", "60"],
                restart_count=1,
            ),
        )
        await r.start_container(cid)
        return sb.id, cid

    sb_id, cid = env.run(create)

    async def adopt(r: PodmanRuntime) -> None:
        sandboxes = await r.list_sandboxes({rt.LABEL_POD_UID: cfg.uid})
        assert [(s.id, s.namespace, s.pod_name, s.state, s.labels["app"]) for s in sandboxes] == [
            (sb_id, "default", "adopt", "ready", "x")
        ]
        assert sandboxes[0].ip.startswith("10.213.")
        containers = await r.list_containers({rt.LABEL_POD_UID: cfg.uid})
        assert [(c.id, c.name, c.state, c.restart_count, c.sandbox_id) for c in containers] == [
            (cid, "main", "running", 1, sb_id)
        ]
        assert containers[0].image == "localhost/mk-busybox:test" and containers[0].image_id
        await r.remove_pod_sandbox(sb_id)
        assert await r.list_sandboxes({rt.LABEL_POD_UID: cfg.uid}) == []

    env.run(adopt)


def test_images_and_pull_errors(env: Env) -> None:
    async def body(r: PodmanRuntime) -> None:
        info = await r.pull_image(env.image, "Never")
        assert info.id and info.ref == env.image
        assert await r.image_present("localhost/mk-absent:nope") is None
        with pytest.raises(rt.ImagePullError) as never:
            await r.pull_image("localhost/mk-absent:nope", "Never")
        assert never.value.reason == "ErrImageNeverPull"
        with pytest.raises(rt.ImagePullError) as failed:
            await r.pull_image("localhost:1/mk-absent:nope", "IfNotPresent")
        assert failed.value.reason == "ErrImagePull"
        with pytest.raises(rt.ImagePullError) as bad:
            await r.pull_image("Bad Name", "Always")
        assert bad.value.reason == "InvalidImageName"

    env.run(body)


def test_cleanup_all_removes_every_labelled_object(env: Env) -> None:
    other = f"{env.service.instance}c"

    async def body(r: PodmanRuntime) -> None:
        x = random.randint(1, 254)
        await r.ensure_network(f"{other}-pods", f"10.214.{x}.0/24", f"10.214.{x}.1")
        sb = await r.create_pod_sandbox(
            rt.PodSandboxConfig(
                uid=str(uuid.uuid4()), namespace="ns", name="p", network=f"{other}-pods"
            )
        )
        cid = await r.create_container(
            sb.id, rt.ContainerConfig(name="c", image=env.image, command=["sleep", "60"])
        )
        await r.start_container(cid)
        assert len(await r.list_containers()) == 1
        await r.cleanup_all()
        assert await r.list_sandboxes() == [] and await r.list_containers() == []

    try:
        env.run(body, instance=other)
    finally:
        env.run(lambda r: r.cleanup_all(), instance=other)
    assert _leftovers(env, other) == {"pods": [], "containers": [], "networks": []}


def test_service_is_restarted_when_it_dies(env: Env) -> None:
    proc = env.service._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while env.service.restarts < 1 or not ping(env.service.socket_path):
        assert time.monotonic() < deadline, "service was not restarted"
        time.sleep(0.1)
    assert env.run(lambda r: r.version()).startswith("4.")


def test_limits_capabilities_and_read_only_rootfs(env: Env) -> None:
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max;"
        " cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max;"
        " grep CapEff /proc/self/status; touch /rootfs-file 2>/dev/null && echo writable || echo ro;"
        " touch /tmp/x 2>/dev/null || echo tmp-ro"
    )

    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "limits"))
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="c",
                image=env.image,
                command=["sh", "-c", script],
                memory_limit_bytes=64 * 1024 * 1024,
                cpu_limit_millis=500,
                cap_drop=["ALL"],
                read_only_rootfs=True,
            ),
        )
        await r.start_container(cid)
        st = await _wait_exited(r, cid)
        out = [line.data.decode().strip() async for line in r.logs(cid)]
        assert st.exit_code == 0, out
        assert out[0] == str(64 * 1024 * 1024)
        assert out[1] in ("50000", "50000 100000")
        assert out[2].split() == ["CapEff:", "0000000000000000"]
        assert out[3] == "ro"
        assert out[4] == "tmp-ro"  # like Kubernetes: no implicit tmpfs on /tmp

    env.run(body)


def test_existing_socket_is_used_without_supervision(env: Env, tmp_path: Path) -> None:
    external = PodmanService(
        tmp_path, "unused", pod_cidr="10.213.0.0/16", existing_socket=env.service.socket_path
    )
    external.start()
    assert external.url == env.service.url and external._proc is None
    external.close()
    assert ping(env.service.socket_path)  # closing an external service leaves the socket alone


def test_a_service_left_by_a_killed_microkube_is_replaced(tmp_path: Path) -> None:
    """After ``kill -9`` of microkube its service lives on; the next start ends it."""
    first = PodmanService(tmp_path, "mktstale", pod_cidr="10.213.0.0/16")
    first.start()
    orphan = first._proc
    assert orphan is not None
    first._stopping.set()  # the supervisor dies with microkube; the service does not
    assert first._thread is not None
    first._thread.join(5)
    second = PodmanService(tmp_path, "mktstale", pod_cidr="10.213.0.0/16")
    try:
        second.start()
        assert orphan.wait(10) is not None  # ended, not left serving an unlinked socket
        assert second._proc is not None and second._proc.pid != orphan.pid
        assert ping(second.socket_path)
    finally:
        second.close()
    assert not (tmp_path / "podman" / "service.pid").exists()


def test_partial_writes_are_one_log_line(env: Env) -> None:
    script = 'printf "a "; sleep 1; printf "b\\n"; echo full; printf "c "; echo d >&2; printf "e"'

    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "partial"))
        cid = await r.create_container(
            sb.id, rt.ContainerConfig(name="c", image=env.image, command=["sh", "-c", script])
        )
        await r.start_container(cid)
        followed = [line async for line in r.logs(cid, follow=True)]
        st = await _wait_exited(r, cid)
        assert st.exit_code == 0
        lines = [line async for line in r.logs(cid)]
        assert [(x.stream, x.data) for x in lines] == [
            ("stdout", b"a b\n"),
            ("stdout", b"full\n"),
            ("stdout", b"c e"),  # stdout's fragments join across stderr's line
            ("stderr", b"d\n"),
        ] or [(x.stream, x.data) for x in lines] == [
            ("stdout", b"a b\n"),
            ("stdout", b"full\n"),
            ("stderr", b"d\n"),
            ("stdout", b"c e"),
        ]
        assert sorted(x.data for x in followed) == sorted(x.data for x in lines)
        first = lines[0].timestamp
        assert first is not None and first.microsecond != 0  # the file's sub-second time
        # the first fragment's time: a second before "full" was written
        assert lines[1].timestamp is not None and (lines[1].timestamp - first).total_seconds() >= 1
        assert [x.data async for x in r.logs(cid, tail=3)][0] == b"full\n"
        assert [x.data async for x in r.logs(cid, since=lines[1].timestamp)][0] == b"full\n"

    env.run(body)


def test_memory_cgroup_kill_is_oomkilled(env: Env) -> None:
    async def body(r: PodmanRuntime) -> None:
        sb = await r.create_pod_sandbox(_sandbox(env, "oom"))
        cid = await r.create_container(
            sb.id,
            rt.ContainerConfig(
                name="oom",
                image=env.image,
                # tail keeps the whole newline-less stream in memory until the cgroup kills it
                command=["tail", "/dev/zero"],
                memory_limit_bytes=16 * 1024 * 1024,
            ),
        )
        await r.start_container(cid)
        st = await _wait_exited(r, cid)
        assert (st.exit_code, st.reason, st.oom_killed) == (137, "OOMKilled", True)
        [listed] = [c for c in await r.list_containers() if c.id == cid]
        assert (listed.reason, listed.oom_killed) == ("OOMKilled", True)

    env.run(body)
