"""Eviction checks against PodDisruptionBudgets (mirrors the eviction REST handler)."""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.objects.selectors import LabelSelector
from microkube.resources.registry import Registry


def _ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _count(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return -(-int(value[:-1]) * total // 100)
    return int(value)


def check_eviction(reg: Registry, namespace: str, name: str) -> None:
    """Raise 429 when evicting the pod would violate a PodDisruptionBudget."""
    pdb_rt = reg.catalog.get("policy", "v1", "poddisruptionbudgets")
    pod_rt = reg.catalog.get("", "v1", "pods")
    if pdb_rt is None or pod_rt is None:
        return
    pod = reg.get(pod_rt, namespace, name)
    labels = pod["metadata"].get("labels") or {}
    if not _ready(pod):
        return  # evicting an unready pod never reduces availability
    for pdb in reg.list(pdb_rt, namespace).items:
        spec = pdb.get("spec") or {}
        sel = LabelSelector.from_structured(spec.get("selector") or {})
        if sel.empty or not sel.matches(labels):
            continue
        pods = [
            p
            for p in reg.list(pod_rt, namespace).items
            if sel.matches(p["metadata"].get("labels") or {})
        ]
        healthy = sum(1 for p in pods if _ready(p))
        if "minAvailable" in spec:
            allowed = healthy - _count(spec["minAvailable"], len(pods))
        elif "maxUnavailable" in spec:
            allowed = _count(spec["maxUnavailable"], len(pods)) - (len(pods) - healthy)
        else:
            continue
        if allowed <= 0:
            raise errors.TooManyRequests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                causes=[
                    errors.Cause(
                        "DisruptionBudget",
                        f"The disruption budget {pdb['metadata']['name']} needs {healthy - max(allowed, 0)} healthy pods and has {healthy} currently",
                    )
                ],
                retry_after=10,
            )
