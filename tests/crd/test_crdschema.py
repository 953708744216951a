"""Structural schema defaulting, pruning and validation with upstream messages."""

from __future__ import annotations

import copy

from microkube.resources import crdschema
from tests.crd.conftest import CRONTAB_SCHEMA


def messages(obj: dict) -> dict[str, str]:
    return {c.field: c.message for c in crdschema.validate(obj, CRONTAB_SCHEMA)}


def test_valid_object_has_no_errors() -> None:
    obj = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "a"},
        "spec": {
            "cronSpec": "* * * * */5",
            "replicas": 3,
            "ports": [{"port": "http"}, {"port": 80}],
        },
    }
    assert crdschema.validate(obj, CRONTAB_SCHEMA) == []


def test_every_violation_is_reported_with_upstream_messages() -> None:
    obj = {
        "spec": {
            "cronSpec": "bad",
            "image": "x" * 21,
            "replicas": 11,
            "mode": "medium",
            "ports": [{"name": None}, {"port": 1.5}, {"port": 2}],
        }
    }
    got = messages(obj)
    assert got == {
        "spec.cronSpec": 'Invalid value: "bad": spec.cronSpec in body should match '
        "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        "spec.image": "Too long: may not be more than 20 bytes",
        "spec.replicas": "Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        "spec.mode": 'Unsupported value: "medium": supported values: "fast", "slow"',
        "spec.ports": "Too many: 3: must have at most 2 items",
        "spec.ports[0].port": "Required value",
        "spec.ports[1].port": 'Invalid value: "number": spec.ports[1].port in body must be of type '
        'integer,string: "number"',
    }


def test_type_errors_and_required() -> None:
    got = messages({"spec": {"replicas": "three", "image": 5}})
    assert got["spec.replicas"] == (
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    )
    assert (
        got["spec.image"]
        == 'Invalid value: "integer": spec.image in body must be of type string: "integer"'
    )
    assert got["spec.cronSpec"] == "Required value"
    reasons = {
        c.field: c.reason for c in crdschema.validate({"spec": {"replicas": "x"}}, CRONTAB_SCHEMA)
    }
    assert reasons["spec.replicas"] == "FieldValueTypeInvalid"
    assert reasons["spec.cronSpec"] == "FieldValueRequired"


def test_minimum_and_null() -> None:
    got = messages({"spec": {"cronSpec": "* * * * *", "replicas": 0, "mode": None}})
    assert got == {
        "spec.replicas": "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        "spec.mode": 'Invalid value: "null": spec.mode in body must be of type string: "null"',
    }


def test_defaulting_and_pruning() -> None:
    obj = {
        "apiVersion": "v",
        "kind": "CronTab",
        "metadata": {"name": "a", "labels": {"x": "y"}},
        "spec": {
            "cronSpec": "* * * * *",
            "unknown": 1,
            "extra": {"free": {"form": True}},
            "ports": [{"port": 1, "junk": 2}],
        },
        "other": "gone",
    }
    crdschema.default(obj, CRONTAB_SCHEMA)
    dropped = crdschema.prune(obj, CRONTAB_SCHEMA, root=True)
    assert sorted(dropped) == ["other", "spec.ports[0].junk", "spec.unknown"]
    assert obj["spec"] == {
        "cronSpec": "* * * * *",
        "replicas": 1,
        "extra": {"free": {"form": True}},
        "ports": [{"port": 1}],
    }
    assert obj["metadata"] == {"name": "a", "labels": {"x": "y"}}


def test_structural_errors() -> None:
    ok = copy.deepcopy(CRONTAB_SCHEMA)
    assert crdschema.structural_errors(ok, "s") == []
    bad = {
        "type": "object",
        "properties": {
            "spec": {"properties": {"a": {"type": "array"}}},
            "m": {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
        },
    }
    got = {c.field: c.message for c in crdschema.structural_errors(bad, "s")}
    assert got == {
        "s.properties[spec].type": "Required value: must not be empty for specified object fields",
        "s.properties[spec].properties[a].items": "Required value: must be specified",
        "s.properties[m].additionalProperties": "Forbidden: additionalProperties and properties are mutual exclusive",
    }
