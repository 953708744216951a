"""Structural schemas of CustomResourceDefinitions: check, default, prune, validate.

Mirrors apiextensions-apiserver (``pkg/apiserver/schema`` and
``pkg/apiserver/validation``) for the subset of OpenAPI v3 a structural schema
may use. Three passes run on every write of a custom object, in upstream order::

    decoded object ─► default (``default`` of absent properties)
                  ─► prune (drop fields the schema does not specify)
                  ─► validate (types, required, enum, pattern, bounds)

Validation walks the *whole* object and returns every violation, never just
the first, with the messages kube-openapi produces and the field-error types
``kubeOpenAPIResultToFieldErrors`` maps them to, e.g.::

    spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"
    spec.cronSpec: Required value
    spec.mode: Unsupported value: "x": supported values: "a", "b"

:func:`structural_errors` is the create-time check of a CRD's schema (the
"non-structural schema" 422). CEL rules (``x-kubernetes-validations``) live
in :mod:`microkube.resources.celrules`.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from microkube import errors

Schema = dict[str, Any]

_TYPES = ("object", "array", "string", "integer", "number", "boolean")
# Keywords a structural schema may not use anywhere (``$ref`` and friends).
_FORBIDDEN = ("$ref", "definitions", "dependencies", "additionalItems", "patternProperties")


# --- values as Go prints them ------------------------------------------------------


def _show(value: Any) -> str:
    """A value as ``field.Invalid`` prints it (strings quoted, numbers bare)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid(path: str, value: Any, detail: str) -> errors.Cause:
    return errors.Cause("FieldValueInvalid", f"Invalid value: {_show(value)}: {detail}", path)


# --- defaulting ----------------------------------------------------------------------


