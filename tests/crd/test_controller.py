"""The CRD controller over a real Store + Registry: install, validate, status, delete."""

from __future__ import annotations

import copy

import pytest

from microkube import errors
from microkube.controllers import crd
from microkube.resources.registry import Registry, WriteOptions
from tests.crd.conftest import crontab_crd

pytestmark = pytest.mark.anyio


async def create_crd(reg: Registry, obj: dict | None = None) -> dict:
    rt = crd.crd_type(reg)
    created = await reg.create(rt, "", obj or crontab_crd())
    await crd.sync(reg, created)
    return reg.get(rt, "", created["metadata"]["name"])


def crontab(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": name},
        "spec": spec,
    }


async def test_crd_is_established_and_served_in_every_version(registry: Registry) -> None:
    obj = await create_crd(registry)
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds["Established"]["status"] == "True"
    assert conds["Established"]["reason"] == "InitialNamesAccepted"
    assert conds["NamesAccepted"]["status"] == "True"
    assert obj["status"]["acceptedNames"]["kind"] == "CronTab"
    assert obj["status"]["acceptedNames"]["listKind"] == "CronTabList"
    assert obj["status"]["storedVersions"] == ["v1"]
    assert crd.apiextensions.CLEANUP_FINALIZER in obj["metadata"]["finalizers"]
    v1 = registry.catalog.get("stable.example.com", "v1", "crontabs")
    beta = registry.catalog.get("stable.example.com", "v1beta1", "crontabs")
    assert v1 is not None and beta is not None
    assert v1.namespaced and v1.short_names == ("ct",) and v1.subresources == ("status",)
    assert (
        registry.services["printer-columns"][("stable.example.com", "CronTab")][0]["name"] == "Spec"
    )
    assert "stable.example.com/v1/CronTab" in registry.crd_openapi
    assert "com.example.stable.v1.CronTab" in registry.crd_openapi
    # Storage is shared: an object written as v1 reads as v1beta1 (conversion None).
    await registry.create(v1, "default", crontab("a", cronSpec="* * * * *"))
    seen = registry.get(beta, "default", "a")
    assert seen["apiVersion"] == "stable.example.com/v1beta1"
    assert seen["spec"] == {"cronSpec": "* * * * *", "replicas": 1}


async def test_custom_objects_are_defaulted_pruned_and_validated(registry: Registry) -> None:
    await create_crd(registry)
    rt = registry.catalog.get("stable.example.com", "v1", "crontabs")
    assert rt is not None
    out = await registry.create(rt, "default", crontab("a", cronSpec="* * * * *", bogus=1))
    assert out["spec"] == {"cronSpec": "* * * * *", "replicas": 1}
    assert out["metadata"]["generation"] == 1
    with pytest.raises(errors.Invalid) as info:
        await registry.create(rt, "default", crontab("b", replicas="x", mode="z"))
    exc = info.value
    assert exc.message.startswith('CronTab.stable.example.com "b" is invalid: [')
    assert {c.field for c in exc.causes} == {"spec.replicas", "spec.mode", "spec.cronSpec"}
    assert exc.status()["details"] == {
        "name": "b",
        "group": "stable.example.com",
        "kind": "CronTab",
        "causes": [c.to_dict() for c in exc.causes],
    }
    # Strict field validation names pruned fields.
    with pytest.raises(errors.BadRequest, match='unknown field "spec.bogus"'):
        await registry.create(
            rt,
            "default",
            crontab("c", cronSpec="* * * * *", bogus=1),
            WriteOptions(field_validation="Strict"),
        )


async def test_status_subresource_and_generation(registry: Registry) -> None:
    await create_crd(registry)
    rt = registry.catalog.get("stable.example.com", "v1", "crontabs")
    assert rt is not None
    obj = crontab("a", cronSpec="* * * * *")
    obj["status"] = {"phase": "ignored"}
    out = await registry.create(rt, "default", obj)
    assert "status" not in out
    out["status"] = {"phase": "Running", "junk": 1}
    st, _ = await registry.update(
        rt, "default", "a", copy.deepcopy(out), WriteOptions(subresource="status")
    )
    assert st["status"] == {"phase": "Running"}
    assert st["metadata"]["generation"] == 1
    st["spec"]["replicas"] = 2
    st["status"] = {"phase": "Changed"}
    up, _ = await registry.update(rt, "default", "a", st)
    assert up["status"] == {"phase": "Running"}
    assert up["metadata"]["generation"] == 2
    patched, _ = await registry.patch(rt, "default", "a", "merge", {"spec": {"image": "nginx"}})
    assert patched["spec"]["image"] == "nginx" and patched["metadata"]["generation"] == 3
    with pytest.raises(errors.UnsupportedMediaType):
        await registry.patch(rt, "default", "a", "strategic", {"spec": {"image": "x"}})


async def test_non_structural_crd_is_rejected(registry: Registry) -> None:
    bad = crontab_crd(schema={"type": "object", "properties": {"spec": {"properties": {}}}})
    with pytest.raises(errors.Invalid) as info:
        await registry.create(crd.crd_type(registry), "", bad)
    fields = {c.field: c.message for c in info.value.causes}
    assert fields["spec.versions[0].schema.openAPIV3Schema.properties[spec].type"] == (
        "Required value: must not be empty for specified object fields"
    )
    wrong = crontab_crd()
    wrong["metadata"]["name"] = "wrong.example.com"
    wrong["spec"]["versions"][1]["storage"] = True
    with pytest.raises(errors.Invalid) as info:
        await registry.create(crd.crd_type(registry), "", wrong)
    fields = {c.field: c.message for c in info.value.causes}
    assert (
        fields["metadata.name"]
        == 'Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group'
    )
    assert "must have exactly one version marked as storage version" in fields["spec.versions"]


async def test_conflicting_names_are_not_accepted(registry: Registry) -> None:
    other = crontab_crd()
    other["metadata"]["name"] = "pods.stable.example.com"
    other["spec"]["group"] = "stable.example.com"
    other["spec"]["names"] = {"plural": "pods", "kind": "CronTab"}
    await create_crd(registry)
    obj = await create_crd(registry, other)
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds["NamesAccepted"]["status"] == "False"
    assert conds["NamesAccepted"]["reason"] == "KindConflict"
    assert conds["Established"]["status"] == "False"
    assert registry.catalog.get("stable.example.com", "v1", "pods") is None


async def test_deleting_a_crd_deletes_its_objects_then_unregisters(registry: Registry) -> None:
    await create_crd(registry)
    rt = registry.catalog.get("stable.example.com", "v1", "crontabs")
    assert rt is not None
    for name in ("a", "b"):
        await registry.create(rt, "default", crontab(name, cronSpec="* * * * *"))
    crt = crd.crd_type(registry)
    deleting, now = await registry.delete(crt, "", "crontabs.stable.example.com")
    assert not now and deleting["metadata"]["deletionTimestamp"]
    await crd.finalize(registry, deleting, poll=0.01)
    assert registry.try_get(crt, "", "crontabs.stable.example.com") is None
    assert registry.catalog.get("stable.example.com", "v1", "crontabs") is None
    assert registry.store.list(rt.prefix())[1] == []


async def test_restore_installs_stored_crds(registry: Registry) -> None:
    await registry.create(crd.crd_type(registry), "", crontab_crd())
    assert registry.catalog.get("stable.example.com", "v1", "crontabs") is None
    crd.restore(registry)
    assert registry.catalog.get("stable.example.com", "v1", "crontabs") is not None
