"""Kubernetes strategic merge patch (SMP), applied server side.

Mirrors ``StrategicMergeMapPatch`` in apimachinery
``pkg/util/strategicpatch/patch.go`` (the "apply" half; we never compute
patches, kubectl does). The patch metadata that Go reads from struct tags
comes here from the OpenAPI v2 ``definitions`` through :class:`SchemaResolver`
(the vendor extensions ``x-kubernetes-patch-strategy`` and
``x-kubernetes-patch-merge-key``, as upstream's ``PatchMetaFromOpenAPI``).

Data flow of :func:`strategic_merge_patch`::

    deep copies ──► _merge_map(original, patch, schema)
                      ├─ $patch            replace | delete | merge (whole map)
                      ├─ $retainKeys       drop original keys not listed
                      ├─ $setElementOrder  merge that list, then order it
                      ├─ plain keys        null deletes; maps recurse; lists by strategy
                      └─ $deleteFromPrimitiveList/<f>  last, removes scalars
                  ──► _strip (safety net: no directive survives)

Lists whose field says ``patchStrategy: merge`` merge element-wise by the
merge key (or as a set for scalars); every other list is atomic. Where the
schema has no entry (unknown fields, custom resources) ``schema`` is None and
the patch degrades to JSON merge-patch semantics, directives still honoured.

Deliberate differences from upstream, all on inputs kubectl never produces:
``$patch: merge`` in a map is accepted as a plain merge (upstream errors);
``{"$patch": "delete"}`` removes the key instead of leaving ``{}``; and values
new to the object have their own directives applied rather than dropped.
Malformed directives raise :class:`microkube.errors.BadRequest`, lists of
lists :class:`microkube.errors.Invalid` (apiserver's
``interpretStrategicMergePatchError``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from microkube import errors

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER_PREFIX = "$setElementOrder"
DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList"

_STRATEGY_EXT = "x-kubernetes-patch-strategy"
_MERGE_KEY_EXT = "x-kubernetes-patch-merge-key"


class SchemaResolver:
    """Navigates OpenAPI v2 ``definitions`` for patch metadata.

    A resolver stands for one field: ``patch_strategy`` and ``merge_key`` come
    from that field's property schema (where the extensions live), while
    :meth:`field` and :meth:`items` navigate the ``$ref`` it points at.
    """

    __slots__ = ("_defs", "_schema", "merge_key", "patch_strategy")

    def __init__(self, definitions: Mapping[str, Any], root: str) -> None:
        if root not in definitions:
            raise KeyError(f"no OpenAPI definition named {root!r}")
        self._bind(definitions, {"$ref": f"#/definitions/{root}"})

    @classmethod
    def _of(cls, definitions: Mapping[str, Any], schema: Mapping[str, Any]) -> SchemaResolver:
        node = cls.__new__(cls)
        node._bind(definitions, schema)
        return node

    def _bind(self, definitions: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
        self._defs = definitions
        target = self._deref(schema)
        self.patch_strategy: str = str(schema.get(_STRATEGY_EXT) or target.get(_STRATEGY_EXT) or "")
        self.merge_key: str = str(schema.get(_MERGE_KEY_EXT) or target.get(_MERGE_KEY_EXT) or "")
        self._schema = target

    def _deref(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        for _ in range(64):  # bounded: a reference cycle must not hang a request
            ref = schema.get("$ref")
            if isinstance(ref, str):
                found = self._defs.get(ref.rsplit("/", 1)[-1])
                schema = found if isinstance(found, Mapping) else {}
                continue
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
                schema = all_of[0]
                continue
            break
        return schema

    def field(self, name: str) -> SchemaResolver | None:
        """The resolver of property ``name``, or of map values; None if unknown."""
        props = self._schema.get("properties")
        if isinstance(props, Mapping) and isinstance(props.get(name), Mapping):
            return SchemaResolver._of(self._defs, props[name])
        extra = self._schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            return SchemaResolver._of(self._defs, extra)
        return None

    def items(self) -> SchemaResolver | None:
        """The resolver of this array's elements; None if not an array."""
        items = self._schema.get("items")
        return SchemaResolver._of(self._defs, items) if isinstance(items, Mapping) else None


