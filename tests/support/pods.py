"""Simulate a kubelet making pods ready (until the real kubelet runs them).

``mark_ready`` writes what a kubelet would: phase Running, PodScheduled,
Initialized, ContainersReady and Ready conditions True, and one ready
``containerStatuses`` entry per container, through the pods/status
subresource exactly like the kubelet's status manager.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from microkube.objects import meta
from microkube.resources.registry import Registry


def ready_status(pod: dict[str, Any], *, since: str | None = None) -> dict[str, Any]:
    stamp = since or meta.now()
    containers = pod.get("spec", {}).get("containers") or []
    return {
        "phase": "Running",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": stamp}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "hostIP": "10.0.0.1",
        "podIP": "10.1.0.10",
        "startTime": stamp,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": stamp}},
            }
            for c in containers
        ],
    }


async def mark_ready(
    registry: Registry, ns: str, name: str, *, since: str | None = None
) -> dict[str, Any] | None:
    rt = registry.catalog.get("", "v1", "pods")
    assert rt is not None

    def write(pod: dict[str, Any]) -> dict[str, Any]:
        pod["status"] = ready_status(pod, since=since)
        return pod

    return await registry.guaranteed_update(rt, ns, name, write, subresource="status")


async def mark_all_ready(registry: Registry, ns: str = "default") -> int:
    """Mark every not-yet-ready, not-deleting pod in ``ns`` ready; returns how many."""
    rt = registry.catalog.get("", "v1", "pods")
    assert rt is not None
    n = 0
    for pod in registry.list(rt, ns).items:
        if meta.is_deleting(pod) or pod.get("status", {}).get("phase") == "Running":
            continue
        await mark_ready(registry, ns, pod["metadata"]["name"])
        n += 1
    return n


@contextlib.contextmanager
def stand_in_kubelet(
    server: Any, status_for: Callable[[dict[str, Any]], dict[str, Any]] = ready_status
) -> Iterator[None]:
    """Play kubelet over HTTP for a server started with ``--runtime none``.

    Every pod that is not deleting and not yet Running/Succeeded/Failed gets
    ``status_for(pod)`` written through ``pods/status``, ten times a second.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            code, pods = server.request("GET", "/api/v1/pods")
            for pod in pods.get("items", []) if code == 200 else []:
                m = pod["metadata"]
                phase = pod.get("status", {}).get("phase")
                if m.get("deletionTimestamp") or phase in ("Running", "Succeeded", "Failed"):
                    continue
                pod["status"] = status_for(pod)
                server.request(
                    "PUT", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/status", pod
                )
            stop.wait(0.1)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def poll_until(pred: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll ``pred`` every 0.1 s until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
