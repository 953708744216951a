"""Encode the ``/openapi/v2`` document as gnostic's ``openapi.v2.Document`` protobuf.

kubectl 1.27–1.29 fetch ``/openapi/v2`` with
``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and
``proto.Unmarshal`` the body whatever its Content-Type; a JSON answer fails
``apply``/``diff``/``explain`` with "cannot parse invalid wire-format data".
Those kubectls read from the document: the ``x-kubernetes-group-version-kind``
of definitions (resource lookup) and of PATCH operations (whether the server
knows ``fieldValidation``), the ``x-kubernetes-patch-*`` extensions (strategic
merge patch), and the schemas for ``explain`` and client-side validation.

Why a table-driven writer rather than ``google.protobuf`` plus generated
classes: the message set is small, frozen (gnostic's ``openapiv2/OpenAPIv2.proto``
has not changed in years) and proto3 with nothing but strings, bools, doubles,
int64 and sub-messages, so the wire format is a few lines of code and no
dependency is added. The field numbers below were read from the
``FileDescriptorProto`` that kubectl 1.27–1.33 embed (``openapiv2/OpenAPIv2.proto``,
package ``openapi.v2``; ``tests/api/test_openapi_proto.py`` re-checks them against
the installed binaries).

Mapping rules (as gnostic's compiler builds the message from JSON):

* a JSON object keyed by names (``definitions``, ``properties``, ``paths``,
  response codes…) is a repeated ``Named*`` message ``{1: name, 2: value}``;
* ``x-…`` keys go to ``vendor_extension`` as ``NamedAny{name, Any{yaml}}``;
  kubectl ``yaml.Unmarshal``\\ s the text, so JSON (a YAML subset) is written;
  ``default``/``enum``/``example`` values are ``Any{yaml}`` the same way;
* oneofs are picked from the JSON: ``$ref`` → ``JsonReference``, parameter
  ``in`` → body or header/formData/query/path sub-schema, ``type: file`` →
  ``FileSchema``; ``items`` is always a list, ``additionalProperties`` a
  schema or a bool, ``type`` a ``TypeItem`` of strings;
* keys gnostic has no field for (JSON-schema draft-4 ``anyOf``/``oneOf``/
  ``not``, OpenAPI 3 ``nullable``…) are dropped, as the real apiserver does
  when it publishes CRD schemas in v2.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from typing import Any

# What kube-openapi answers for either accepted spelling: the deprecated "@v1.0"
# one is not a valid media type (Go's mime.ParseMediaType rejects the "@", and
# client-go then fails the request), so it is only ever read from Accept.
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_MEDIA_TYPES = frozenset(
    {CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
)

_VARINT, _I64, _LEN = 0, 1, 2

Doc = dict[str, Any]
# A field: (number, kind, argument). Kinds: s string, b bool, d double, i int64,
# S repeated string, a Any, A repeated Any, m message (argument: table name),
# M repeated message, n named map (argument: (entry value table)), f function.
Spec = tuple[int, str, Any]

_PRIMITIVE = {
    "type": (1, "s", None),
    "format": (2, "s", None),
    "items": (3, "m", "PrimitivesItems"),
    "collectionFormat": (4, "s", None),
    "default": (5, "a", None),
    "maximum": (6, "d", None),
    "exclusiveMaximum": (7, "b", None),
    "minimum": (8, "d", None),
    "exclusiveMinimum": (9, "b", None),
    "maxLength": (10, "i", None),
    "minLength": (11, "i", None),
    "pattern": (12, "s", None),
    "maxItems": (13, "i", None),
    "minItems": (14, "i", None),
    "uniqueItems": (15, "b", None),
    "enum": (16, "A", None),
    "multipleOf": (17, "d", None),
}


def _shifted(base: dict[str, Spec], by: int, head: dict[str, Spec]) -> dict[str, Spec]:
    """``head`` followed by ``base``'s fields renumbered ``+by`` (the sub-schemas)."""
    return {**head, **{k: (n + by, kind, arg) for k, (n, kind, arg) in base.items()}}


_NON_BODY_HEAD = {"required": (1, "b", None), "in": (2, "s", None), "description": (3, "s", None)}
# Header/Path sub-schemas: required, in, description, name, then the primitive fields.
_HEADER_PARAM = _shifted(_PRIMITIVE, 4, {**_NON_BODY_HEAD, "name": (4, "s", None)})
# Query/FormData sub-schemas add allowEmptyValue (5) before the primitive fields.
_QUERY_PARAM = _shifted(
    _PRIMITIVE, 5, {**_NON_BODY_HEAD, "name": (4, "s", None), "allowEmptyValue": (5, "b", None)}
)

