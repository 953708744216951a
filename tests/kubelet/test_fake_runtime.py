"""FakeRuntime: lifecycle driven by env knobs and an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from microkube.kubelet import fake
from microkube.kubelet import runtime as rt
from microkube.kubelet.podman import PodmanRuntime


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_both_runtimes_satisfy_the_protocol() -> None:
    assert isinstance(fake.FakeRuntime("mk"), rt.ContainerRuntime)
    assert isinstance(PodmanRuntime("/nonexistent.sock", "mk"), rt.ContainerRuntime)


def test_lifecycle_exit_after_and_stop() -> None:
    clock = Clock()
    r = fake.FakeRuntime("mk", clock=clock)

    async def body() -> None:
        await r.ensure_network("mk-pods", "10.5.0.0/24", "10.5.0.1")
        await r.pull_image("busybox")
        sb = await r.create_pod_sandbox(
            rt.PodSandboxConfig(uid="u1", namespace="ns", name="p", network="mk-pods")
        )
        assert (sb.ip, sb.state) == ("10.5.0.2", "ready")
        sb2 = await r.create_pod_sandbox(
            rt.PodSandboxConfig(uid="u2", namespace="ns", name="q", network="mk-pods")
        )
        assert sb2.ip == "10.5.0.3"
        env = {fake.EXIT_AFTER: "5", fake.EXIT_CODE: "3"}
        short = await r.create_container(sb.id, rt.ContainerConfig("job", "busybox", env=env))
        long = await r.create_container(
            sb.id, rt.ContainerConfig("web", "busybox", restart_count=4)
        )
        assert (await r.container_status(short)).state == "created"
        await r.start_container(short)
        await r.start_container(long)
        clock.advance(4.9)
        assert (await r.container_status(short)).state == "running"
        clock.advance(0.2)
        st = await r.container_status(short)
        assert (st.state, st.exit_code, st.reason) == ("exited", 3, "Error")
        assert st.finished_at == datetime(2024, 1, 1, 0, 0, 5, tzinfo=UTC)
        await r.stop_container(long, 30)
        st = await r.container_status(long)
        assert (st.state, st.exit_code, st.reason, st.restart_count) == (
            "exited",
            0,
            "Completed",
            4,
        )
        lines = [line.data async for line in r.logs(short)]
        assert lines == [b"fake container job started\n", b"fake container job exited 3\n"]
        assert [line.data async for line in r.logs(short, tail=1)] == [lines[1]]

    run(body())


def test_labels_listing_adoption_and_cleanup() -> None:
    r = fake.FakeRuntime("mk", preloaded=["nginx"])

    async def body() -> None:
        sb = await r.create_pod_sandbox(
            rt.PodSandboxConfig(uid="u1", namespace="ns", name="p", labels={"app": "a"})
        )
        other = await r.create_pod_sandbox(rt.PodSandboxConfig(uid="u2", namespace="ns", name="q"))
        cid = await r.create_container(sb.id, rt.ContainerConfig("c", "nginx:latest"))
        await r.create_container(other.id, rt.ContainerConfig("d", "docker.io/library/nginx"))
        assert [s.id for s in await r.list_sandboxes({rt.LABEL_POD_UID: "u1"})] == [sb.id]
        assert [s.id for s in await r.list_sandboxes({"app": "a"})] == [sb.id]
        found = await r.list_containers({rt.LABEL_POD_UID: "u1"})
        assert [(c.id, c.name, c.labels[rt.LABEL_INSTANCE]) for c in found] == [(cid, "c", "mk")]
        assert [c.name for c in await r.list_containers(sandbox_id=other.id)] == ["d"]
        await r.remove_pod_sandbox(sb.id)
        with pytest.raises(rt.RuntimeNotFound):
            await r.container_status(cid)
        await r.cleanup_all()
        assert await r.list_sandboxes() == [] and await r.list_containers() == []

    run(body())


def test_images_pull_policies() -> None:
    r = fake.FakeRuntime("mk", unpullable=["localhost:32000/missing:1"])

    async def body() -> None:
        with pytest.raises(rt.ImagePullError) as never:
            await r.pull_image("busybox", "Never")
        assert never.value.reason == "ErrImageNeverPull"
        info = await r.pull_image("busybox")
        assert info.ref == "docker.io/library/busybox:latest"
        assert (await r.pull_image("busybox", "Never")).id == info.id
        with pytest.raises(rt.ImagePullError) as failed:
            await r.pull_image("localhost:32000/missing:1")
        assert failed.value.reason == "ErrImagePull"
        with pytest.raises(rt.ImagePullError) as bad:
            await r.pull_image("UPPER")
        assert bad.value.reason == "InvalidImageName"
        sb = await r.create_pod_sandbox(rt.PodSandboxConfig(uid="u", namespace="n", name="p"))
        with pytest.raises(rt.ContainerRuntimeError):
            await r.create_container(sb.id, rt.ContainerConfig("c", "never-pulled"))

    run(body())


def test_exec_and_attach_echo() -> None:
    r = fake.FakeRuntime("mk", preloaded=["busybox"])

    async def body() -> None:
        sb = await r.create_pod_sandbox(rt.PodSandboxConfig(uid="u", namespace="n", name="p"))
        env = {fake.EXEC_EXIT_CODE: "1"}
        cid = await r.create_container(sb.id, rt.ContainerConfig("c", "busybox", env=env))
        with pytest.raises(rt.ContainerRuntimeError):
            await r.exec_sync(cid, ["true"], 1)
        await r.start_container(cid)
        assert await r.exec_sync(cid, ["cat", "/x"], 1) == (1, b"", b"")
        session = await r.exec_stream(cid, ["cat"], stdin=True)
        await session.write(b"hello")
        await session.close_stdin()
        assert await session.read() == ("stdout", b"hello")
        assert await session.read() is None
        assert await session.wait() == 1
        attached = await r.attach(cid, stdin=True)
        await attached.write(b"x")
        assert await attached.read() == ("stdout", b"x")
        await attached.close()
        with pytest.raises(rt.ContainerRuntimeError):
            await r.open_port(sb.id, 80)

    run(body())


def test_thousands_of_pods_are_cheap() -> None:
    clock = Clock()
    r = fake.FakeRuntime("mk", clock=clock, preloaded=["busybox"])

    async def body() -> None:
        await r.ensure_network("mk-pods", "10.6.0.0/16", "10.6.0.1")
        for i in range(3000):
            sb = await r.create_pod_sandbox(
                rt.PodSandboxConfig(uid=f"u{i}", namespace="n", name=f"p{i}", network="mk-pods")
            )
            env = {fake.EXIT_AFTER: "1"} if i % 2 else {}
            cid = await r.create_container(sb.id, rt.ContainerConfig("c", "busybox", env=env))
            await r.start_container(cid)
        clock.advance(2)
        states = [c.state for c in await r.list_containers()]
        assert states.count("exited") == 1500 and states.count("running") == 1500
        assert len({s.ip for s in await r.list_sandboxes()}) == 3000

    run(body())


def test_normalize_image() -> None:
    n = rt.normalize_image
    assert n("nginx") == "docker.io/library/nginx:latest"
    assert n("nginx:1.25") == "docker.io/library/nginx:1.25"
    assert n("me/app") == "docker.io/me/app:latest"
    assert n("localhost:32000/app:1") == "localhost:32000/app:1"
    assert n("localhost/app") == "localhost/app:latest"
    assert n("registry.k8s.io/pause:3.9") == "registry.k8s.io/pause:3.9"
    digest = "sha256:" + "a" * 64
    assert n(f"quay.io/a/b@{digest}") == f"quay.io/a/b@{digest}"
    assert n(f"busybox@{digest}") == f"docker.io/library/busybox@{digest}"
    for bad in ("", "Nginx", "a b", "x:", "a@sha256:zz"):
        with pytest.raises(rt.ImagePullError):
            n(bad)


def test_network_probes_are_simulated() -> None:
    """Simulated pods have no network: httpGet/tcpSocket probes answer like exec ones."""
    from microkube.kubelet import probes

    r = fake.FakeRuntime("mk")

    async def body() -> None:
        await r.ensure_network("mk-pods", "10.5.0.0/24", "10.5.0.1")
        await r.pull_image("nginx")
        sb = await r.create_pod_sandbox(
            rt.PodSandboxConfig(uid="u1", namespace="ns", name="p", network="mk-pods")
        )
        good = await r.create_container(sb.id, rt.ContainerConfig("good", "nginx"))
        env = {fake.EXEC_EXIT_CODE: "1"}
        bad = await r.create_container(sb.id, rt.ContainerConfig("bad", "nginx", env=env))
        for cid in (good, bad):
            await r.start_container(cid)
        http = {"httpGet": {"path": "/", "port": 80}}
        tcp = {"tcpSocket": {"port": 80}}
        for probe in (http, tcp):
            kw = {"runtime": r, "pod_ip": sb.ip, "container": {}, "timeout": 1.0}
            assert (await probes.run(probe, container_id=good, **kw))[0]
            ok, msg = await probes.run(probe, container_id=bad, **kw)
            assert not ok and msg

    run(body())
