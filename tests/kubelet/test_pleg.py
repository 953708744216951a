"""The PLEG: one relist reports the pods whose containers changed; the kubelet acts on it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from microkube.kubelet import fake, pleg
from microkube.kubelet import runtime as rt
from microkube.kubelet.fake import FakeRuntime
from microkube.resources.registry import Registry
from tests.kubelet.test_kubelet_sync import NET, Clock, c, create, get, make_kubelet, pod_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def runtime(clock: Clock, registry: Registry) -> FakeRuntime:
    r = FakeRuntime("mkt", clock=clock, preloaded=["busybox:1.36"])
    await r.ensure_network(NET, "10.214.7.0/24", "10.214.7.1")
    sa = registry.catalog.get("", "v1", "serviceaccounts")
    if registry.try_get(sa, "default", "default") is None:
        await registry.create(sa, "default", {"metadata": {"name": "default"}})
    return r


async def test_relist_reports_changed_pods_only(runtime: FakeRuntime, clock: Clock) -> None:
    p = pleg.Pleg(runtime)
    assert await p.relist() == set()
    cfg = rt.PodSandboxConfig(uid="u1", namespace="default", name="a", network=NET)
    sb = await runtime.create_pod_sandbox(cfg)
    other = await runtime.create_pod_sandbox(
        rt.PodSandboxConfig(uid="u2", namespace="default", name="b", network=NET)
    )
    await runtime.pull_image("busybox:1.36")
    env = {fake.EXIT_AFTER: "5"}
    cid = await runtime.create_container(
        sb.id, rt.ContainerConfig(name="x", image="busybox:1.36", env=env)
    )
    quiet = await runtime.create_container(
        other.id, rt.ContainerConfig(name="y", image="busybox:1.36")
    )
    await runtime.start_container(quiet)
    assert await p.relist() == {"u1", "u2"}  # first sight
    assert await p.relist() == set()
    await runtime.start_container(cid)
    assert await p.relist() == {"u1"}
    clock.advance(6)  # the container exits by itself
    assert await p.relist() == {"u1"}
    assert await p.relist() == set()
    await runtime.remove_container(cid)
    assert await p.relist() == {"u1"}


async def test_kubelet_notices_an_exit_without_resync(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    """With an hour-long resync only the PLEG can tell the kubelet that a container ended."""
    k = make_kubelet(registry, runtime, clock, tmp_path)
    k.resync = 3600.0
    k.pleg.period = 0.02
    task = asyncio.create_task(k.run())

    async def until(pred: Any) -> None:
        for _ in range(250):
            if pred():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached")

    def phase() -> str:
        return str(((get(registry, "once") or {}).get("status") or {}).get("phase"))

    try:
        env = [{"name": fake.EXIT_AFTER, "value": "5"}]
        await create(registry, pod_body("once", [c(env=env)], restartPolicy="Never"))
        await until(lambda: phase() == "Running")
        clock.advance(6)
        await until(lambda: phase() == "Succeeded")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
