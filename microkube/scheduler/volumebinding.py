"""The scheduler's VolumeBinding plugin, reduced to one node's worth.

Mirrors kube-scheduler's ``volumebinding`` plugin:

* PreFilter: every claim the pod names must exist and not be deleting, and a
  claim that is not bound yet must have a ``WaitForFirstConsumer`` class
  (otherwise the PV controller binds it on its own and the pod waits:
  ``pod has unbound immediate PersistentVolumeClaims``).  A failure here is
  the same for every node, so it is the whole FitError message.
* Filter: an unbound ``WaitForFirstConsumer`` claim whose class has no
  provisioner (``kubernetes.io/no-provisioner``, static local volumes) needs
  an Available volume that fits.
* PreBind: unbound ``WaitForFirstConsumer`` claims get the
  ``volume.kubernetes.io/selected-node`` annotation, which is what the
  provisioner waits for; the pod is bound only once all its claims are bound
  (the scheduler tries again when a claim changes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microkube.controllers import storage

Obj = dict[str, Any]
SELECTED_NODE = storage.SELECTED_NODE
NO_PROVISIONER = "kubernetes.io/no-provisioner"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_VOLUMES = "node(s) didn't find available persistent volumes to bind"


def claim_names(pod: Obj) -> list[str]:
    return [
        str(v["persistentVolumeClaim"].get("claimName") or "")
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v.get("persistentVolumeClaim"), dict)
    ]


def _bound(pvc: Obj) -> bool:
    return bool((pvc.get("spec") or {}).get("volumeName"))


def prefilter(
    pod: Obj, get_claim: Callable[[str], Obj | None], get_class: Callable[[str], Obj | None]
) -> tuple[str, list[Obj]]:
    """``(failure message or "", unbound WaitForFirstConsumer claims)``."""
    delayed = []
    for name in claim_names(pod):
        pvc = get_claim(name)
        if pvc is None:
            return f'persistentvolumeclaim "{name}" not found', []
        if pvc["metadata"].get("deletionTimestamp"):
            return f'persistentvolumeclaim "{name}" is being deleted', []
        if _bound(pvc):
            continue
        cls = get_class(str((pvc.get("spec") or {}).get("storageClassName") or ""))
        if cls is None or cls.get("volumeBindingMode") != "WaitForFirstConsumer":
            return UNBOUND_IMMEDIATE, []
        delayed.append(pvc)
    return "", delayed


def filter_claims(
    delayed: list[Obj], get_class: Callable[[str], Obj | None], volumes: list[Obj]
) -> list[str]:
    """Node reasons for the unbound delayed claims (empty when they can all be satisfied)."""
    taken: set[str] = set()
    for pvc in delayed:
        cls = get_class(str((pvc.get("spec") or {}).get("storageClassName") or "")) or {}
        fit = next(
            (pv for pv in volumes if pv["metadata"]["name"] not in taken and storage.fits(pv, pvc)),
            None,
        )
        if fit is not None:
            taken.add(fit["metadata"]["name"])
        elif cls.get("provisioner") in (NO_PROVISIONER, None, ""):
            return [NO_VOLUMES]
    return []