# message name -> (JSON key -> field spec, vendor_extension field number or 0)
TABLES: dict[str, tuple[dict[str, Spec], int]] = {
    "Document": (
        {
            "swagger": (1, "s", None),
            "info": (2, "m", "Info"),
            "host": (3, "s", None),
            "basePath": (4, "s", None),
            "schemes": (5, "S", None),
            "consumes": (6, "S", None),
            "produces": (7, "S", None),
            "paths": (8, "f", "paths"),
            "definitions": (9, "n", "Schema"),
            "parameters": (10, "n", "Parameter"),
            "responses": (11, "n", "Response"),
            "tags": (14, "M", "Tag"),
            "externalDocs": (15, "m", "ExternalDocs"),
        },
        16,
    ),
    "Info": (
        {
            "title": (1, "s", None),
            "version": (2, "s", None),
            "description": (3, "s", None),
            "termsOfService": (4, "s", None),
            "contact": (5, "m", "Contact"),
            "license": (6, "m", "License"),
        },
        7,
    ),
    "Contact": ({"name": (1, "s", None), "url": (2, "s", None), "email": (3, "s", None)}, 4),
    "License": ({"name": (1, "s", None), "url": (2, "s", None)}, 3),
    "ExternalDocs": ({"description": (1, "s", None), "url": (2, "s", None)}, 3),
    "Tag": (
        {
            "name": (1, "s", None),
            "description": (2, "s", None),
            "externalDocs": (3, "m", "ExternalDocs"),
        },
        4,
    ),
    "PathItem": (
        {
            "$ref": (1, "s", None),
            "get": (2, "m", "Operation"),
            "put": (3, "m", "Operation"),
            "post": (4, "m", "Operation"),
            "delete": (5, "m", "Operation"),
            "options": (6, "m", "Operation"),
            "head": (7, "m", "Operation"),
            "patch": (8, "m", "Operation"),
            "parameters": (9, "M", "ParametersItem"),
        },
        10,
    ),
    "Operation": (
        {
            "tags": (1, "S", None),
            "summary": (2, "s", None),
            "description": (3, "s", None),
            "externalDocs": (4, "m", "ExternalDocs"),
            "operationId": (5, "s", None),
            "produces": (6, "S", None),
            "consumes": (7, "S", None),
            "parameters": (8, "M", "ParametersItem"),
            "responses": (9, "f", "responses"),
            "schemes": (10, "S", None),
            "deprecated": (11, "b", None),
        },
        13,
    ),
    "JsonReference": ({"$ref": (1, "s", None), "description": (2, "s", None)}, 0),
    "BodyParameter": (
        {
            "description": (1, "s", None),
            "name": (2, "s", None),
            "in": (3, "s", None),
            "required": (4, "b", None),
            "schema": (5, "m", "Schema"),
        },
        6,
    ),
    "HeaderParameterSubSchema": (_HEADER_PARAM, 22),
    "PathParameterSubSchema": (_HEADER_PARAM, 22),
    "QueryParameterSubSchema": (_QUERY_PARAM, 23),
    "FormDataParameterSubSchema": (_QUERY_PARAM, 23),
    "PrimitivesItems": (_PRIMITIVE, 18),
    "Header": ({**_PRIMITIVE, "description": (18, "s", None)}, 19),
    "Response": (
        {
            "description": (1, "s", None),
            "schema": (2, "f", "schema_item"),
            "headers": (3, "n", "Header"),
            "examples": (4, "f", "examples"),
        },
        5,
    ),
    "FileSchema": (
        {
            "format": (1, "s", None),
            "title": (2, "s", None),
            "description": (3, "s", None),
            "default": (4, "a", None),
            "required": (5, "S", None),
            "type": (6, "s", None),
            "readOnly": (7, "b", None),
            "externalDocs": (8, "m", "ExternalDocs"),
            "example": (9, "a", None),
        },
        10,
    ),
    "Schema": (
        {
            "$ref": (1, "s", None),
            "format": (2, "s", None),
            "title": (3, "s", None),
            "description": (4, "s", None),
            "default": (5, "a", None),
            "multipleOf": (6, "d", None),
            "maximum": (7, "d", None),
            "exclusiveMaximum": (8, "b", None),
            "minimum": (9, "d", None),
            "exclusiveMinimum": (10, "b", None),
            "maxLength": (11, "i", None),
            "minLength": (12, "i", None),
            "pattern": (13, "s", None),
            "maxItems": (14, "i", None),
            "minItems": (15, "i", None),
            "uniqueItems": (16, "b", None),
            "maxProperties": (17, "i", None),
            "minProperties": (18, "i", None),
            "required": (19, "S", None),
            "enum": (20, "A", None),
            "additionalProperties": (21, "f", "additional_properties"),
            "type": (22, "f", "type_item"),
            "items": (23, "f", "items_item"),
            "allOf": (24, "M", "Schema"),
            "properties": (25, "n", "Schema"),
            "discriminator": (26, "s", None),
            "readOnly": (27, "b", None),
            "xml": (28, "m", "Xml"),
            "externalDocs": (29, "m", "ExternalDocs"),
            "example": (30, "a", None),
        },
        31,
    ),
    "Xml": (
        {
            "name": (1, "s", None),
            "namespace": (2, "s", None),
            "prefix": (3, "s", None),
            "attribute": (4, "b", None),
            "wrapped": (5, "b", None),
        },
        6,
    ),
}


