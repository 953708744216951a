"""Strategic merge patch: golden kubectl patches and table-driven semantics."""

from __future__ import annotations

import copy
import gzip
import json
import pathlib
from typing import Any

import pytest
import yaml

from microkube import errors
from microkube.objects import strategicmerge
from microkube.objects.strategicmerge import SchemaResolver, strategic_merge_patch

DATA = pathlib.Path(__file__).parent.parent / "data" / "smp"
REAL_DEFINITIONS = (
    pathlib.Path(strategicmerge.__file__).parent.parent
    / "resources"
    / "data"
    / "definitions.json.gz"
)
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
SERVICE = "io.k8s.api.core.v1.Service"


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads((DATA / "definitions.json").read_text())


def _real_definitions() -> dict[str, Any] | None:
    if not REAL_DEFINITIONS.exists():
        return None
    return json.loads(gzip.decompress(REAL_DEFINITIONS.read_bytes()))


def _golden_cases() -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted(DATA.glob("*.yaml"))]


def _deployment(spec_patch: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "command": ["nginx", "-g", "daemon off;"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        },
                        {"name": "log", "image": "busybox"},
                    ],
                    "nodeSelector": {"disk": "ssd", "zone": "a"},
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
    }
    return obj


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _tpl(pod_spec_patch: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": pod_spec_patch}}}


# ------------------------------------------------------------------ golden


@pytest.mark.parametrize("path", _golden_cases())
def test_golden_kubectl_patches(path: pathlib.Path, definitions: dict[str, Any]) -> None:
    case = yaml.safe_load(path.read_text())
    schema = SchemaResolver(definitions, case["definition"])
    original = copy.deepcopy(case["original"])
    assert strategic_merge_patch(case["original"], case["patch"], schema) == case["expected"]
    assert case["original"] == original  # input untouched


@pytest.mark.parametrize("path", _golden_cases())
def test_golden_kubectl_patches_with_generated_definitions(path: pathlib.Path) -> None:
    real = _real_definitions()
    if real is None:
        pytest.skip("microkube/resources/data/definitions.json.gz not generated yet")
    case = yaml.safe_load(path.read_text())
    schema = SchemaResolver(real, case["definition"])
    assert strategic_merge_patch(case["original"], case["patch"], schema) == case["expected"]


# ------------------------------------------------------------------ semantics

CASES: list[tuple[str, dict[str, Any], Any]] = [
    (
        "null deletes a key, missing null is a no-op",
        {"metadata": {"labels": {"app": None, "absent": None, "tier": "fe"}}},
        lambda o: o["metadata"].__setitem__("labels", {"tier": "fe"}),
    ),
    (
        "nulls inside a brand-new map are discarded",
        {"spec": {"paused": {"x": None, "y": 1}}},
        lambda o: o["spec"].__setitem__("paused", {"y": 1}),
    ),
    (
        "maps merge recursively",
        _tpl({"nodeSelector": {"zone": "b", "gpu": "yes"}}),
        lambda o: _pod_spec(o).__setitem__(
            "nodeSelector", {"disk": "ssd", "zone": "b", "gpu": "yes"}
        ),
    ),
    (
        "$patch: replace on a map",
        _tpl({"nodeSelector": {"$patch": "replace", "gpu": "yes"}}),
        lambda o: _pod_spec(o).__setitem__("nodeSelector", {"gpu": "yes"}),
    ),
    (
        "$patch: delete on a map removes it",
        {"spec": {"strategy": {"$patch": "delete"}}},
        lambda o: o["spec"].pop("strategy"),
    ),
    (
        "$patch: merge on a map is a plain merge",
        {"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}},
        lambda o: o["spec"]["strategy"].__setitem__("type", "Recreate"),
    ),
    (
        "$patch: replace on a merge list",
        _tpl({"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}),
        lambda o: _pod_spec(o).__setitem__("containers", [{"name": "only", "image": "x"}]),
    ),
    (
        "atomic lists are replaced",
        _tpl({"tolerations": [{"key": "b", "operator": "Exists"}]}),
        lambda o: _pod_spec(o).__setitem__("tolerations", [{"key": "b", "operator": "Exists"}]),
    ),
    (
        "nested merge: env by name, ports by containerPort, scalar list atomic",
        _tpl(
            {
                "containers": [
                    {
                        "name": "web",
                        "command": ["sh"],
                        "env": [{"name": "B", "value": "3"}],
                        "ports": [{"containerPort": 80, "name": "http"}],
                    }
                ]
            }
        ),
        lambda o: _pod_spec(o)["containers"][0].update(
            command=["sh"],
            env=[{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
            ports=[{"containerPort": 80, "protocol": "TCP", "name": "http"}],
        ),
    ),
    (
        "a new merge-list element goes before server-only ones (upstream order)",
        _tpl({"containers": [{"name": "web", "env": [{"name": "Z", "value": "9"}]}]}),
        lambda o: _pod_spec(o)["containers"][0].__setitem__(
            "env",
            [{"name": "Z", "value": "9"}, {"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        ),
    ),
    (
        "element $patch: delete removes its match",
        _tpl({"containers": [{"name": "log", "$patch": "delete"}]}),
        lambda o: _pod_spec(o)["containers"].pop(1),
    ),
    (
        "$setElementOrder with an added and a removed element",
        _tpl(
            {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
                "containers": [{"name": "side", "image": "s"}, {"name": "log", "$patch": "delete"}],
            }
        ),
        lambda o: _pod_spec(o).__setitem__(
            "containers",
            [{"name": "side", "image": "s"}, _pod_spec(_deployment())["containers"][0]],
        ),
    ),
    (
        "$setElementOrder alone reorders",
        _tpl({"$setElementOrder/containers": [{"name": "log"}, {"name": "web"}]}),
        lambda o: _pod_spec(o)["containers"].reverse(),
    ),
    (
        "$setElementOrder on a field the object lacks applies to the new list",
        _tpl(
            {
                "$setElementOrder/volumes": [{"name": "b"}, {"name": "a"}],
                "volumes": [{"name": "b", "emptyDir": {}}, {"name": "x", "$patch": "delete"}],
            }
        ),
        lambda o: _pod_spec(o).__setitem__("volumes", [{"name": "b", "emptyDir": {}}]),
    ),
    (
        "directives inside a brand-new element are applied, not stored",
        _tpl(
            {
                "containers": [
                    {
                        "name": "web",
                        "$setElementOrder/ports": [{"containerPort": 80}],
                    },
                    {
                        "name": "new",
                        "$setElementOrder/ports": [{"containerPort": 2}, {"containerPort": 1}],
                        "ports": [{"containerPort": 2}, {"containerPort": 1}],
                        "env": [{"name": "X", "value": None}, {"name": "gone", "$patch": "delete"}],
                    },
                ]
            }
        ),
        lambda o: _pod_spec(o)["containers"].insert(
            1,
            {
                "name": "new",
                "ports": [{"containerPort": 2}, {"containerPort": 1}],
                "env": [{"name": "X"}],
            },
        ),
    ),
    (
        "$retainKeys on the strategy",
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        lambda o: o["spec"].__setitem__("strategy", {"type": "Recreate"}),
    ),
    (
        "a replaced scalar keeps the patch value even when types differ",
        {"spec": {"replicas": "3", "strategy": "Recreate"}},
        lambda o: o["spec"].update(replicas="3", strategy="Recreate"),
    ),
    (
        "unknown fields fall back to merge semantics: lists replaced, maps merged",
        {"spec": {"extra": {"list": [3], "map": {"b": 2}}}},
        lambda o: o["spec"].__setitem__("extra", {"list": [3], "map": {"a": 1, "b": 2}}),
    ),
]


@pytest.mark.parametrize(("patch", "mutate"), [pytest.param(p, m, id=n) for n, p, m in CASES])
def test_semantics(patch: dict[str, Any], mutate: Any, definitions: dict[str, Any]) -> None:
    original = _deployment()
    original["spec"]["extra"] = {"list": [1, 2], "map": {"a": 1}}
    expected = copy.deepcopy(original)
    mutate(expected)
    before = copy.deepcopy(original)
    frozen_patch = copy.deepcopy(patch)
    result = strategic_merge_patch(original, patch, SchemaResolver(definitions, DEPLOYMENT))
    assert result == expected
    assert original == before and patch == frozen_patch


def test_set_element_order_keeps_unmentioned_server_items_by_live_order(
    definitions: dict[str, Any],
) -> None:
    obj = _deployment()
    _pod_spec(obj)["containers"] = [{"name": n} for n in ("a", "b", "c")]
    patch = _tpl({"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]})
    result = strategic_merge_patch(obj, patch, SchemaResolver(definitions, DEPLOYMENT))
    assert [c["name"] for c in _pod_spec(result)["containers"]] == ["b", "c", "a"]


def test_finalizers_union_delete_and_order(definitions: dict[str, Any]) -> None:
    schema = SchemaResolver(definitions, DEPLOYMENT)
    obj = {"metadata": {"name": "x", "finalizers": ["a", "b", "c"]}}

    added = strategic_merge_patch(obj, {"metadata": {"finalizers": ["c", "d"]}}, schema)
    assert added["metadata"]["finalizers"] == ["a", "b", "c", "d"]

    removed = strategic_merge_patch(
        obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}, schema
    )
    assert removed["metadata"]["finalizers"] == ["a", "c"]

    ordered = strategic_merge_patch(
        obj,
        {
            "metadata": {
                "$setElementOrder/finalizers": ["d", "c", "a"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "finalizers": ["d"],
            }
        },
        schema,
    )
    assert ordered["metadata"]["finalizers"] == ["d", "c", "a"]

    absent = strategic_merge_patch(
        {"metadata": {"name": "x"}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        schema,
    )
    assert absent == {"metadata": {"name": "x"}}


def test_owner_references_merge_by_uid_and_conditions_by_type(definitions: dict[str, Any]) -> None:
    schema = SchemaResolver(definitions, DEPLOYMENT)
    obj = {
        "metadata": {
            "ownerReferences": [
                {"uid": "1", "kind": "A", "name": "a"},
                {"uid": "2", "kind": "B", "name": "b"},
            ]
        },
        "status": {
            "conditions": [
                {"type": "Available", "status": "False"},
                {"type": "Progressing", "status": "True"},
            ]
        },
    }
    patch = {
        "metadata": {"ownerReferences": [{"uid": "2", "controller": True}]},
        "status": {
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
            ]
        },
    }
    result = strategic_merge_patch(obj, patch, schema)
    assert result["metadata"]["ownerReferences"] == [
        {"uid": "1", "kind": "A", "name": "a"},
        {"uid": "2", "kind": "B", "name": "b", "controller": True},
    ]
    assert result["status"]["conditions"] == [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": "True"},
    ]


def test_service_ports_merge_by_port(definitions: dict[str, Any]) -> None:
    obj = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    patch = {"spec": {"ports": [{"port": 443, "name": "https"}, {"port": 80, "$patch": "delete"}]}}
    result = strategic_merge_patch(obj, patch, SchemaResolver(definitions, SERVICE))
    assert result == {"spec": {"ports": [{"port": 443, "targetPort": 8443, "name": "https"}]}}


def test_without_schema_is_json_merge_with_directives(definitions: dict[str, Any]) -> None:
    obj = {"spec": {"items": [{"name": "a"}], "m": {"x": 1, "y": 2}}}
    patch = {
        "spec": {"items": [{"name": "b"}], "m": {"y": None, "$retainKeys": ["y", "z"], "z": 3}}
    }
    assert strategic_merge_patch(obj, patch, None) == {
        "spec": {"items": [{"name": "b"}], "m": {"z": 3}}
    }


def test_root_delete_directive_gives_empty_object() -> None:
    assert strategic_merge_patch({"a": 1}, {"$patch": "delete"}, None) == {}


ERRORS: list[tuple[str, Any, type[errors.ApiError], str]] = [
    ("not an object", [1], errors.BadRequest, "invalid JSON document"),
    (
        "unknown map directive",
        {"spec": {"strategy": {"$patch": "foo"}}},
        errors.BadRequest,
        "unknown patch type: foo",
    ),
    (
        "unknown list directive",
        _tpl({"containers": [{"name": "web", "$patch": "foo"}]}),
        errors.BadRequest,
        "unknown patch type: foo",
    ),
    (
        "merge directive in a list",
        _tpl({"containers": [{"$patch": "merge"}]}),
        errors.BadRequest,
        "merging lists cannot yet be specified in the patch",
    ),
    (
        "delete without merge key",
        _tpl({"containers": [{"$patch": "delete"}]}),
        errors.BadRequest,
        "does not contain declared merge key: name",
    ),
    (
        "element without merge key",
        _tpl({"containers": [{"image": "x"}]}),
        errors.BadRequest,
        "map: map[image:x] does not contain declared merge key: name",
    ),
    (
        "retainKeys not a list",
        {"spec": {"strategy": {"$retainKeys": "type"}}},
        errors.BadRequest,
        "retainKeys",
    ),
    (
        "patch key outside retainKeys",
        {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}},
        errors.BadRequest,
        "invalid patch format of retainKeys",
    ),
    (
        "setElementOrder not a list",
        _tpl({"$setElementOrder/containers": "web"}),
        errors.BadRequest,
        "invalid patch format of setElementOrder list",
    ),
    (
        "setElementOrder contradicting the patch list",
        _tpl(
            {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "log", "image": "y"}],
            }
        ),
        errors.BadRequest,
        "doesn't match $setElementOrder list",
    ),
    (
        "delete list without a field",
        {"metadata": {"$deleteFromPrimitiveList": ["a"]}},
        errors.BadRequest,
        "invalid patch format of primitive list",
    ),
    (
        "lists of lists",
        {"metadata": {"finalizers": [["a"]]}},
        errors.Invalid,
        "lists of lists are not supported",
    ),
]


@pytest.mark.parametrize(
    ("patch", "error", "message"), [pytest.param(p, e, m, id=n) for n, p, e, m in ERRORS]
)
def test_errors(
    patch: Any, error: type[errors.ApiError], message: str, definitions: dict[str, Any]
) -> None:
    obj = _deployment()
    obj["metadata"]["finalizers"] = ["x"]
    with pytest.raises(error) as info:
        strategic_merge_patch(obj, patch, SchemaResolver(definitions, DEPLOYMENT))
    assert message in info.value.message
    assert type(info.value) is error


# ------------------------------------------------------------------ resolver


def test_schema_resolver_navigation(definitions: dict[str, Any]) -> None:
    root = SchemaResolver(definitions, DEPLOYMENT)
    assert root.patch_strategy == "" and root.merge_key == ""
    strategy = root.field("spec").field("strategy")  # type: ignore[union-attr]
    assert strategy is not None and strategy.patch_strategy == "retainKeys"
    pod = root.field("spec").field("template").field("spec")  # type: ignore[union-attr]
    assert pod is not None
    volumes = pod.field("volumes")
    assert volumes is not None
    assert (volumes.patch_strategy, volumes.merge_key) == ("merge,retainKeys", "name")
    container = pod.field("containers").items()  # type: ignore[union-attr]
    assert container is not None and container.field("ports").merge_key == "containerPort"  # type: ignore[union-attr]
    labels = root.field("metadata").field("labels")  # type: ignore[union-attr]
    assert labels is not None and labels.field("any-key") is not None  # additionalProperties
    assert root.field("nope") is None
    assert container.items() is None
    with pytest.raises(KeyError):
        SchemaResolver(definitions, "io.k8s.api.core.v1.Nope")


def test_schema_resolver_follows_all_of() -> None:
    defs = {
        "Root": {
            "properties": {
                "child": {
                    "allOf": [{"$ref": "#/definitions/Child"}],
                    "x-kubernetes-patch-strategy": "retainKeys",
                }
            }
        },
        "Child": {
            "properties": {
                "xs": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-patch-strategy": "merge",
                }
            }
        },
    }
    child = SchemaResolver(defs, "Root").field("child")
    assert child is not None and child.patch_strategy == "retainKeys"
    xs = child.field("xs")
    assert xs is not None and xs.patch_strategy == "merge"
    # a merge list of scalars is a union; like upstream, new items go first
    patched = strategic_merge_patch(
        {"child": {"xs": ["a", "b"]}}, {"child": {"xs": ["c", "b"]}}, SchemaResolver(defs, "Root")
    )
    assert patched == {"child": {"xs": ["c", "a", "b"]}}
