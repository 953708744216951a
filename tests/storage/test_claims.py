"""Claims in use: protection finalizers, WaitForFirstConsumer through the scheduler,
pending-claim events and the kubelet's claim volumes (real Store + Registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microkube.controllers import storage
from microkube.kubelet.node import NodeAgent
from microkube.kubelet.volumes import VolumeError, VolumeManager
from microkube.resources.registry import DeleteOptions, Registry
from microkube.scheduler.scheduler import Scheduler

pytestmark = pytest.mark.anyio
Obj = dict[str, Any]


def rt(reg: Registry, plural: str, group: str = ""):  # noqa: ANN201
    found = reg.catalog.get(group, "v1", plural)
    assert found is not None
    return found


def claim(name: str, **spec: object) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            **spec,
        },
    }


def pod(name: str, claim_name: str, *, node: str = "", read_only: bool = False) -> Obj:
    src: Obj = {"claimName": claim_name}
    if read_only:
        src["readOnly"] = True
    spec: Obj = {
        "containers": [
            {"name": "c", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}
        ],
        "volumes": [{"name": "d", "persistentVolumeClaim": src}],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _exists(path: Path) -> bool:
    return path.exists()


def events(reg: Registry, name: str) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e["message"])
        for e in reg.list(rt(reg, "events"), "default").items
        if e["involvedObject"]["name"] == name
    ]


async def test_protection_finalizers_wait_for_the_last_pod(
    registry: Registry, tmp_path: Path
) -> None:
    await storage.ensure_default_class(registry)
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs, pods, pvs = (
        rt(registry, "persistentvolumeclaims"),
        rt(registry, "pods"),
        rt(registry, "persistentvolumes"),
    )
    created = await registry.create(pvcs, "default", claim("data"))
    assert created["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    await registry.create(pods, "default", pod("user", "data", node="node1"))
    await ctrl.sync()
    await ctrl.sync()
    bound = registry.get(pvcs, "default", "data")
    assert bound["status"]["phase"] == "Bound"
    pv = registry.get(pvs, "", bound["spec"]["volumeName"])
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    # Deleting the claim while the pod runs: it stays, Terminating.
    await registry.delete(pvcs, "default", "data")
    await ctrl.sync()
    dying = registry.get(pvcs, "default", "data")
    assert dying["metadata"]["deletionTimestamp"]
    assert registry.get(pvs, "", pv["metadata"]["name"])["status"]["phase"] == "Bound"
    # A finished pod no longer holds it; the volume goes with the claim (Delete).
    await registry.delete(pods, "default", "user", DeleteOptions(grace_period_seconds=0))
    await ctrl.sync()
    assert registry.try_get(pvcs, "default", "data") is None
    await ctrl.sync()
    assert registry.try_get(pvs, "", pv["metadata"]["name"]) is None
    assert not _exists(Path(pv["spec"]["hostPath"]["path"]))


async def test_deleted_retained_volume_waits_for_its_claim(
    registry: Registry, tmp_path: Path
) -> None:
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs, pvs = rt(registry, "persistentvolumeclaims"), rt(registry, "persistentvolumes")
    await registry.create(
        pvs,
        "",
        {
            "metadata": {"name": "static"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "hostPath": {"path": str(tmp_path / "static")},
            },
        },
    )
    await registry.create(pvcs, "default", claim("c", storageClassName="manual"))
    await ctrl.sync()
    await registry.delete(pvs, "", "static")
    await ctrl.sync()
    assert registry.get(pvs, "", "static")["metadata"]["deletionTimestamp"]
    await registry.delete(pvcs, "default", "c")
    await ctrl.sync()
    await ctrl.sync()
    assert registry.try_get(pvs, "", "static") is None


async def test_pending_claims_say_why(registry: Registry, tmp_path: Path) -> None:
    await storage.ensure_default_class(registry)
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs = rt(registry, "persistentvolumeclaims")
    await registry.create(pvcs, "default", claim("noclass", storageClassName=""))
    await registry.create(pvcs, "default", claim("missing", storageClassName="gold"))
    await registry.create(pvcs, "default", claim("later"))
    await registry.create(
        rt(registry, "storageclasses", "storage.k8s.io"),
        "",
        {"metadata": {"name": "ext"}, "provisioner": "example.com/csi"},
    )
    await registry.create(pvcs, "default", claim("external", storageClassName="ext"))
    for _ in range(3):
        await ctrl.sync()
    assert events(registry, "noclass") == [
        (
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )
    ]
    assert events(registry, "missing") == [
        ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "gold" not found')
    ]
    assert events(registry, "later") == [
        (
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        )
    ]
    [(kind, reason, msg)] = events(registry, "external")
    assert (kind, reason) == ("Normal", "ExternalProvisioning")
    assert "external provisioner 'example.com/csi'" in msg
    for name in ("noclass", "missing", "later", "external"):
        assert registry.get(pvcs, "default", name)["status"]["phase"] == "Pending"


async def test_scheduler_waits_for_claims_then_binds(registry: Registry, tmp_path: Path) -> None:
    await NodeAgent(registry, "node1", state_dir=tmp_path, ip="192.0.2.10").register()
    await storage.ensure_default_class(registry)
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs, pods = rt(registry, "persistentvolumeclaims"), rt(registry, "pods")
    sched = Scheduler(registry)
    # A missing claim: unschedulable, with the VolumeBinding PreFilter message.
    await registry.create(pods, "default", pod("orphan", "nope"))
    sched.prime()
    assert await sched.schedule_pending() == 0
    [cond] = registry.get(pods, "default", "orphan")["status"]["conditions"]
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == '0/1 nodes are available: persistentvolumeclaim "nope" not found.'
    # WaitForFirstConsumer: the scheduler selects the node, the provisioner
    # binds, then the pod is bound.
    await registry.create(pvcs, "default", claim("data"))
    await ctrl.sync()  # the default class is filled in
    await registry.create(pods, "default", pod("user", "data"))
    sched.prime()
    assert await sched.schedule_pending() == 0
    pvc = registry.get(pvcs, "default", "data")
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "node1"
    assert not registry.get(pods, "default", "user")["spec"].get("nodeName")
    await ctrl.sync()
    assert registry.get(pvcs, "default", "data")["status"]["phase"] == "Bound"
    sched.prime()
    assert await sched.schedule_pending() == 1
    assert registry.get(pods, "default", "user")["spec"]["nodeName"] == "node1"
    # An unbound claim of an Immediate class that nothing provisions.
    await registry.create(
        rt(registry, "storageclasses", "storage.k8s.io"),
        "",
        {"metadata": {"name": "ext"}, "provisioner": "example.com/csi"},
    )
    await registry.create(pvcs, "default", claim("ext", storageClassName="ext"))
    await registry.create(pods, "default", pod("waits", "ext"))
    sched.prime()
    assert await sched.schedule_pending() == 0
    cond = registry.get(pods, "default", "waits")["status"]["conditions"][0]
    assert cond["message"] == (
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    )


def claim_mounts(mounts: list[Any]) -> list[Any]:
    """The mounts other than the service-account token admission adds to every pod."""
    return [
        m for m in mounts if m.container_path != "/var/run/secrets/kubernetes.io/serviceaccount"
    ]


async def test_kubelet_mounts_the_bound_volume(registry: Registry, tmp_path: Path) -> None:
    await storage.ensure_default_class(registry)
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs, pods = rt(registry, "persistentvolumeclaims"), rt(registry, "pods")
    vm = VolumeManager(registry, tmp_path / "pods")
    await registry.create(pvcs, "default", claim("data"))
    waiting = await registry.create(pods, "default", pod("early", "data", node="node1"))
    await ctrl.sync()
    # Not yet bound on the first sync (the class was just filled in).
    with pytest.raises(VolumeError, match='persistentvolumeclaim "data" is not bound'):
        vm.setup(waiting)
    await ctrl.sync()
    pvc = registry.get(pvcs, "default", "data")
    host = Path(
        registry.get(rt(registry, "persistentvolumes"), "", pvc["spec"]["volumeName"])["spec"][
            "hostPath"
        ]["path"]
    )
    paths = vm.setup(waiting)
    assert paths["d"] == host
    [mount] = claim_mounts(vm.mounts(waiting, waiting["spec"]["containers"][0], paths))
    assert (mount.host_path, mount.container_path, mount.read_only) == (str(host), "/d", False)
    ro = await registry.create(pods, "default", pod("reader", "data", node="node1", read_only=True))
    [mount] = claim_mounts(vm.mounts(ro, ro["spec"]["containers"][0], vm.setup(ro)))
    assert mount.read_only
    # A claim being deleted does not start new pods, but running ones keep it.
    await registry.delete(pvcs, "default", "data")
    late = await registry.create(pods, "default", pod("late", "data", node="node1"))
    with pytest.raises(VolumeError, match="is being deleted"):
        vm.setup(late)
    assert vm.setup(waiting)["d"] == host
    with pytest.raises(VolumeError, match='persistentvolumeclaim "gone" not found'):
        vm.setup(await registry.create(pods, "default", pod("x", "gone", node="node1")))
