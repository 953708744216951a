"""The admission chain: called once per write by the Registry, mutate before validate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from microkube import errors
from microkube.admission.attributes import Attributes
from microkube.resources.registry import DeleteOptions, Registry, WriteOptions
from tests.support.registry import open_registry

pytestmark = pytest.mark.anyio


class Recorder:
    """A plugin that records what it saw, labels on mutate and rejects on a label."""

    name = "Recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Attributes]] = []

    def handles(self, attrs: Attributes) -> bool:
        return attrs.resource.resource == "configmaps"

    async def mutate(self, attrs: Attributes) -> None:
        self.seen.append(("mutate", attrs.operation, attrs))
        if attrs.object is not None:
            attrs.object.setdefault("metadata", {}).setdefault("labels", {})["mutated"] = "yes"

    async def validate(self, attrs: Attributes) -> None:
        self.seen.append(("validate", attrs.operation, attrs))
        obj = attrs.object or {}
        assert (obj.get("metadata") or {}).get("labels", {}).get("mutated", "yes") == "yes"
        if ((obj.get("metadata") or {}).get("labels") or {}).get("deny"):
            raise errors.Forbidden("denied by recorder")
        attrs.warnings.append("recorder saw it")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, bootstrap=True) as reg:
        yield reg


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


async def test_phases_order_and_attributes(registry: Registry) -> None:
    rec = Recorder()
    registry.admission.add(rec)
    rt = registry.catalog.get("", "v1", "configmaps")
    user = {"username": "alice", "groups": ["devs"]}
    opts = WriteOptions(user=user, field_manager="kubectl")  # type: ignore[arg-type]
    out = await registry.create(rt, "default", cm("a"), opts)
    assert out["metadata"]["labels"]["mutated"] == "yes"
    assert [(p, op) for p, op, _ in rec.seen] == [("mutate", "CREATE"), ("validate", "CREATE")]
    attrs = rec.seen[0][2]
    assert (attrs.namespace, attrs.name, attrs.kind.kind, attrs.resource.version) == (
        "default",
        "a",
        "ConfigMap",
        "v1",
    )
    assert attrs.user_info["username"] == "alice"
    assert attrs.options == {
        "kind": "CreateOptions",
        "apiVersion": "meta.k8s.io/v1",
        "fieldManager": "kubectl",
        "fieldValidation": "Ignore",
    }
    assert opts.warnings == ["recorder saw it"]

    rec.seen.clear()
    out["data"] = {"k": "v"}
    await registry.update(rt, "default", "a", out, WriteOptions())
    assert [(p, op) for p, op, _ in rec.seen] == [("mutate", "UPDATE"), ("validate", "UPDATE")]
    assert rec.seen[0][2].old_object is not None
    assert rec.seen[0][2].user_info["username"] == "system:apiserver"

    rec.seen.clear()
    await registry.patch(rt, "default", "a", "merge", {"data": {"k": "w"}}, WriteOptions())
    assert [op for _, op, _ in rec.seen] == ["UPDATE", "UPDATE"]

    rec.seen.clear()
    await registry.delete(rt, "default", "a", DeleteOptions())
    assert [(p, op) for p, op, _ in rec.seen] == [("mutate", "DELETE"), ("validate", "DELETE")]
    assert rec.seen[1][2].object is None
    assert rec.seen[1][2].old_object["metadata"]["name"] == "a"


async def test_rejection_leaves_nothing_behind(registry: Registry) -> None:
    registry.admission.add(Recorder())
    rt = registry.catalog.get("", "v1", "configmaps")
    with pytest.raises(errors.Forbidden):
        await registry.create(rt, "default", cm("b", deny="1"))
    assert registry.try_get(rt, "default", "b") is None
    await registry.create(rt, "default", cm("b"))
    with pytest.raises(errors.Forbidden):
        await registry.patch(rt, "default", "b", "merge", {"metadata": {"labels": {"deny": "1"}}})
    assert "deny" not in registry.get(rt, "default", "b")["metadata"]["labels"]


async def test_dry_run_reaches_plugins_and_other_kinds_are_untouched(registry: Registry) -> None:
    rec = Recorder()
    registry.admission.add(rec)
    rt = registry.catalog.get("", "v1", "configmaps")
    await registry.create(rt, "default", cm("c"), WriteOptions(dry_run=True))
    assert rec.seen[0][2].dry_run is True
    assert registry.try_get(rt, "default", "c") is None
    rec.seen.clear()
    sec = registry.catalog.get("", "v1", "secrets")
    await registry.create(sec, "default", {"metadata": {"name": "s"}})
    assert rec.seen == []


def test_duplicate_plugin_names_are_refused() -> None:
    from microkube.admission.chain import Chain

    chain = Chain([Recorder()])
    with pytest.raises(ValueError):
        chain.add(Recorder())
