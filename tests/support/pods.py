"""Simulate a kubelet making pods ready (until the real kubelet runs them).

``mark_ready`` writes what a kubelet would: phase Running, PodScheduled,
Initialized, ContainersReady and Ready conditions True, and one ready
``containerStatuses`` entry per container, through the pods/status
subresource exactly like the kubelet's status manager.
"""

from __future__ import annotations

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