class _Deleted:
    """Marker returned by a map carrying ``$patch: delete``."""


_DELETED = _Deleted()


def strategic_merge_patch(
    obj: Mapping[str, Any], patch: Any, schema: SchemaResolver | None
) -> dict[str, Any]:
    """Apply a strategic merge patch to ``obj`` and return a new object.

    Args:
        obj: the current object (not modified).
        patch: the decoded patch body; must be a JSON object.
        schema: resolver of the object's root definition, or None for kinds
            without one (JSON merge semantics then).

    Raises:
        errors.BadRequest: the patch is not an object or misuses a directive.
        errors.Invalid: the patch holds lists of lists.
    """
    if not isinstance(patch, dict):
        raise errors.BadRequest("invalid JSON document: a strategic merge patch must be an object")
    result = _merge_map(copy.deepcopy(dict(obj)), copy.deepcopy(patch), schema)
    if isinstance(result, _Deleted):
        return {}
    stripped = _strip(result)
    assert isinstance(stripped, dict)
    return stripped


# ---------------------------------------------------------------- maps


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], schema: SchemaResolver | None
) -> Any:
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch, schema)
        if directive == "delete":
            return _DELETED
        if directive != "merge":
            patch[DIRECTIVE] = directive
            raise errors.BadRequest(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, schema)
    deletions: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key.startswith(DELETE_PRIMITIVE_PREFIX):
            deletions.append((_extract_key(key, DELETE_PRIMITIVE_PREFIX), value))
        else:
            _merge_field(original, key, value, schema, delete_list=False)
    for key, value in deletions:
        _merge_field(original, key, value, schema, delete_list=True)
    return original


def _merge_field(
    original: dict[str, Any],
    key: str,
    value: Any,
    schema: SchemaResolver | None,
    *,
    delete_list: bool,
) -> None:
    if value is None:
        original.pop(key, None)
        return
    sub = schema.field(key) if schema is not None else None
    current = original.get(key)
    if key not in original or _kind(current) != _kind(value):
        if not delete_list:
            _set(original, key, _new_value(value, sub))
        return
    if isinstance(current, dict):
        if _strategy(sub)[1] == "replace":
            _set(original, key, _new_value(value, sub))
        else:
            _set(original, key, _merge_map(current, value, sub))
    elif isinstance(current, list):
        original[key] = _merge_list_field(current, value, sub, delete_list=delete_list)
    else:
        original[key] = value


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, _Deleted):
        target.pop(key, None)
    else:
        target[key] = value


