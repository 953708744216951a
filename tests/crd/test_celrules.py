"""CEL rules (x-kubernetes-validations): evaluation, messages and CRD-time checks."""

from __future__ import annotations

from typing import Any

from microkube.resources import celrules

SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('w-')"}],
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {
                    "rule": "self.min <= self.max",
                    "message": "min must not exceed max",
                    "fieldPath": ".max",
                },
                {
                    "rule": "self.name.lowerAscii() == self.name",
                    "reason": "FieldValueForbidden",
                    "messageExpression": "'name ' + self.name + ' must be lower case'",
                },
                {
                    "rule": "!has(self.replicas) || self.replicas >= oldSelf.replicas",
                    "message": "cannot scale down",
                },
                {"rule": "self.ratio == 1.0"},
                {
                    "rule": "quantity(self.size).isLessThan(quantity('1Gi'))",
                    "reason": "FieldValueRequired",
                },
            ],
            "properties": {
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "name": {"type": "string"},
                "ratio": {"type": "number"},
                "replicas": {"type": "integer"},
                "size": {"type": "string"},
                "tags": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "size(self) < 5"}],
                    },
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.port == oldSelf.port", "message": "port is immutable"}
                        ],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}],
                    },
                },
            },
        }
    },
}


def widget(obj_name: str = "w-1", **spec: Any) -> dict[str, Any]:
    base = {"min": 1, "max": 2, "name": "ok", "ratio": 1, "size": "1Mi"}
    return {
        "apiVersion": "x.io/v1",
        "kind": "Widget",
        "metadata": {"name": obj_name},
        "spec": {**base, **spec},
    }


def lines(causes: list[Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def test_valid_object_passes() -> None:
    obj = widget(tags=["ab"], labels={"a": "x"}, ports=[{"name": "http", "port": 80}])
    assert celrules.validate(obj, None, SCHEMA) == []


def test_every_failed_rule_is_reported_like_upstream() -> None:
    obj = widget(
        "bad", min=5, max=1, name="Bob", ratio=2, size="2Gi", tags=["toolong"], labels={"k": "UP"}
    )
    assert lines(celrules.validate(obj, None, SCHEMA)) == [
        "<nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('w-')",
        'spec.max: Invalid value: "object": min must not exceed max',
        "spec: Forbidden: name Bob must be lower case",
        'spec: Invalid value: "object": failed rule: self.ratio == 1.0',
        "spec: Required value: failed rule: quantity(self.size).isLessThan(quantity('1Gi'))",
        'spec.tags[0]: Invalid value: "string": failed rule: size(self) < 5',
        "spec.labels[k]: Invalid value: \"string\": failed rule: self.matches('^[a-z]+$')",
    ]


def test_runtime_errors_name_the_rule() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.missing == 1"},
                    {"rule": "self.a / self.b > 0"},
                ],
                "properties": {
                    "missing": {"type": "integer"},
                    "a": {"type": "integer"},
                    "b": {"type": "integer"},
                },
            }
        },
    }
    obj = {"spec": {"a": 1, "b": 0}}
    assert lines(celrules.validate(obj, None, schema)) == [
        'spec: Invalid value: "object": no such key: missing evaluating rule: self.missing == 1',
        'spec: Invalid value: "object": division by zero evaluating rule: self.a / self.b > 0',
    ]


def test_transition_rules_and_ratcheting() -> None:
    old = widget(replicas=3, ports=[{"name": "http", "port": 80}])
    # No old object: transition rules are skipped.
    assert celrules.validate(widget(replicas=1), None, SCHEMA) == []
    new = widget(replicas=1, ports=[{"name": "http", "port": 81}, {"name": "new", "port": 1}])
    assert lines(celrules.validate(new, old, SCHEMA)) == [
        'spec: Invalid value: "object": cannot scale down',
        'spec.ports[0]: Invalid value: "object": port is immutable',
    ]
    # An invalid value that did not change is not refused again (ratcheting).
    stale = widget("bad", replicas=3)
    assert lines(celrules.validate(stale, stale, SCHEMA)) == []


def test_kubernetes_library_functions() -> None:
    rules = [
        "'a,b,c'.split(',') == ['a', 'b', 'c']",
        "'Hello'.upperAscii() == 'HELLO' && 'Hello'.lowerAscii() == 'hello'",
        "'hello'.charAt(1) == 'e' && 'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3",
        "'hello'.substring(1, 3) == 'el' && '  x '.trim() == 'x' && 'aXa'.replace('a', 'b') == 'bXb'",
        "['a', 'b'].join('-') == 'a-b' && [1, 2, 3].isSorted() && [1, 2, 3].sum() == 6",
        "[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && [1, 2].indexOf(2) == 1",
        "'abc123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
        "isURL('https://example.com/x') && !isURL('nope')",
        "isQuantity('500m') && !isQuantity('five') && quantity('1Gi').compareTo(quantity('1024Mi')) == 0",
        "[1, 2, 3].exists_one(x, x == 2) && [1, 2].map(x, x * 2) == [2, 4] && [1, 2, 3].filter(x, x > 1).size() == 2",
        "duration('1h') > duration('30m')",
    ]
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": r} for r in rules]}
    assert celrules.validate({"a": 1}, None, schema) == []


def test_crd_time_checks() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {
                "type": "string",
                "x-kubernetes-validations": [
                    {"rule": "self.size( >"},
                    {"rule": "slef == 'x'"},
                    {"rule": "self.frobnicate()"},
                    {"rule": "true", "reason": "Nope", "fieldPath": ".x"},
                    {"rule": "self == 'a' ||\nself == 'b'"},
                    {"rule": "true", "message": "two\nlines"},
                ],
            }
        },
    }
    base = "spec.versions[0].schema.openAPIV3Schema.properties[a].x-kubernetes-validations"
    assert lines(celrules.schema_errors(bad, "spec.versions[0].schema.openAPIV3Schema")) == [
        f'{base}[0].rule: Invalid value: "self.size( >": compilation failed: ERROR: <input>:1:12: '
        "Syntax error: mismatched input '>'",
        f"{base}[1].rule: Invalid value: \"slef == 'x'\": compilation failed: ERROR: <input>:1:1: "
        "undeclared reference to 'slef' (in container '')",
        f'{base}[2].rule: Invalid value: "self.frobnicate()": compilation failed: ERROR: <input>:1:6: '
        "undeclared reference to 'frobnicate' (in container '')",
        f'{base}[3].reason: Unsupported value: "Nope": supported values: "FieldValueInvalid", '
        '"FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"',
        f'{base}[3].fieldPath: Invalid value: ".x": fieldPath must be a valid path: does not refer '
        "to a valid field",
        f"{base}[4].message: Required value: message must be specified if rule contains line breaks",
        f'{base}[5].message: Invalid value: "two\nlines": message must not contain line breaks',
    ]
