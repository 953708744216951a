"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from microkube import errors
from microkube.objects import patch

DEPLOY: dict[str, Any] = {
    "metadata": {"name": "web", "annotations": {"a": "1"}, "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "args": ["x"]}]}},
    },
}


@pytest.mark.parametrize(
    ("ops", "check"),
    [
        ([{"op": "replace", "path": "/spec/replicas", "value": 5}], ("spec", "replicas", 5)),
        (
            [{"op": "add", "path": "/metadata/labels/tier", "value": "fe"}],
            ("metadata", "labels", {"app": "web", "tier": "fe"}),
        ),
        ([{"op": "remove", "path": "/metadata/annotations/a"}], ("metadata", "annotations", {})),
        (
            [
                {"op": "test", "path": "/spec/replicas", "value": 2},
                {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
            ],
            ("metadata", "annotations", {"app": "web"}),
        ),
        (
            [{"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/name"}],
            ("metadata", "labels", {"name": "web"}),
        ),
        ([], ("spec", "replicas", 2)),
    ],
)
def test_json_patch_applies(ops: list[dict[str, Any]], check: tuple[str, str, Any]) -> None:
    before = copy.deepcopy(DEPLOY)
    result = patch.json_patch(DEPLOY, ops)
    assert result[check[0]][check[1]] == check[2]
    assert DEPLOY == before


def test_json_patch_rollout_undo_shape() -> None:
    template = {"spec": {"containers": [{"name": "web", "image": "nginx:old"}]}}
    ops = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}},
    ]
    result = patch.json_patch(DEPLOY, ops)
    assert result["spec"]["template"] == template
    assert result["metadata"]["annotations"] == {"b": "2"}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/spec/replicas", "value": 3}],
        [{"op": "replace", "path": "/spec/missing", "value": 1}],
        [{"op": "remove", "path": "/metadata/nope"}],
        [{"op": "add", "path": "/no/parent", "value": 1}],
        [{"op": "frobnicate", "path": "/spec"}],
        [{"path": "/spec"}],
        [{"op": "replace", "path": "", "value": [1]}],
        [{"op": "replace", "path": "/spec/template/spec/containers/7/image", "value": "x"}],
    ],
)
def test_json_patch_that_does_not_apply_is_422(ops: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(DEPLOY)
    with pytest.raises(errors.Invalid) as info:
        patch.json_patch(DEPLOY, ops)
    assert info.value.code == 422
    assert info.value.message == "the server rejected our request due to an error in our request"
    assert DEPLOY == before


@pytest.mark.parametrize("ops", [{"op": "add"}, "x", None, [1, 2], [[]]])
def test_json_patch_undecodable_is_400(ops: Any) -> None:
    with pytest.raises(errors.BadRequest) as info:
        patch.json_patch(DEPLOY, ops)
    assert "cannot unmarshal" in info.value.message


def test_json_patch_operation_limit() -> None:
    ops = [{"op": "test", "path": "/spec/replicas", "value": 2}] * (
        patch.MAX_JSON_PATCH_OPERATIONS + 1
    )
    with pytest.raises(errors.BadRequest, match="maximum operations in a JSON patch is 10000"):
        patch.json_patch(DEPLOY, ops)


@pytest.mark.parametrize(
    ("merge", "expected_spec", "expected_meta"),
    [
        ({"spec": {"replicas": 3}}, {**DEPLOY["spec"], "replicas": 3}, DEPLOY["metadata"]),
        (
            {"metadata": {"labels": {"app": None, "x": "y"}, "annotations": None}},
            DEPLOY["spec"],
            {"name": "web", "labels": {"x": "y"}},
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "other"}]}}}},
            {"replicas": 2, "template": {"spec": {"containers": [{"name": "other"}]}}},
            DEPLOY["metadata"],
        ),
        (
            {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}},
            {**DEPLOY["spec"], "strategy": {"type": "Recreate"}},
            DEPLOY["metadata"],
        ),
        (
            {"spec": {"replicas": {"nested": 1}}},
            {**DEPLOY["spec"], "replicas": {"nested": 1}},
            DEPLOY["metadata"],
        ),
        (
            {"spec": {"list": [None, {"a": None}]}},
            {**DEPLOY["spec"], "list": [None, {"a": None}]},
            DEPLOY["metadata"],
        ),
        ({}, DEPLOY["spec"], DEPLOY["metadata"]),
    ],
    ids=[
        "scalar",
        "null-deletes",
        "list-replaced",
        "new-map-drops-nulls",
        "scalar-to-map",
        "list-kept-verbatim",
        "empty",
    ],
)
def test_merge_patch(merge: dict[str, Any], expected_spec: Any, expected_meta: Any) -> None:
    before = copy.deepcopy(DEPLOY)
    frozen = copy.deepcopy(merge)
    result = patch.merge_patch(DEPLOY, merge)
    assert result == {"metadata": expected_meta, "spec": expected_spec}
    assert DEPLOY == before and merge == frozen


def test_merge_patch_result_shares_nothing_with_patch() -> None:
    body = {"spec": {"args": ["a"]}}
    result = patch.merge_patch({}, body)
    result["spec"]["args"].append("b")
    assert body == {"spec": {"args": ["a"]}}


@pytest.mark.parametrize("body", [[{"op": "add"}], "x", 3, None])
def test_merge_patch_must_be_an_object(body: Any) -> None:
    with pytest.raises(errors.BadRequest, match="cannot unmarshal"):
        patch.merge_patch(DEPLOY, body)


def test_scale_merge_patch_from_kubectl() -> None:
    scale = {"kind": "Scale", "apiVersion": "autoscaling/v1", "spec": {"replicas": 1}}
    assert patch.merge_patch(scale, {"spec": {"replicas": 3}})["spec"] == {"replicas": 3}


def test_strategic_merge_is_reexported() -> None:
    assert patch.strategic_merge_patch({"a": {"b": 1}}, {"a": {"c": 2}}, None) == {
        "a": {"b": 1, "c": 2}
    }
    assert patch.SchemaResolver.__name__ == "SchemaResolver"
