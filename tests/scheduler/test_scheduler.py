"""The scheduler over a real Store + Registry: binding, Unschedulable, retry on change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microkube.kubelet.node import NodeAgent
from microkube.resources.registry import DeleteOptions, Registry
from microkube.scheduler import binding as scheduler_binding
from microkube.scheduler.scheduler import Scheduler

pytestmark = pytest.mark.anyio


def _pod(name: str, memory: str = "", **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if memory:
        c["resources"] = {"requests": {"memory": memory}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [c], **spec},
    }


def _cond(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def _events(reg: Registry, reason: str) -> list[dict[str, Any]]:
    ev = reg.catalog.get("", "v1", "events")
    return [e for e in reg.list(ev, "default").items if e["reason"] == reason]


async def _node(reg: Registry, tmp_path: Path) -> NodeAgent:
    agent = NodeAgent(reg, "node1", state_dir=tmp_path, ip="192.0.2.10")
    await agent.register()
    return agent


async def test_binds_pod_and_records_event(registry: Registry, tmp_path: Path) -> None:
    await _node(registry, tmp_path)
    pods = registry.catalog.get("", "v1", "pods")
    await registry.create(pods, "default", _pod("web"))
    s = Scheduler(registry)
    s.prime()
    assert await s.schedule_pending() == 1
    pod = registry.get(pods, "default", "web")
    assert pod["spec"]["nodeName"] == "node1"
    assert _cond(pod)["status"] == "True"
    [ev] = _events(registry, "Scheduled")
    assert ev["message"] == "Successfully assigned default/web to node1"
    assert ev["source"]["component"] == "default-scheduler"


async def test_unschedulable_then_fits_after_node_change(
    registry: Registry, tmp_path: Path
) -> None:
    await _node(registry, tmp_path)
    pods = registry.catalog.get("", "v1", "pods")
    await registry.create(pods, "default", _pod("big", memory="100Ti"))
    s = Scheduler(registry)
    s.prime()
    assert await s.schedule_pending() == 0
    pod = registry.get(pods, "default", "big")
    cond = _cond(pod)
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert cond["message"] == "0/1 nodes are available: 1 Insufficient memory."
    assert [e["type"] for e in _events(registry, "FailedScheduling")] == ["Warning"]
    # Nothing changed: not retried (no event storm).
    s.prime()
    s._generation -= 1  # prime bumps the generation; undo to simulate "no change"
    assert await s.schedule_pending() == 0
    assert _events(registry, "FailedScheduling")[0]["count"] == 1
    # A node change that gives room makes it fit.
    nodes = registry.catalog.get("", "v1", "nodes")

    def grow(n: dict[str, Any]) -> dict[str, Any]:
        n["status"]["allocatable"]["memory"] = "200Ti"
        return n

    new = await registry.guaranteed_update(nodes, "", "node1", grow, subresource="status")
    s._on_node("MODIFIED", new)
    assert await s.schedule_pending() == 1
    assert registry.get(pods, "default", "big")["spec"]["nodeName"] == "node1"


async def test_cordon_and_pod_deletion_frees_room(registry: Registry, tmp_path: Path) -> None:
    await _node(registry, tmp_path)
    nodes = registry.catalog.get("", "v1", "nodes")
    pods = registry.catalog.get("", "v1", "pods")

    def set_pods(n: dict[str, Any]) -> dict[str, Any]:
        n["status"]["allocatable"]["pods"] = "1"
        return n

    await registry.guaranteed_update(nodes, "", "node1", set_pods, subresource="status")
    await registry.create(pods, "default", _pod("a"))
    await registry.create(pods, "default", _pod("b"))
    s = Scheduler(registry)
    s.prime()
    assert await s.schedule_pending() == 1
    b = registry.get(pods, "default", "b")
    assert _cond(b)["message"] == "0/1 nodes are available: 1 Too many pods."
    a = registry.get(pods, "default", "a")
    gone, _ = await registry.delete(pods, "default", "a", DeleteOptions(grace_period_seconds=0))
    s._on_pod("DELETED", a)
    assert await s.schedule_pending() == 1

    # A cordoned node takes nothing.
    def cordon(n: dict[str, Any]) -> dict[str, Any]:
        n["spec"]["unschedulable"] = True
        return n

    s._on_node("MODIFIED", await registry.guaranteed_update(nodes, "", "node1", cordon))
    await registry.create(pods, "default", _pod("c"))
    s.prime()
    assert await s.schedule_pending() == 0
    assert _cond(registry.get(pods, "default", "c"))["message"] == (
        "0/1 nodes are available: 1 node(s) were unschedulable."
    )


async def test_room_freed_during_a_pass_is_retried_at_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod deleted while a pass awaits its writes makes that pass's failures due again."""
    await _node(registry, tmp_path)
    nodes = registry.catalog.get("", "v1", "nodes")
    pods = registry.catalog.get("", "v1", "pods")

    def one_pod(n: dict[str, Any]) -> dict[str, Any]:
        n["status"]["allocatable"]["pods"] = "1"
        return n

    await registry.guaranteed_update(nodes, "", "node1", one_pod, subresource="status")
    await registry.create(pods, "default", _pod("a"))
    s = Scheduler(registry)
    s.prime()
    assert await s.schedule_pending() == 1
    await registry.create(pods, "default", _pod("b"))
    s.prime()
    a = registry.get(pods, "default", "a")
    real = scheduler_binding.set_scheduled_condition

    async def deletion_arrives_meanwhile(*args: Any, **kwargs: Any) -> Any:
        await registry.delete(pods, "default", "a", DeleteOptions(grace_period_seconds=0))
        s._on_pod("DELETED", a)  # the watch event, delivered while the pass awaits
        return await real(*args, **kwargs)

    monkeypatch.setattr(scheduler_binding, "set_scheduled_condition", deletion_arrives_meanwhile)
    assert await s.schedule_pending() == 0  # b failed against the pass's snapshot
    monkeypatch.setattr(scheduler_binding, "set_scheduled_condition", real)
    assert await s.schedule_pending() == 1  # due again at once (not after retry_interval)
    assert registry.get(pods, "default", "b")["spec"]["nodeName"] == "node1"


async def test_run_loop_schedules(registry: Registry, tmp_path: Path) -> None:
    import asyncio

    await _node(registry, tmp_path)
    pods = registry.catalog.get("", "v1", "pods")
    s = Scheduler(registry)
    task = asyncio.create_task(s.run())
    try:
        await registry.create(pods, "default", _pod("late"))
        for _ in range(100):
            if registry.get(pods, "default", "late")["spec"].get("nodeName"):
                break
            await asyncio.sleep(0.02)
        assert registry.get(pods, "default", "late")["spec"]["nodeName"] == "node1"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