# --- wire primitives -------------------------------------------------------


def _varint(out: bytearray, value: int) -> None:
    value &= 0xFFFFFFFFFFFFFFFF  # int64: negatives as 10-byte two's complement
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _bytes_field(out: bytearray, number: int, data: bytes) -> None:
    _varint(out, number << 3 | _LEN)
    _varint(out, len(data))
    out += data


def _string(out: bytearray, number: int, value: Any) -> None:
    _bytes_field(out, number, str(value).encode())


def _any(value: Any) -> bytes:
    """``openapi.v2.Any{yaml: …}``: JSON text, which every YAML parser reads."""
    out = bytearray()
    _string(out, 2, json.dumps(value, sort_keys=True))
    return bytes(out)


def _named(name: str, value: bytes) -> bytes:
    out = bytearray()
    _string(out, 1, name)
    _bytes_field(out, 2, value)
    return bytes(out)


# --- messages --------------------------------------------------------------


def _message(table: str, obj: Any) -> bytes:
    if table in _CUSTOM_MESSAGES:
        return _CUSTOM_MESSAGES[table](obj)
    fields, vendor = TABLES[table]
    out = bytearray()
    if not isinstance(obj, dict):
        return b""
    for key, value in obj.items():
        spec = fields.get(key)
        if spec is None:
            if vendor and key.startswith("x-"):
                _bytes_field(out, vendor, _named(key, _any(value)))
            continue
        if value is None:
            continue
        _field(out, spec, value)
    return bytes(out)


def _field(out: bytearray, spec: Spec, value: Any) -> None:
    number, kind, arg = spec
    if kind == "s":
        _string(out, number, value)
    elif kind == "b":
        _varint(out, number << 3 | _VARINT)
        _varint(out, 1 if value else 0)
    elif kind == "i":
        _varint(out, number << 3 | _VARINT)
        _varint(out, int(value))
    elif kind == "d":
        _varint(out, number << 3 | _I64)
        out += struct.pack("<d", float(value))
    elif kind == "S":
        for item in value if isinstance(value, list) else [value]:
            _string(out, number, item)
    elif kind == "a":
        _bytes_field(out, number, _any(value))
    elif kind == "A":
        for item in value if isinstance(value, list) else [value]:
            _bytes_field(out, number, _any(item))
    elif kind == "m":
        _bytes_field(out, number, _message(arg, value))
    elif kind == "M":
        for item in value if isinstance(value, list) else [value]:
            _bytes_field(out, number, _message(arg, item))
    elif kind == "n":
        _bytes_field(out, number, _named_map(arg, value))
    else:
        _bytes_field(out, number, _SPECIAL[arg](value))


def _named_map(table: str, value: Any) -> bytes:
    """``{name: obj}`` → a message of repeated ``Named*{1: name, 2: obj}`` at field 1."""
    out = bytearray()
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, dict):
                _bytes_field(out, 1, _named(name, _message(table, item)))
    return bytes(out)


def _paths(value: Any) -> bytes:
    out = bytearray()
    for name, item in (value or {}).items():
        if name.startswith("x-"):
            _bytes_field(out, 1, _named(name, _any(item)))
        elif isinstance(item, dict):
            _bytes_field(out, 2, _named(name, _message("PathItem", item)))
    return bytes(out)


