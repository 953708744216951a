"""``pods/binding`` semantics as a registry-level helper.

The same two writes as the ``POST pods/NAME/binding`` endpoint
(:func:`microkube.api.subresources.binding`): set ``spec.nodeName`` (refusing
a deleting pod or one already bound, as ``BindingREST.setPodHostAndAnnotations``
does), then set the ``PodScheduled=True`` condition through the status
subresource.  The in-process scheduler calls this instead of going over HTTP.
"""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.objects import meta

Obj = dict[str, Any]


async def bind(registry: Any, namespace: str, name: str, node: str, *, uid: str = "") -> Obj:
    """Bind pod ``namespace/name`` to ``node``; returns the updated pod."""
    rt = registry.catalog.get("", "v1", "pods")

    def mutate(pod: Obj) -> Obj:
        if uid and pod["metadata"].get("uid") != uid:
            raise errors.Conflict(f"pod {name} was replaced", name=name, kind="pods/binding")
        if meta.is_deleting(pod):
            raise errors.Conflict(f"pod {name} is being deleted, cannot be assigned to a host")
        if pod.get("spec", {}).get("nodeName"):
            raise errors.Conflict(
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already '
                f'assigned to node "{pod["spec"]["nodeName"]}"',
                name=name,
                kind="pods/binding",
            )
        pod["spec"]["nodeName"] = node
        return pod

    await registry.guaranteed_update(rt, namespace, name, mutate, field_manager="kube-scheduler")
    return await set_scheduled_condition(registry, namespace, name, "True")


async def set_scheduled_condition(
    registry: Any, namespace: str, name: str, status: str, *, reason: str = "", message: str = ""
) -> Obj:
    """Set PodScheduled (keeping lastTransitionTime when the status is unchanged)."""
    rt = registry.catalog.get("", "v1", "pods")

    def mutate(pod: Obj) -> Obj | None:
        st = pod.setdefault("status", {})
        conds = st.setdefault("conditions", [])
        old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        new: Obj = {"type": "PodScheduled", "status": status, "lastProbeTime": None}
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        new["lastTransitionTime"] = (
            old.get("lastTransitionTime") if old and old.get("status") == status else meta.now()
        )
        if old is not None and old == new:
            return None
        st["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [new]
        return pod

    out = await registry.guaranteed_update(
        rt, namespace, name, mutate, subresource="status", field_manager="kube-scheduler"
    )
    assert out is not None
    return dict(out)
