"""Persistent volumes on one host: the default StorageClass and a hostPath provisioner.

Mirrors MicroK8s' ``hostpath-storage`` addon plus the parts of the PV
controller a single node needs::

    PVC (no class)        ─► spec.storageClassName = the default class (retroactive default)
    PVC Pending, our class
      Immediate           ─► provision now
      WaitForFirstConsumer─► provision once the scheduler picked a node for a
                             pod using it (annotation volume.kubernetes.io/
                             selected-node) or a pod using it is bound to a node
    provision             ─► mkdir <state_dir>/volumes/pvc-<uid>
                             PV (hostPath, claimRef, reclaimPolicy of the class) ─► Bound
                             PVC spec.volumeName + status Bound (capacity, accessModes)
    PVC with a class and an Available static PV that fits ─► bind it
    PVC gone              ─► PV Released; reclaimPolicy Delete: directory and PV removed
    PVC deleting, no scheduled running pod uses it ─► drop kubernetes.io/pvc-protection
    PV deleting, not bound to a live claim         ─► drop kubernetes.io/pv-protection

A claim that stays Pending gets an event saying why (``WaitForFirstConsumer``,
``ProvisioningFailed``, ``FailedBinding``, ``ExternalProvisioning``), once per
change of reason, as the PV controller's ``Eventf`` calls.

:func:`sync` is level-triggered and idempotent: it looks at every claim and
volume, so :func:`run` simply calls it after any change to claims, volumes or
pods (and once a second, as a resync).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from microkube import errors
from microkube.controllers import events
from microkube.objects import meta
from microkube.resources.registry import Registry
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_CLASS = "microkube-hostpath"
PROVISIONER = "microkube.io/hostpath"
IS_DEFAULT = "storageclass.kubernetes.io/is-default-class"
_MANAGER = "persistentvolume-controller"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"


def _rt(reg: Registry, group: str, plural: str) -> ResourceType:
    rt = reg.catalog.get(group, "v1", plural)
    assert rt is not None
    return rt


async def ensure_default_class(reg: Registry) -> None:
    """Create the default StorageClass when no class is marked default."""
    rt = _rt(reg, "storage.k8s.io", "storageclasses")
    for sc in reg.list(rt).items:
        if (sc["metadata"].get("annotations") or {}).get(IS_DEFAULT) == "true":
            return
    try:
        await reg.create(
            rt,
            "",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": DEFAULT_CLASS, "annotations": {IS_DEFAULT: "true"}},
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            },
        )
    except errors.AlreadyExists:
        pass


def _quantity(q: Any) -> float:
    """A storage quantity in bytes (enough of resource.Quantity for comparisons)."""
    s = str(q or "0").strip()
    units = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    }  # fmt: skip
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    try:
        return float(s)
    except ValueError:
        return 0.0


def _requested(pvc: Obj) -> str:
    return str(
        ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "1Gi")
    )


def _phase(pv: Obj) -> str:
    return str((pv.get("status") or {}).get("phase", ""))


def users(pvc: Obj, pods: list[Obj]) -> list[Obj]:
    """Pods that use the claim: bound to a node and not finished (pvc-protection's rule)."""
    ns, name = pvc["metadata"].get("namespace"), pvc["metadata"]["name"]
    out = []
    for pod in pods:
        if pod["metadata"].get("namespace") != ns or not (pod.get("spec") or {}).get("nodeName"):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if (vol.get("persistentVolumeClaim") or {}).get("claimName") == name:
                out.append(pod)
                break
    return out


def _claims_of(pod: Obj) -> bool:
    return any("persistentVolumeClaim" in v for v in (pod.get("spec") or {}).get("volumes") or [])


def _consumed(pvc: Obj, pods: list[Obj]) -> bool:
    """WaitForFirstConsumer: a node was selected for a pod using the claim."""
    if (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE):
        return True
    return any(not meta.is_deleting(p) for p in users(pvc, pods))


def fits(pv: Obj, pvc: Obj) -> bool:
    spec, want = pv.get("spec") or {}, pvc.get("spec") or {}
    phase = (pv.get("status") or {}).get("phase", "Available")
    if phase not in ("Available", "Pending") or spec.get("claimRef"):
        return False
    if spec.get("storageClassName", "") != want.get("storageClassName", ""):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    return _quantity((spec.get("capacity") or {}).get("storage")) >= _quantity(_requested(pvc))


class StorageController:
    """Reconciles claims and volumes; ``volumes_dir`` holds the provisioned directories."""

    def __init__(self, reg: Registry, volumes_dir: Path) -> None:
        self.reg = reg
        self.volumes_dir = volumes_dir
        self.pvcs = _rt(reg, "", "persistentvolumeclaims")
        self.pvs = _rt(reg, "", "persistentvolumes")
        self.pods = _rt(reg, "", "pods")
        self.classes = _rt(reg, "storage.k8s.io", "storageclasses")
        self.recorder = events.EventRecorder.for_registry(reg, _MANAGER)
        self._pending_reason: dict[str, str] = {}  # claim uid -> last event reason

    async def sync(self) -> None:
        classes = {c["metadata"]["name"]: c for c in self.reg.list(self.classes).items}
        default = next(
            (
                n
                for n, c in sorted(classes.items())
                if (c["metadata"].get("annotations") or {}).get(IS_DEFAULT) == "true"
            ),
            None,
        )
        pods = self.reg.list(self.pods).items
        for pv in self.reg.list(self.pvs).items:
            if not (pv.get("spec") or {}).get("claimRef") and _phase(pv) == "Pending":
                await self._set_phase(pv["metadata"]["name"], "Available")
        pvs = self.reg.list(self.pvs).items
        claims = self.reg.list(self.pvcs).items
        for pvc in claims:
            if meta.is_deleting(pvc):
                if PVC_PROTECTION in meta.meta(pvc).get("finalizers", []) and not users(pvc, pods):
                    await self._drop_finalizer(self.pvcs, pvc, PVC_PROTECTION)
                continue
            if (pvc.get("status") or {}).get("phase") == "Bound":
                self._pending_reason.pop(pvc["metadata"]["uid"], None)
                continue
            spec = pvc.get("spec") or {}
            if "storageClassName" not in spec or spec.get("storageClassName") is None:
                if default is not None:
                    await self._set_class(pvc, default)
                continue
            cls = classes.get(spec.get("storageClassName") or "")
            match = next((pv for pv in pvs if fits(pv, pvc)), None)
            if spec.get("volumeName"):
                match = next(
                    (pv for pv in pvs if pv["metadata"]["name"] == spec["volumeName"]), None
                )
            wait = (
                cls is not None
                and cls.get("volumeBindingMode") == "WaitForFirstConsumer"
                and not _consumed(pvc, pods)
            )
            if match is not None and not wait:
                await self._bind(pvc, match)
            elif wait:
                await self._pending(
                    pvc,
                    events.NORMAL,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
            elif cls is not None and cls.get("provisioner") == PROVISIONER:
                pv = await self._provision(pvc, cls)
                await self._bind(pvc, pv)
                await self.recorder.event(
                    pvc,
                    events.NORMAL,
                    "ProvisioningSucceeded",
                    f"Successfully provisioned volume {pv['metadata']['name']} using {PROVISIONER}",
                )
            else:
                await self._explain_pending(pvc, cls)
        live = {
            (c["metadata"].get("namespace"), c["metadata"]["name"], c["metadata"]["uid"])
            for c in self.reg.list(self.pvcs).items
        }
        for pv in self.reg.list(self.pvs).items:
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref or meta.is_deleting(pv):
                continue
            if (ref.get("namespace"), ref.get("name"), ref.get("uid")) not in live:
                await self._release(pv)
        for pv in self.reg.list(self.pvs).items:
            if not meta.is_deleting(pv) or PV_PROTECTION not in meta.meta(pv).get("finalizers", []):
                continue
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if (
                _phase(pv) != "Bound"
                or (ref.get("namespace"), ref.get("name"), ref.get("uid")) not in live
            ):
                await self._drop_finalizer(self.pvs, pv, PV_PROTECTION)

    async def _explain_pending(self, pvc: Obj, cls: Obj | None) -> None:
        """The event upstream's ``syncUnboundClaim`` records for a claim it cannot bind."""
        name = (pvc.get("spec") or {}).get("storageClassName") or ""
        if not name:
            reason = "FailedBinding"
            msg = "no persistent volumes available for this claim and no storage class is set"
            await self._pending(pvc, events.NORMAL, reason, msg)
        elif cls is None:
            msg = f'storageclass.storage.k8s.io "{name}" not found'
            await self._pending(pvc, events.WARNING, "ProvisioningFailed", msg)
        else:
            prov = cls.get("provisioner")
            msg = (
                f"Waiting for a volume to be created either by the external provisioner '{prov}' "
                "or manually by the system administrator. If volume creation is delayed, please "
                "verify that the provisioner is running and correctly registered."
            )
            await self._pending(pvc, events.NORMAL, "ExternalProvisioning", msg)

    async def _pending(self, pvc: Obj, type_: str, reason: str, message: str) -> None:
        uid = pvc["metadata"]["uid"]
        if self._pending_reason.get(uid) == reason:
            return
        self._pending_reason[uid] = reason
        await self.recorder.event(pvc, type_, reason, message)

    async def _drop_finalizer(self, rt: ResourceType, obj: Obj, name: str) -> None:
        def mutate(cur: Obj) -> Obj | None:
            fins = meta.meta(cur).get("finalizers") or []
            if name not in fins:
                return None
            cur["metadata"]["finalizers"] = [f for f in fins if f != name]
            return cur

        m = obj["metadata"]
        try:
            await self.reg.guaranteed_update(
                rt, m.get("namespace") or "", m["name"], mutate, field_manager=_MANAGER
            )
        except errors.NotFound:
            pass

    async def _set_class(self, pvc: Obj, name: str) -> None:
        def mutate(obj: Obj) -> Obj | None:
            if obj.get("spec", {}).get("storageClassName") is not None:
                return None
            obj.setdefault("spec", {})["storageClassName"] = name
            return obj

        m = pvc["metadata"]
        await self.reg.guaranteed_update(
            self.pvcs, m["namespace"], m["name"], mutate, field_manager=_MANAGER
        )

    async def _provision(self, pvc: Obj, cls: Obj) -> Obj:
        m = pvc["metadata"]
        name = f"pvc-{m['uid']}"
        existing = self.reg.try_get(self.pvs, "", name)
        if existing is not None:
            return existing
        path = self.volumes_dir / name
        path.mkdir(parents=True, exist_ok=True)
        spec = pvc.get("spec") or {}
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": _requested(pvc)},
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
                "storageClassName": cls["metadata"]["name"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": m["namespace"],
                    "name": m["name"],
                    "uid": m["uid"],
                },
            },
        }
        return await self.reg.create(self.pvs, "", pv)

    async def _bind(self, pvc: Obj, pv: Obj) -> None:
        m, pv_name = pvc["metadata"], pv["metadata"]["name"]

        def claim_pv(obj: Obj) -> Obj | None:
            ref = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": m["namespace"],
                "name": m["name"],
                "uid": m["uid"],
            }
            if (obj["spec"].get("claimRef") or {}).get("uid") == m["uid"]:
                return None
            obj["spec"]["claimRef"] = ref
            return obj

        await self.reg.guaranteed_update(self.pvs, "", pv_name, claim_pv, field_manager=_MANAGER)

        bound = await self._set_phase(pv_name, "Bound")
        assert bound is not None

        def claim_spec(obj: Obj) -> Obj | None:
            anns = obj["metadata"].setdefault("annotations", {})
            if obj["spec"].get("volumeName") == pv_name and anns.get(
                "pv.kubernetes.io/bind-completed"
            ):
                return None
            obj["spec"]["volumeName"] = pv_name
            anns["pv.kubernetes.io/bind-completed"] = "yes"
            anns["pv.kubernetes.io/bound-by-controller"] = "yes"
            return obj

        await self.reg.guaranteed_update(
            self.pvcs, m["namespace"], m["name"], claim_spec, field_manager=_MANAGER
        )

        def claim_status(obj: Obj) -> Obj | None:
            status = {
                "phase": "Bound",
                "accessModes": list(bound["spec"].get("accessModes") or []),
                "capacity": dict(bound["spec"].get("capacity") or {}),
            }
            if obj.get("status") == status:
                return None
            obj["status"] = status
            return obj

        await self.reg.guaranteed_update(
            self.pvcs,
            m["namespace"],
            m["name"],
            claim_status,
            subresource="status",
            field_manager=_MANAGER,
        )

    async def _release(self, pv: Obj) -> None:
        name = pv["metadata"]["name"]
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Retain")
        if policy == "Delete":
            path = Path(((pv.get("spec") or {}).get("hostPath") or {}).get("path", ""))
            if path.parent == self.volumes_dir and path.name == name:
                await asyncio.to_thread(shutil.rmtree, path, True)
            try:
                await self.reg.delete(self.pvs, "", name)
            except errors.NotFound:
                pass
            return

        await self._set_phase(name, "Released")

    async def _set_phase(self, name: str, phase: str) -> Obj | None:
        def mutate(obj: Obj) -> Obj | None:
            if _phase(obj) == phase:
                return None
            obj["status"] = {"phase": phase}
            return obj

        return await self.reg.guaranteed_update(
            self.pvs, "", name, mutate, subresource="status", field_manager=_MANAGER
        )


async def run(reg: Registry, state_dir: Path, *, resync: float = 1.0) -> None:
    """Reconcile after every change to claims, volumes or pods (the controller task)."""
    ctrl = StorageController(reg, state_dir / "volumes")
    await ensure_default_class(reg)
    changed = asyncio.Event()

    async def watch(rt: ResourceType) -> None:
        while True:
            try:
                async for _, obj in reg.watch(rt, None, resource_version=str(reg.store.revision)):
                    # A pod without claims changes no storage decision: ignoring those
                    # keeps a rollout of N pods from costing N full syncs.
                    if rt is not ctrl.pods or _claims_of(obj):
                        changed.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - e.g. 410 after compaction: watch again
                await asyncio.sleep(resync)

    watchers = [asyncio.create_task(watch(rt)) for rt in (ctrl.pvcs, ctrl.pvs, ctrl.pods)]
    try:
        while True:
            try:
                await ctrl.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retry at the next change or resync
                log.exception("storage controller sync failed")
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), resync)
            except TimeoutError:
                pass
    finally:
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
