"""Field paths and field sets: the vocabulary of server-side apply ownership.

Mirrors sigs.k8s.io/structured-merge-diff ``fieldpath``. A *path* names one
node of an object: a tuple of *path elements*, each one of

* ``("f", name)``: a field of a map or struct (``f:replicas``);
* ``("k", ((key, value), ...))``: the element of a ``map`` list with these key
  field values, sorted by key name (``k:{"name":"web"}``);
* ``("v", value)``: the element of a ``set`` list equal to value (``v:"a"``);
* ``("i", n)``: the n-th element of a list (only for lists without keys).

Values inside elements are *frozen* (see :func:`freeze`) so paths are hashable.
A *field set* is simply a Python ``set`` of paths. Upstream stores it as a trie
with "members" and "children"; the flat form gives the same algebra (union,
difference, intersection are the plain set operations) and the trie shape is
rebuilt only when encoding ``fieldsV1``: a path that is a member *and* has
descendants is written with the ``".": {}`` marker, exactly as upstream's
``emitContentsV1`` does, and keys are written in upstream's element order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]
FieldSet = set[Path]

_BOOL = "__bool__"
_LIST = "__list__"
_MAP = "__map__"


def freeze(value: Any) -> Any:
    """A hashable, canonical form of a JSON value (bools kept apart from ints)."""
    if isinstance(value, bool):
        return (_BOOL, value)
    if isinstance(value, dict):
        return (_MAP, tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return (_LIST, tuple(freeze(v) for v in value))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def thaw(frozen: Any) -> Any:
    """Inverse of :func:`freeze`."""
    if isinstance(frozen, tuple) and len(frozen) == 2:
        tag, body = frozen
        if tag == _BOOL:
            return body
        if tag == _MAP:
            return {k: thaw(v) for k, v in body}
        if tag == _LIST:
            return [thaw(v) for v in body]
    return frozen


def field(name: str) -> PathElement:
    return ("f", name)


def key_element(keys: Mapping[str, Any]) -> PathElement:
    return ("k", tuple(sorted((k, freeze(v)) for k, v in keys.items())))


def value_element(value: Any) -> PathElement:
    return ("v", freeze(value))


def index_element(index: int) -> PathElement:
    return ("i", index)


# --- ordering (upstream PathElement.Compare and value.Compare) ---------------

_KIND_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _value_sort_key(frozen: Any) -> tuple[Any, ...]:
    # Upstream order across kinds: numbers < strings < bools < lists < maps < null.
    if frozen is None:
        return (5,)
    if isinstance(frozen, (int, float)):
        return (0, frozen)
    if isinstance(frozen, str):
        return (1, frozen.encode())
    tag, body = frozen
    if tag == _BOOL:
        return (2, body)
    if tag == _LIST:
        return (3, tuple(_value_sort_key(v) for v in body))
    return (4, tuple((k.encode(), _value_sort_key(v)) for k, v in body))


def element_sort_key(pe: PathElement) -> tuple[Any, ...]:
    """Sort key reproducing upstream ``PathElement.Compare``."""
    kind, body = pe
    if kind == "f":
        return (0, body.encode())
    if kind == "k":
        return (1, tuple((k.encode(), _value_sort_key(v)) for k, v in body))
    if kind == "v":
        return (2, _value_sort_key(body))
    return (3, body)


def path_sort_key(path: Path) -> tuple[Any, ...]:
    return tuple(element_sort_key(pe) for pe in path)


# --- text forms ----------------------------------------------------------------


def _go_json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _to_string(frozen: Any) -> str:
    """Upstream ``value.ToString``: strings quoted, others as Go prints them."""
    value = thaw(frozen)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_to_string(freeze(v)) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_to_string(freeze(v))}" for k, v in value.items()) + "}"
    return str(value)


def element_string(pe: PathElement) -> str:
    """Upstream ``PathElement.String``: ``.f``, ``[name="web"]``, ``[=v]``, ``[0]``."""
    kind, body = pe
    if kind == "f":
        return "." + str(body)
    if kind == "k":
        return "[" + ",".join(f"{k}={_to_string(v)}" for k, v in body) + "]"
    if kind == "v":
        return f"[={_to_string(body)}]"
    return f"[{body}]"


def path_string(path: Path) -> str:
    """Upstream ``Path.String``, e.g. ``.spec.containers[name="web"].image``."""
    return "".join(element_string(pe) for pe in path)


def serialize_element(pe: PathElement) -> str:
    """The ``fieldsV1`` key of one element: ``f:``, ``k:``, ``v:`` or ``i:``."""
    kind, body = pe
    if kind == "f":
        return "f:" + str(body)
    if kind == "k":
        return "k:" + _go_json({k: thaw(v) for k, v in body})
    if kind == "v":
        return "v:" + _go_json(thaw(body))
    return f"i:{body}"


def deserialize_element(text: str) -> PathElement:
    """Parse one ``fieldsV1`` key; raises ValueError when malformed."""
    prefix, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"invalid path element {text!r}")
    if prefix == "f":
        return ("f", rest)
    if prefix == "k":
        keys = json.loads(rest)
        if not isinstance(keys, dict):
            raise ValueError(f"invalid key element {text!r}")
        return key_element(keys)
    if prefix == "v":
        return value_element(json.loads(rest))
    if prefix == "i":
        return index_element(int(rest))
    raise ValueError(f"unknown path element prefix in {text!r}")


# --- fieldsV1 ------------------------------------------------------------------


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode a field set as upstream's ``fieldsV1`` JSON object.

    A node that is itself in the set and also has children gets ``".": {}``
    first; keys follow upstream element order (fields, keys, values, indexes).
    """
    trie: dict[PathElement, Any] = {}
    members: set[tuple[PathElement, ...]] = set()
    for path in paths:
        if not path:
            continue
        members.add(path)
        node = trie
        for pe in path:
            node = node.setdefault(pe, {})
    return _emit(trie, (), members)


def _emit(node: dict[PathElement, Any], prefix: Path, members: set[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if prefix and node and prefix in members:
        out["."] = {}
    for pe in sorted(node, key=element_sort_key):
        out[serialize_element(pe)] = _emit(node[pe], (*prefix, pe), members)
    return out


def from_fields_v1(data: Any) -> FieldSet:
    """Decode ``fieldsV1`` into a field set; raises ValueError when malformed."""
    out: FieldSet = set()
    if not isinstance(data, Mapping):
        raise ValueError("fieldsV1 must be a JSON object")
    _collect(data, (), out)
    return out


def _collect(node: Mapping[str, Any], prefix: Path, out: FieldSet) -> None:
    for key, child in node.items():
        if key == ".":
            if prefix:
                out.add(prefix)
            continue
        if not isinstance(child, Mapping):
            raise ValueError(f"fieldsV1 value at {key!r} must be an object")
        path = (*prefix, deserialize_element(key))
        if not child:
            out.add(path)
        else:
            _collect(child, path, out)


# --- set algebra beyond the builtins --------------------------------------------


def recursive_difference(paths: FieldSet, remove: FieldSet) -> FieldSet:
    """Paths of ``paths`` neither in ``remove`` nor below a path in ``remove``."""
    if not remove:
        return set(paths)
    return {p for p in paths if not any(p[:n] in remove for n in range(1, len(p) + 1))}


def with_prefix(paths: Iterable[Path], pe: PathElement) -> FieldSet:
    """Upstream ``Set.WithPrefix``: the paths below ``pe``, with ``pe`` cut off."""
    return {p[1:] for p in paths if len(p) > 1 and p[0] == pe}