def _new_value(value: Any, schema: SchemaResolver | None) -> Any:
    """A patch value for a field the object lacks: apply its own directives."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        items = schema.items() if schema is not None else None
        out = []
        for element in value:
            if isinstance(element, dict) and DIRECTIVE in element:
                continue  # upstream removeDirectives: such elements never survive
            element = _new_value(element, items)
            if not isinstance(element, _Deleted):
                out.append(element)
        return out
    return value


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list):
        raise errors.BadRequest("invalid patch format of retainKeys")
    kept = {k for k in keep if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_PRIMITIVE_PREFIX, SET_ORDER_PREFIX)):
            continue
        if key not in kept:
            raise errors.BadRequest("invalid patch format of retainKeys")
    for key in [k for k in original if k not in kept]:
        del original[key]


def _apply_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], schema: SchemaResolver | None
) -> None:
    """Mirrors mergePatchIntoOriginal: $setElementOrder > patch order > live order."""
    for directive_key in [k for k in patch if k.startswith(SET_ORDER_PREFIX)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise errors.BadRequest("invalid patch format of setElementOrder list")
        key = _extract_key(directive_key, SET_ORDER_PREFIX)
        live, patched = original.get(key), patch.get(key)
        in_live, in_patch = key in original, key in patch
        if (in_live and not isinstance(live, list)) or (in_patch and not isinstance(patched, list)):
            raise errors.BadRequest(
                f"invalid patch format of setElementOrder list: {key} is not a list"
            )
        live_list: list[Any] = live if isinstance(live, list) else []
        patch_list: list[Any] = patched if isinstance(patched, list) else []
        sub = schema.field(key) if schema is not None else None
        merge_key = sub.merge_key if sub is not None else ""
        _validate_set_order(patch_list, order, merge_key)
        if in_live and in_patch:
            merged = _merge_list_field(live_list, patch_list, sub, delete_list=False)
        elif in_live:
            merged = live_list
        elif in_patch:
            merged = _new_value(patch_list, sub)
        else:
            continue
        patch.pop(key, None)
        kind = _element_kind(live_list, patch_list)
        if kind is None or (kind == "map" and not merge_key):
            original[key] = merged  # nothing to order by
            continue
        ordered, rest = _partition(merged, order, merge_key)
        original[key] = _normalize_order(ordered, rest, order, live_list, merge_key, kind)


def _validate_set_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise errors.BadRequest(f"expected a map, but received {_go(item)}")
        items = [i for i in patch_list if i.get(DIRECTIVE) != "delete"]
    pi = si = 0
    while pi < len(items) and si < len(order):
        if isinstance(items[pi], dict) and DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _merge_key_equal(items[pi], order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(items) and si >= len(order):
        raise errors.BadRequest(
            f"The order in patch list:\n{_go(patch_list)}\n doesn't match "
            f"{SET_ORDER_PREFIX} list:\n{_go(order)}\n"
        )


# ---------------------------------------------------------------- lists


def _merge_list_field(
    live: list[Any], patch: list[Any], schema: SchemaResolver | None, *, delete_list: bool
) -> list[Any]:
    _, strategy = _strategy(schema)
    if strategy == "merge" or delete_list:
        items = schema.items() if schema is not None else None
        merge_key = schema.merge_key if schema is not None else ""
        return _merge_slice(live, patch, items, merge_key, delete_list=delete_list)
    result = _new_value(patch, schema)
    assert isinstance(result, list)
    return result


def _merge_slice(
    live: list[Any],
    patch: list[Any],
    items: SchemaResolver | None,
    merge_key: str,
    *,
    delete_list: bool,
) -> list[Any]:
    kind = _element_kind(live, patch)
    if kind is None:
        return live
    if kind == "scalar":
        if delete_list:
            doomed = {_scalar_key(v) for v in patch}
            return [v for v in live if _scalar_key(v) not in doomed]
        merged = _dedupe(live + patch)
    else:
        if not merge_key:
            raise errors.BadRequest("cannot merge lists without merge key")
        live, patch = _special_elements(live, patch, merge_key, items)
        merged = list(live)
        for element in patch:
            if merge_key not in element:
                raise errors.BadRequest(_no_merge_key(element, merge_key))
            index = _find(merged, merge_key, element[merge_key])
            if index is None:
                new = _new_value(element, items)
                if not isinstance(new, _Deleted):
                    merged.append(new)
            else:
                merged[index] = _merge_map(merged[index], element, items)
    ordered, rest = _partition(merged, patch, merge_key)
    return _normalize_order(ordered, rest, patch, live, merge_key, kind)


def _special_elements(
    live: list[Any], patch: list[Any], merge_key: str, items: SchemaResolver | None
) -> tuple[list[Any], list[Any]]:
    """Apply ``$patch`` list elements; return (live, remaining patch elements)."""
    remaining: list[Any] = []
    replace = False
    for element in patch:
        if DIRECTIVE not in element:
            remaining.append(element)
            continue
        directive = element[DIRECTIVE]
        if directive == "delete":
            if merge_key not in element:
                raise errors.BadRequest(_no_merge_key(element, merge_key))
            value = element[merge_key]
            live = [v for v in live if not _matches(v, merge_key, value)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise errors.BadRequest("merging lists cannot yet be specified in the patch")
        else:
            raise errors.BadRequest(f"unknown patch type: {_go(directive)} in map: {_go(element)}")
    if replace:
        return [_new_value(e, items) for e in remaining], []
    return live, remaining


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Split ``merged`` into (items named in ``by``, server-only items)."""
    named: list[Any] = []
    rest: list[Any] = []
    if merge_key:
        for v in merged:
            if not isinstance(v, dict) or merge_key not in v:
                raise errors.BadRequest(_no_merge_key(v, merge_key))
            (named if _find(by, merge_key, v[merge_key]) is not None else rest).append(v)
    else:
        keys = {_scalar_key(v) for v in by if _kind(v) == "scalar"}
        for v in merged:
            (named if _kind(v) == "scalar" and _scalar_key(v) in keys else rest).append(v)
    return named, rest


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    """Mirrors normalizeElementOrder + mergeSortedSlice."""
    if kind == "map":
        for v in [*patch_items, *server_only, *patch_order]:
            if not isinstance(v, dict) or merge_key not in v:
                raise errors.BadRequest(_no_merge_key(v, merge_key))
    left = _sort_by(server_only, server_order, merge_key, kind)
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:  # new patch items go before the server-only ones, as upstream
                out.append(right[j])
                j += 1
    return out


