"""Default StorageClass and hostPath provisioning over a real Store + Registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from microkube.controllers import storage
from microkube.resources.registry import DeleteOptions, Registry

pytestmark = pytest.mark.anyio


def rt(reg: Registry, plural: str, group: str = ""):  # noqa: ANN201
    found = reg.catalog.get(group, "v1", plural)
    assert found is not None
    return found


def _isdir(path: Path) -> bool:
    return path.is_dir()


def claim(name: str, **spec: object) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            **spec,
        },
    }


def pod(name: str, claim_name: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node1",
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


async def test_default_class_wait_for_first_consumer_then_bound(
    registry: Registry, tmp_path: Path
) -> None:
    await storage.ensure_default_class(registry)
    await storage.ensure_default_class(registry)
    classes = registry.list(rt(registry, "storageclasses", "storage.k8s.io")).items
    assert [c["metadata"]["name"] for c in classes] == [storage.DEFAULT_CLASS]
    assert classes[0]["volumeBindingMode"] == "WaitForFirstConsumer"
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvcs = rt(registry, "persistentvolumeclaims")
    await registry.create(pvcs, "default", claim("data"))
    await ctrl.sync()
    got = registry.get(pvcs, "default", "data")
    assert got["spec"]["storageClassName"] == storage.DEFAULT_CLASS
    await ctrl.sync()
    assert registry.get(pvcs, "default", "data")["status"]["phase"] == "Pending"
    assert registry.list(rt(registry, "persistentvolumes")).items == []
    await registry.create(rt(registry, "pods"), "default", pod("p", "data"))
    await ctrl.sync()
    got = registry.get(pvcs, "default", "data")
    assert got["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "1Gi"},
    }
    pv = registry.get(rt(registry, "persistentvolumes"), "", got["spec"]["volumeName"])
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["claimRef"]["uid"] == got["metadata"]["uid"]
    path = Path(pv["spec"]["hostPath"]["path"])
    assert _isdir(path) and path.parent == tmp_path / "volumes"
    # Deleting the claim (once no pod uses it) deletes the volume and its
    # directory (reclaimPolicy Delete).
    await registry.delete(
        rt(registry, "pods"), "default", "p", DeleteOptions(grace_period_seconds=0)
    )
    await registry.delete(pvcs, "default", "data")
    await ctrl.sync()
    assert registry.list(rt(registry, "persistentvolumes")).items == []
    assert not _isdir(path)


async def test_static_volume_is_bound_and_retained(registry: Registry, tmp_path: Path) -> None:
    ctrl = storage.StorageController(registry, tmp_path / "volumes")
    pvs = rt(registry, "persistentvolumes")
    await registry.create(
        pvs,
        "",
        {
            "metadata": {"name": "static"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                "storageClassName": "manual",
                "hostPath": {"path": str(tmp_path / "static")},
            },
        },
    )
    pvcs = rt(registry, "persistentvolumeclaims")
    await registry.create(
        pvcs,
        "default",
        claim("big", storageClassName="manual", resources={"requests": {"storage": "10Gi"}}),
    )
    await registry.create(pvcs, "default", claim("small", storageClassName="manual"))
    await ctrl.sync()
    assert registry.get(pvcs, "default", "big")["status"]["phase"] == "Pending"
    small = registry.get(pvcs, "default", "small")
    assert small["spec"]["volumeName"] == "static" and small["status"]["capacity"] == {
        "storage": "5Gi"
    }
    await registry.delete(pvcs, "default", "small")
    await ctrl.sync()
    assert registry.get(pvs, "", "static")["status"]["phase"] == "Released"