def default(obj: Any, schema: Schema) -> None:
    """Fill ``default`` values of absent properties, in place (mirrors structuraldefaulting)."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        for key, value in obj.items():
            if key in props:
                default(value, props[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                default(value, schema["additionalProperties"])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            default(item, schema["items"])


# --- pruning -------------------------------------------------------------------------


def prune(obj: Any, schema: Schema, *, root: bool = False) -> list[str]:
    """Drop unknown fields in place; returns their paths (mirrors structuralpruning).

    At the root (and in ``x-kubernetes-embedded-resource`` objects) ``apiVersion``,
    ``kind`` and ``metadata`` are always kept.
    """
    dropped: list[str] = []
    _prune(obj, schema, "", root, dropped)
    return dropped


def _prune(value: Any, schema: Schema, path: str, keep_meta: bool, dropped: list[str]) -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = keep_meta or schema.get("x-kubernetes-embedded-resource") is True
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if embedded and key in ("apiVersion", "kind", "metadata") and key not in props:
                continue
            if key in props:
                _prune(value[key], props[key], sub_path, False, dropped)
            elif isinstance(addl, dict):
                _prune(value[key], addl, sub_path, False, dropped)
            elif addl is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(sub_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", False, dropped)


# --- validation ----------------------------------------------------------------------


def validate(obj: Any, schema: Schema) -> list[errors.Cause]:
    """Every violation of ``schema`` by ``obj``, as field causes (mirrors kube-openapi)."""
    out: list[errors.Cause] = []
    top = dict(obj) if isinstance(obj, dict) else obj
    if isinstance(top, dict):
        # metadata is ObjectMeta, validated by the generic store; apiVersion/kind are fixed.
        props = schema.get("properties") or {}
        for key in ("metadata", "apiVersion", "kind"):
            if key not in props:
                top.pop(key, None)
        meta_schema = props.get("metadata")
        if isinstance(meta_schema, dict) and isinstance(top.get("metadata"), dict):
            # Only name/generateName restrictions are allowed: check just those.
            sub = {k: v for k, v in top["metadata"].items() if k in ("name", "generateName")}
            top["metadata"] = sub
    _validate(top, schema, "", out)
    return out


def _validate(value: Any, schema: Schema, path: str, out: list[errors.Cause]) -> None:
    name = path or "."
    if value is None:
        if schema.get("nullable") is True:
            return
        typ = schema.get("type")
        if typ:
            out.append(
                errors.Cause(
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {name} in body must be of type {typ}: "null"',
                    path,
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string") is True:
        if _json_type(value) not in ("integer", "string"):
            got = _json_type(value)
            out.append(
                errors.Cause(
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{got}": {name} in body must be of type integer,string: "{got}"',
                    path,
                )
            )
            return
    typ = schema.get("type")
    if typ:
        got = _json_type(value)
        ok = got == typ or (typ == "number" and got == "integer")
        if not ok:
            out.append(
                errors.Cause(
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{got}": {name} in body must be of type {typ}: "{got}"',
                    path,
                )
            )
            return
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        allowed = [v if isinstance(v, str) else json.dumps(v) for v in schema["enum"]]
        shown = ", ".join(json.dumps(a) for a in allowed)
        out.append(
            errors.Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {_show(value)}: supported values: {shown}",
                path,
            )
        )
    if isinstance(value, str):
        _string(value, schema, path, name, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, schema, path, name, out)
    elif isinstance(value, list):
        _array(value, schema, path, name, out)
    elif isinstance(value, dict):
        _object(value, schema, path, name, out)


def _string(value: str, schema: Schema, path: str, name: str, out: list[errors.Cause]) -> None:
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        out.append(
            errors.Cause(
                "FieldValueTooLong", f"Too long: may not be more than {max_len} bytes", path
            )
        )
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(value) < min_len:
        out.append(_invalid(path, value, f"{name} in body should be at least {min_len} chars long"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True
        if not matched:
            out.append(_invalid(path, value, f"{name} in body should match '{pattern}'"))


def _number(
    value: int | float, schema: Schema, path: str, name: str, out: list[errors.Cause]
) -> None:
    maximum = schema.get("maximum")
    if isinstance(maximum, int | float):
        if schema.get("exclusiveMaximum") is True and value >= maximum:
            out.append(_invalid(path, value, f"{name} in body should be less than {_num(maximum)}"))
        elif value > maximum:
            out.append(
                _invalid(
                    path, value, f"{name} in body should be less than or equal to {_num(maximum)}"
                )
            )
    minimum = schema.get("minimum")
    if isinstance(minimum, int | float):
        if schema.get("exclusiveMinimum") is True and value <= minimum:
            out.append(
                _invalid(path, value, f"{name} in body should be greater than {_num(minimum)}")
            )
        elif value < minimum:
            out.append(
                _invalid(
                    path,
                    value,
                    f"{name} in body should be greater than or equal to {_num(minimum)}",
                )
            )
    mult = schema.get("multipleOf")
    if isinstance(mult, int | float) and mult and (value / mult) != int(value / mult):
        out.append(_invalid(path, value, f"{name} in body should be a multiple of {_num(mult)}"))


def _array(value: list[Any], schema: Schema, path: str, name: str, out: list[errors.Cause]) -> None:
    max_items = schema.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        out.append(
            errors.Cause(
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {max_items} items",
                path,
            )
        )
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and len(value) < min_items:
        out.append(
            _invalid(path, len(value), f"{name} in body should have at least {min_items} items")
        )
    if schema.get("x-kubernetes-list-type") == "set" or schema.get("uniqueItems") is True:
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                out.append(errors.duplicate(f"{path}[{i}]", item))
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", out)


def _object(
    value: dict[str, Any], schema: Schema, path: str, name: str, out: list[errors.Cause]
) -> None:
    for req in schema.get("required") or []:
        if req not in value:
            out.append(errors.required(f"{path}.{req}" if path else req))
    max_props = schema.get("maxProperties")
    if isinstance(max_props, int) and len(value) > max_props:
        out.append(
            errors.Cause(
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {max_props} items",
                path,
            )
        )
    min_props = schema.get("minProperties")
    if isinstance(min_props, int) and len(value) < min_props:
        out.append(
            _invalid(path, value, f"{name} in body should have at least {min_props} properties")
        )
    props = schema.get("properties") or {}
    addl = schema.get("additionalProperties")
    for key, sub in value.items():
        sub_path = f"{path}.{key}" if path else key
        if key in props:
            _validate(sub, props[key], sub_path, out)
        elif isinstance(addl, dict):
            _validate(sub, addl, sub_path, out)


# --- structural schema check (CRD create/update) -------------------------------------


def structural_errors(schema: Any, path: str) -> list[errors.Cause]:
    """Why ``schema`` is not structural (mirrors ``schema.ValidateStructural``)."""
    out: list[errors.Cause] = []
    if not isinstance(schema, dict):
        return [errors.required(path)]
    if schema.get("type") != "object":
        if not schema.get("type"):
            out.append(
                errors.Cause(
                    "FieldValueRequired",
                    "Required value: must not be empty at the root",
                    f"{path}.type",
                )
            )
        else:
            out.append(
                errors.Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{schema.get("type")}": supported values: "object"',
                    f"{path}.type",
                )
            )
    _structural(schema, path, out, root=True)
    meta = (schema.get("properties") or {}).get("metadata")
    if isinstance(meta, dict):
        for key in meta:
            if key not in ("type", "properties", "description"):
                out.append(
                    errors.forbidden_field(
                        f"{path}.properties[metadata].{key}",
                        "must not be specified for metadata at the root",
                    )
                )
        for key in meta.get("properties") or {}:
            if key not in ("name", "generateName"):
                out.append(
                    errors.forbidden_field(
                        f"{path}.properties[metadata].properties[{key}]",
                        "must not be specified for metadata at the root",
                    )
                )
    return out


def _structural(schema: Schema, path: str, out: list[errors.Cause], *, root: bool = False) -> None:
    for key in _FORBIDDEN:
        if key in schema:
            out.append(errors.forbidden_field(f"{path}.{key}", f"{key} is forbidden"))
    typ = schema.get("type")
    lenient = schema.get("x-kubernetes-int-or-string") is True or (
        schema.get("x-kubernetes-preserve-unknown-fields") is True
    )
    if not root and not typ and not lenient:
        out.append(
            errors.Cause(
                "FieldValueRequired",
                "Required value: must not be empty for specified object fields",
                f"{path}.type",
            )
        )
    if typ and typ not in _TYPES:
        out.append(errors.unsupported_value(f"{path}.type", typ, list(_TYPES)))
    if schema.get("x-kubernetes-int-or-string") is True and typ:
        out.append(
            errors.forbidden_field(
                f"{path}.type", "must be empty if x-kubernetes-int-or-string is true"
            )
        )
    if "properties" in schema and "additionalProperties" in schema:
        out.append(
            errors.forbidden_field(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if typ == "array" and not isinstance(schema.get("items"), dict):
        out.append(
            errors.Cause("FieldValueRequired", "Required value: must be specified", f"{path}.items")
        )
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            _structural(sub, f"{path}.properties[{key}]", out)
    if isinstance(schema.get("items"), dict):
        _structural(schema["items"], f"{path}.items", out)
    if isinstance(schema.get("additionalProperties"), dict):
        _structural(schema["additionalProperties"], f"{path}.additionalProperties", out)
    for comb in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(comb) or []):
            if isinstance(sub, dict) and "type" in sub:
                out.append(
                    errors.forbidden_field(
                        f"{path}.{comb}[{i}].type", "must be empty to be structural"
                    )
                )
