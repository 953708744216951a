"""The gnostic ``openapi.v2.Document`` encoding of ``/openapi/v2``.

The strong checks decode the bytes with the descriptor kubectl itself embeds
(``openapiv2/OpenAPIv2.proto`` read out of ``kubectl.1.27``), turn the decoded
message back into Swagger JSON by gnostic's rules, and compare with the
document that was encoded: a wrong field number, wire type or oneof branch
shows up as a difference. Those skip when the binary is absent; the
hand-decoded checks below them always run.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from microkube.api import openapi, openapi_proto
from microkube.api import protobuf as wire
from microkube.resources.catalog import default_catalog

KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.27")
_FILE = b"\n\x19openapiv2/OpenAPIv2.proto\x12\nopenapi.v2"
_SCALAR = {8: "bool", 9: "string", 3: "int64", 1: "double", 11: "message"}


# --- the descriptor embedded in kubectl ------------------------------------


@functools.cache
def descriptor() -> dict[str, dict[int, tuple[str, str, str, bool]]]:
    """message -> number -> (name, type, message type, repeated), from kubectl."""
    if not KUBECTL.exists():
        pytest.skip("kubectl 1.27 is not installed")
    data = KUBECTL.read_bytes()
    start = data.find(_FILE)
    assert start >= 0, "OpenAPIv2.proto descriptor not found in kubectl"
    pos, messages = start, {}
    while True:  # top-level FileDescriptorProto fields until `syntax` (12)
        key, p = wire.read_varint(data, pos)
        length, p = wire.read_varint(data, p)
        body, pos = data[p : p + length], p + length
        if key >> 3 == 4:
            name, fields = "", {}
            for num, _, value in wire.iter_fields(body):
                if num == 1:
                    name = value.decode()  # type: ignore[union-attr]
                elif num == 2:
                    f = {n: v for n, _, v in wire.iter_fields(value)}  # type: ignore[arg-type]
                    fields[f[3]] = (
                        f[1].decode(),
                        _SCALAR[f[5]],
                        f.get(6, b"").decode().removeprefix(".openapi.v2."),
                        f.get(4) == 3,
                    )
            messages[name] = fields
        if key >> 3 == 12:
            return messages


def decode(message: str, buf: bytes) -> dict[str, Any]:
    fields = descriptor()[message]
    out: dict[str, Any] = {}
    for number, _, value in wire.iter_fields(buf):
        name, kind, sub, repeated = fields[number]
        if kind == "string":
            item: Any = value.decode()  # type: ignore[union-attr]
        elif kind == "bool":
            item = bool(value)
        elif kind == "int64":
            item = wire.signed(value, 64)  # type: ignore[arg-type]
        elif kind == "double":
            item = wire.as_double(value)  # type: ignore[arg-type]
        else:
            item = decode(sub, value)  # type: ignore[arg-type]
        if repeated:
            out.setdefault(name, []).append(item)
        else:
            out[name] = item
    return out


# --- gnostic message -> Swagger JSON (the inverse of the encoder) ----------

_ONEOFS = {
    "ParametersItem",
    "Parameter",
    "NonBodyParameter",
    "ResponseValue",
    "SchemaItem",
    "AdditionalPropertiesItem",
}
_SPECIAL = {"_ref": "$ref"}
_BRANCHES = {
    "header": "header_parameter_sub_schema",
    "formData": "form_data_parameter_sub_schema",
    "query": "query_parameter_sub_schema",
    "path": "path_parameter_sub_schema",
}


def to_json(message: str, msg: dict[str, Any]) -> Any:
    fields = {f[0]: f for f in descriptor()[message].values()}
    if message == "Any":
        return yaml.safe_load(msg["yaml"])
    if message in _ONEOFS:
        ((name, value),) = msg.items()
        if message == "NonBodyParameter":  # the branch kubectl reads must match `in`
            assert _BRANCHES[value["in"]] == name, (name, value)
        return value if fields[name][1] == "bool" else to_json(fields[name][2], value)
    if message == "TypeItem":
        return msg["value"][0] if len(msg["value"]) == 1 else msg["value"]
    if message == "ItemsItem":
        items = [to_json("Schema", s) for s in msg["schema"]]
        return items[0] if len(items) == 1 else items
    out: dict[str, Any] = {}
    for name, value in msg.items():
        _, kind, sub, repeated = fields[name]
        if repeated and sub.startswith("Named"):
            entry = descriptor()[sub]
            for named in value:
                out[named["name"]] = to_json(entry[2][2], named["value"])
            continue
        key = _SPECIAL.get(name) or re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
        if kind != "message":
            out[key] = value
        elif repeated:
            out[key] = [to_json(sub, v) for v in value]
        else:
            out[key] = to_json(sub, value)
    return out


def round_trip(doc: dict[str, Any]) -> Any:
    return to_json("Document", decode("Document", openapi_proto.encode_v2(doc)))


# --- tests -----------------------------------------------------------------


def test_field_numbers_match_kubectls_descriptor() -> None:
    messages = descriptor()
    for table, (fields, vendor) in openapi_proto.TABLES.items():
        by_name = {f[0]: (n, f[1]) for n, f in messages[table].items()}
        for key, (number, kind, _) in fields.items():
            snake = "_ref" if key == "$ref" else re.sub(r"([A-Z])", r"_\1", key).lower()
            assert by_name[snake][0] == number, (table, key)
            expected = {"s": "string", "b": "bool", "i": "int64", "d": "double", "S": "string"}
            if kind in expected:
                assert by_name[snake][1] == expected[kind], (table, key)
        if vendor:
            assert by_name["vendor_extension"][0] == vendor, table


def test_whole_builtin_document_round_trips() -> None:
    doc = openapi.v2_document(default_catalog())
    assert round_trip(doc) == json.loads(json.dumps(doc))


def test_extensions_kubectl_reads_survive() -> None:
    doc = openapi.v2_document(default_catalog())
    back = round_trip(doc)
    deployment = back["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    containers = back["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    patch = back["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}


def test_odd_schema_shapes_round_trip() -> None:
    schema = {
        "type": ["string", "null"],
        "items": [{"type": "integer", "format": "int64"}, {"$ref": "#/definitions/X"}],
        "enum": ["a", 1, None, {"k": ["v"]}],
        "default": {"nested": [1.5, True]},
        "minimum": -2.5,
        "maxLength": 2**40,
        "minItems": -1,
        "required": ["a", "b"],
        "allOf": [{"$ref": "#/definitions/Y"}],
        "x-kubernetes-validations": [{"rule": "self.a == 'é'", "message": "ü"}],
    }
    doc = {
        "swagger": "2.0",
        "info": {"title": "T", "version": "v", "x-info": 1},
        "paths": {
            "/a": {
                "parameters": [{"$ref": "#/parameters/p"}],
                "get": {
                    "parameters": [
                        {"name": "b", "in": "body", "required": True, "schema": {"$ref": "#/d/B"}},
                        {"name": "h", "in": "header", "type": "string"},
                        {"name": "f", "in": "formData", "type": "file", "allowEmptyValue": True},
                        {"name": "q", "in": "query", "type": "array", "items": {"type": "string"}},
                        {"name": "p", "in": "path", "required": True, "type": "integer"},
                    ],
                    "responses": {
                        "200": {"description": "ok", "schema": {"type": "file"}},
                        "404": {"$ref": "#/responses/nf"},
                        "x-r": "yes",
                    },
                    "deprecated": True,
                },
            },
            "x-paths": {"a": 1},
        },
        "definitions": {
            "S": schema,
            "Open": {"type": "object", "additionalProperties": True},
            "Closed": {"type": "object", "additionalProperties": False},
            "Map": {"type": "object", "additionalProperties": {"type": "string"}},
            "Empty": {},
        },
    }
    assert round_trip(doc) == doc


def test_unknown_keywords_are_dropped() -> None:
    doc = {
        "swagger": "2.0",
        "definitions": {"C": {"type": "object", "anyOf": [{}], "nullable": True}},
    }
    assert round_trip(doc) == {"swagger": "2.0", "definitions": {"C": {"type": "object"}}}


def test_hand_decoded_fields() -> None:
    """Without kubectl: fixed field numbers read with a bare wire reader."""
    doc = {
        "swagger": "2.0",
        "definitions": {
            "D": {
                "properties": {"m": {"$ref": "#/definitions/M"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "D", "version": "v1"}],
            }
        },
    }
    top = list(wire.iter_fields(openapi_proto.encode_v2(doc)))
    assert top[0] == (1, wire.LEN, b"2.0")
    assert top[1][0] == 9  # Document.definitions
    ((_, _, named),) = wire.iter_fields(top[1][2])  # Definitions.additional_properties
    fields = {n: v for n, _, v in wire.iter_fields(named)}
    assert fields[1] == b"D"
    schema = list(wire.iter_fields(fields[2]))
    assert [n for n, _, _ in schema] == [25, 31]  # properties, vendor_extension
    ((_, _, prop),) = wire.iter_fields(schema[0][2])
    name, value = (v for _, _, v in wire.iter_fields(prop))
    assert name == b"m"
    assert list(wire.iter_fields(value)) == [(1, wire.LEN, b"#/definitions/M")]  # _ref
    ext = {n: v for n, _, v in wire.iter_fields(schema[1][2])}
    assert ext[1] == b"x-kubernetes-group-version-kind"
    ((_, _, text),) = wire.iter_fields(ext[2])  # Any.yaml
    assert yaml.safe_load(text) == [{"group": "", "kind": "D", "version": "v1"}]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),
        ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", True),
        ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
        (
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            True,
        ),
        ("application/json", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_wants_protobuf(accept: str, expected: bool) -> None:
    assert openapi_proto.wants_protobuf(accept) is expected


def test_encoding_is_cached_per_document_object() -> None:
    doc = openapi.v2_document(default_catalog())
    first = openapi_proto.encode_cached(doc)
    assert openapi_proto.encode_cached(doc) is first
    other = json.loads(json.dumps(doc))
    other["info"]["title"] = "changed"
    assert openapi_proto.encode_cached(other) != first
