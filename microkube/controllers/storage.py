"""Persistent volumes on one host: the default StorageClass and a hostPath provisioner.

Mirrors MicroK8s' ``hostpath-storage`` addon plus the parts of the PV
controller a single node needs::

    PVC (no class)        ─► spec.storageClassName = the default class (retroactive default)
    PVC Pending, our class
      Immediate           ─► provision now
      WaitForFirstConsumer─► provision once a pod uses the claim
    provision             ─► mkdir <state_dir>/volumes/pvc-<uid>
                             PV (hostPath, claimRef, reclaimPolicy of the class) ─► Bound
                             PVC spec.volumeName + status Bound (capacity, accessModes)
    PVC with a class and an Available static PV that fits ─► bind it
    PVC gone              ─► PV Released; reclaimPolicy Delete: directory and PV removed

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
from microkube.objects import meta
from microkube.resources.registry import Registry
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_CLASS = "microkube-hostpath"
PROVISIONER = "microkube.io/hostpath"
IS_DEFAULT = "storageclass.kubernetes.io/is-default-class"
_MANAGER = "persistentvolume-controller"


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


def _consumed(pvc: Obj, pods: list[Obj]) -> bool:
    ns, name = pvc["metadata"].get("namespace"), pvc["metadata"]["name"]
    for pod in pods:
        if pod["metadata"].get("namespace") != ns or meta.is_deleting(pod):
            continue
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if (vol.get("persistentVolumeClaim") or {}).get("claimName") == name:
                return True
    return False


def _fits(pv: Obj, pvc: Obj) -> bool:
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
            if meta.is_deleting(pvc) or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            spec = pvc.get("spec") or {}
            if "storageClassName" not in spec or spec.get("storageClassName") is None:
                if default is not None:
                    await self._set_class(pvc, default)
                continue
            cls = classes.get(spec.get("storageClassName") or "")
            match = next((pv for pv in pvs if _fits(pv, pvc)), None)
            if spec.get("volumeName"):
                match = next(
                    (pv for pv in pvs if pv["metadata"]["name"] == spec["volumeName"]), None
                )
            if match is not None:
                await self._bind(pvc, match)
            elif cls is not None and cls.get("provisioner") == PROVISIONER:
                if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not _consumed(
                    pvc, pods
                ):
                    continue
                pv = await self._provision(pvc, cls)
                await self._bind(pvc, pv)
        live = {
            (c["metadata"].get("namespace"), c["metadata"]["name"], c["metadata"]["uid"])
            for c in claims
        }
        for pv in self.reg.list(self.pvs).items:
            ref = (pv.get("spec") or {}).get("claimRef")
            if not ref or meta.is_deleting(pv):
                continue
            if (ref.get("namespace"), ref.get("name"), ref.get("uid")) not in live:
                await self._release(pv)

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
                async for _ in reg.watch(rt, None, resource_version=str(reg.store.revision)):
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