def _responses(value: Any) -> bytes:
    out = bytearray()
    for code, item in (value or {}).items():
        if code.startswith("x-"):
            _bytes_field(out, 2, _named(code, _any(item)))
        elif isinstance(item, dict):
            # ResponseValue oneof: 1 Response, 2 JsonReference.
            inner = bytearray()
            if "$ref" in item:
                _bytes_field(inner, 2, _message("JsonReference", item))
            else:
                _bytes_field(inner, 1, _message("Response", item))
            _bytes_field(out, 1, _named(str(code), bytes(inner)))
    return bytes(out)


def _parameters_item(value: Any) -> bytes:
    """ParametersItem oneof: 1 Parameter, 2 JsonReference."""
    out = bytearray()
    if isinstance(value, dict) and "$ref" in value:
        _bytes_field(out, 2, _message("JsonReference", value))
    else:
        _bytes_field(out, 1, _message("Parameter", value))
    return bytes(out)


_NON_BODY = {
    "header": (1, "HeaderParameterSubSchema"),
    "formData": (2, "FormDataParameterSubSchema"),
    "query": (3, "QueryParameterSubSchema"),
    "path": (4, "PathParameterSubSchema"),
}


def _parameter(value: Any) -> bytes:
    """Parameter oneof: 1 BodyParameter, 2 NonBodyParameter (itself a oneof by ``in``)."""
    out = bytearray()
    where = value.get("in") if isinstance(value, dict) else None
    if where == "body":
        _bytes_field(out, 1, _message("BodyParameter", value))
    elif where in _NON_BODY:
        number, table = _NON_BODY[where]
        inner = bytearray()
        _bytes_field(inner, number, _message(table, value))
        _bytes_field(out, 2, bytes(inner))
    return bytes(out)


def _schema_item(value: Any) -> bytes:
    """SchemaItem oneof: 1 Schema, 2 FileSchema."""
    out = bytearray()
    if isinstance(value, dict) and value.get("type") == "file":
        _bytes_field(out, 2, _message("FileSchema", value))
    else:
        _bytes_field(out, 1, _message("Schema", value))
    return bytes(out)


def _examples(value: Any) -> bytes:
    out = bytearray()
    for name, item in (value or {}).items():
        _bytes_field(out, 1, _named(name, _any(item)))
    return bytes(out)


def _additional_properties(value: Any) -> bytes:
    """AdditionalPropertiesItem oneof: 1 Schema, 2 bool."""
    out = bytearray()
    if isinstance(value, bool):
        _field(out, (2, "b", None), value)
    else:
        _bytes_field(out, 1, _message("Schema", value))
    return bytes(out)


def _type_item(value: Any) -> bytes:
    out = bytearray()
    _field(out, (1, "S", None), value)
    return bytes(out)


def _items_item(value: Any) -> bytes:
    out = bytearray()
    _field(out, (1, "M", "Schema"), value)
    return bytes(out)


_SPECIAL: dict[str, Callable[[Any], bytes]] = {
    "paths": _paths,
    "responses": _responses,
    "schema_item": _schema_item,
    "examples": _examples,
    "additional_properties": _additional_properties,
    "type_item": _type_item,
    "items_item": _items_item,
}
_CUSTOM_MESSAGES: dict[str, Callable[[Any], bytes]] = {
    "ParametersItem": _parameters_item,
    "Parameter": _parameter,
}


# --- public API ------------------------------------------------------------


def encode_v2(doc: Doc) -> bytes:
    """The Swagger 2.0 ``doc`` as a serialized ``openapi.v2.Document``."""
    return _message("Document", doc)


def wants_protobuf(accept: str) -> bool:
    """True when the best-ranked media type of ``accept`` is the proto-openapi one.

    kubectl asks for the protobuf type alone; a client listing JSON first (or
    with a higher ``q``) keeps getting JSON.
    """
    best: tuple[float, int] | None = None
    chosen = ""
    for index, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        q = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        rank = (q, -index)
        if q > 0 and (best is None or rank > best):
            best, chosen = rank, media
    return chosen in _MEDIA_TYPES


_lock = threading.Lock()
_last: tuple[Doc, bytes] | None = None


def encode_cached(doc: Doc) -> bytes:
    """``encode_v2`` memoised on the document object.

    ``openapi.v2_document`` hands back the same dict until the catalog's
    generation or the CRD schemas change, so identity is exactly the right
    cache key (and holding the dict keeps its id from being reused).
    """
    global _last
    with _lock:
        if _last is not None and _last[0] is doc:
            return _last[1]
    data = encode_v2(doc)
    with _lock:
        _last = (doc, data)
    return data