def _sort_by(values: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    def position(v: Any) -> int:
        index = _index(order, v, merge_key, kind)
        return index if index >= 0 else len(order)

    return sorted(values, key=position)


def _index(values: list[Any], value: Any, merge_key: str, kind: str) -> int:
    if kind == "map":
        wanted = value.get(merge_key) if isinstance(value, dict) else None
        for i, v in enumerate(values):
            got = v.get(merge_key) if isinstance(v, dict) else None
            if _same(got, wanted):
                return i
        return -1
    for i, v in enumerate(values):
        if _same(v, value):
            return i
    return -1


# ---------------------------------------------------------------- helpers


def _strip(value: Any) -> Any:
    """Remove any directive left anywhere (defensive: none should remain)."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in (DIRECTIVE, RETAIN_KEYS)
            and not k.startswith((SET_ORDER_PREFIX + "/", DELETE_PRIMITIVE_PREFIX + "/"))
        }
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and DIRECTIVE in v)]
    return value


def _strategy(schema: SchemaResolver | None) -> tuple[bool, str]:
    """(retainKeys?, other strategy) as extractRetainKeysPatchStrategy."""
    if schema is None or not schema.patch_strategy:
        return False, ""
    parts = schema.patch_strategy.split(",")
    if len(parts) == 1:
        return (True, "") if parts[0] == "retainKeys" else (False, parts[0])
    if len(parts) == 2 and "retainKeys" in parts:
        return True, parts[1] if parts[0] == "retainKeys" else parts[0]
    raise errors.InternalError(f"unexpected patch strategy: {parts}")


def _extract_key(key: str, prefix: str) -> str:
    head, sep, tail = key.partition("/")
    if not sep or head != prefix:
        if prefix == DELETE_PRIMITIVE_PREFIX:
            raise errors.BadRequest("invalid patch format of primitive list")
        raise errors.BadRequest("invalid patch format of setElementOrder list")
    return tail


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _element_kind(*lists: list[Any]) -> str | None:
    """'map' or 'scalar' for the elements of ``lists``; None if all empty."""
    found: str | None = None
    for values in lists:
        for v in values:
            kind = _kind(v)
            if kind == "list":
                raise errors.Invalid("lists of lists are not supported")
            if found is not None and kind != found:
                raise errors.BadRequest(f"list element types are not identical: {_go(list(lists))}")
            found = kind
    return found


def _scalar_key(value: Any) -> tuple[str, Any]:
    """Go interface equality: 1, 1.0 equal; true and 1 or "1" not."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    return (type(value).__name__, value)


def _same(a: Any, b: Any) -> bool:
    if _kind(a) == "scalar" and _kind(b) == "scalar":
        return _scalar_key(a) == _scalar_key(b)
    return bool(a == b)


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[tuple[str, Any]] = set()
    out = []
    for v in values:
        key = _scalar_key(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _matches(element: Any, merge_key: str, value: Any) -> bool:
    return isinstance(element, dict) and merge_key in element and _same(element[merge_key], value)


def _find(values: list[Any], merge_key: str, value: Any) -> int | None:
    for i, v in enumerate(values):
        if _matches(v, merge_key, value):
            return i
    return None


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for side in (left, right):
        if not isinstance(side, dict) or merge_key not in side:
            raise errors.BadRequest(_no_merge_key(side, merge_key))
    return _same(left[merge_key], right[merge_key])


def _no_merge_key(element: Any, merge_key: str) -> str:
    return f"map: {_go(element)} does not contain declared merge key: {merge_key}"


def _go(value: Any) -> str:
    """Render like Go's %v of decoded JSON, so messages match upstream's."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
