"""Structural types for server-side apply, read from OpenAPI v2 ``definitions``.

Mirrors what kube-openapi's ``schemaconv`` feeds structured-merge-diff: every
schema node becomes an :class:`Atom` that is a scalar, a map (a struct with
declared fields and/or free-form values) or a list, each either *atomic*
(owned and replaced as a whole) or *granular*. List rules, in upstream order:

1. ``x-kubernetes-list-type``: ``atomic``, ``set``, or ``map`` keyed by
   ``x-kubernetes-list-map-keys``;
2. else ``x-kubernetes-patch-strategy`` ``merge``: a map list keyed by
   ``x-kubernetes-patch-merge-key``, or a set without one;
3. else atomic.

Maps are granular unless ``x-kubernetes-map-type: atomic``. Our generated
definitions come from the Python client models, which lost the
``+structType=atomic`` markers, so the few upstream atomic structs are listed
here (``_ATOMIC_STRUCTS``); likewise key defaults (``protocol`` = ``TCP``).

Objects without a schema (custom resources without one, or unknown fields)
use upstream's *deduced* type: maps granular, lists atomic.

We do not reuse ``strategicmerge.SchemaResolver``: it exposes only the patch
strategy and merge key, not list types, map types, ``required`` or defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Type references are raw schema dicts, or one of these two markers.
DEDUCED = "__untyped_deduced_"
UNTYPED = "__untyped_atomic_"
TypeRef = Any

_ATOMIC_STRUCTS = frozenset(
    {
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "io.k8s.api.core.v1.NodeSelector",
        "io.k8s.api.core.v1.LocalObjectReference",
        "io.k8s.api.core.v1.TypedLocalObjectReference",
        "io.k8s.api.core.v1.ObjectReference",
        "io.k8s.api.core.v1.ConfigMapKeySelector",
        "io.k8s.api.core.v1.SecretKeySelector",
        "io.k8s.api.core.v1.ObjectFieldSelector",
        "io.k8s.api.core.v1.ResourceFieldSelector",
        "io.k8s.api.core.v1.TopologySelectorTerm",
    }
)
_SCALAR_DEFINITIONS = frozenset(
    {
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    }
)
_UNTYPED_DEFINITIONS = frozenset(
    {
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    }
)
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CUSTOM_ROOT = {
    "type": "object",
    "properties": {"metadata": {"$ref": f"#/definitions/{_OBJECT_META}"}},
    "x-kubernetes-preserve-unknown-fields": True,
}
_KEY_DEFAULTS = {"protocol": "TCP"}
_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


@dataclass(frozen=True)
class Atom:
    """One resolved schema node."""

    kind: str  # "scalar", "map" or "list"
    atomic: bool = False
    fields: Mapping[str, TypeRef] = field(default_factory=dict)
    elem: TypeRef = None  # map values / list items; None: no free-form keys
    keys: tuple[str, ...] = ()  # map-list key fields
    associative: bool = False  # set or map list
    key_defaults: Mapping[str, Any] = field(default_factory=dict)

    def field_type(self, name: str) -> tuple[TypeRef, bool]:
        """(type of the child called ``name``, whether it is a declared field)."""
        if name in self.fields:
            return self.fields[name], True
        return (self.elem if self.elem is not None else DEDUCED), False


_SCALAR = Atom("scalar")
_DEDUCED_MAP = Atom("map", elem=DEDUCED)
_UNTYPED_MAP = Atom("map", atomic=True, elem=UNTYPED)
_ATOMIC_LIST = Atom("list", atomic=True, elem=UNTYPED)


class TypeSchema:
    """Resolves type references against one ``definitions`` document."""

    def __init__(self, definitions: Mapping[str, Any] | None) -> None:
        self._defs: Mapping[str, Any] = definitions or {}
        self._cache: dict[int, Atom] = {}
        self._gvk: dict[tuple[str, str, str], str] | None = None
        self._roots: dict[str, Mapping[str, Any]] = {}  # kept alive: atoms are cached by id

    def root(self, api_version: str, kind: str) -> TypeRef:
        """The type of an object of this apiVersion/kind (deduced if unknown)."""
        if self._gvk is None:
            self._gvk = {}
            for name, schema in self._defs.items():
                for gvk in (schema or {}).get("x-kubernetes-group-version-kind") or ():
                    key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
                    self._gvk[key] = name
        group, _, version = api_version.rpartition("/")
        name = self._gvk.get((group, version, kind), "")
        if not name:
            if _OBJECT_META not in self._defs:
                return DEDUCED
            # Custom resources without a schema still have a typed ObjectMeta.
            return self._roots.setdefault("", _CUSTOM_ROOT)
        return self._roots.setdefault(name, {"$ref": f"#/definitions/{name}"})

    def is_typed(self, ref: TypeRef) -> bool:
        return ref not in (DEDUCED, UNTYPED)

    def resolve(self, ref: TypeRef, value: Any = None) -> Atom:
        """The atom for ``ref``; untyped references follow the value's shape."""
        if ref == DEDUCED or ref is None:
            if isinstance(value, list):
                return _ATOMIC_LIST
            return _DEDUCED_MAP if isinstance(value, dict) or value is None else _SCALAR
        if ref == UNTYPED:
            if isinstance(value, list):
                return _ATOMIC_LIST
            return _UNTYPED_MAP if isinstance(value, dict) else _SCALAR
        atom = self._cache.get(id(ref))
        if atom is None:
            atom = self._build(ref)
            self._cache[id(ref)] = atom
        if atom.kind == "deduced":
            return self.resolve(DEDUCED, value)
        return atom

    def _deref(self, schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
        name = ""
        for _ in range(64):
            ref = schema.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                found = self._defs.get(name)
                schema = found if isinstance(found, Mapping) else {}
                continue
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
                schema = all_of[0]
                continue
            break
        return schema, name

    def _build(self, prop: Mapping[str, Any]) -> Atom:
        target, name = self._deref(prop)

        def ext(key: str) -> Any:
            return prop.get(key, target.get(key))

        if name in _SCALAR_DEFINITIONS or ext("x-kubernetes-int-or-string"):
            return _SCALAR
        if name in _UNTYPED_DEFINITIONS:
            return Atom("deduced")
        typ = target.get("type")
        if typ == "array" or "items" in target:
            return self._list(target, ext)
        props = target.get("properties")
        extra = target.get("additionalProperties")
        if isinstance(props, Mapping) or isinstance(extra, Mapping) or typ == "object":
            if not props and not isinstance(extra, Mapping):
                return Atom("deduced")
            atomic = ext("x-kubernetes-map-type") == "atomic" or name in _ATOMIC_STRUCTS
            elem: TypeRef = extra if isinstance(extra, Mapping) else None
            if elem is None and ext("x-kubernetes-preserve-unknown-fields"):
                elem = DEDUCED
            return Atom("map", atomic=atomic, fields=dict(props or {}), elem=elem)
        if typ in _SCALAR_TYPES:
            return _SCALAR
        return Atom("deduced")

    def _list(self, target: Mapping[str, Any], ext: Any) -> Atom:
        items = target.get("items")
        elem: TypeRef = items if isinstance(items, Mapping) else DEDUCED
        list_type = ext("x-kubernetes-list-type")
        keys: tuple[str, ...] = ()
        if list_type is not None:
            associative = list_type in ("set", "map")
            if list_type == "map":
                keys = tuple(ext("x-kubernetes-list-map-keys") or ())
        elif ext("x-kubernetes-patch-strategy") in ("merge", "merge,retainKeys"):
            associative = True
            merge_key = ext("x-kubernetes-patch-merge-key")
            keys = (merge_key,) if isinstance(merge_key, str) else ()
        else:
            associative = False
        defaults: dict[str, Any] = {}
        if keys and isinstance(items, Mapping):
            item_schema, _ = self._deref(items)
            item_props = item_schema.get("properties") or {}
            for key in keys:
                prop = item_props.get(key) or {}
                if "default" in prop:
                    defaults[key] = prop["default"]
                elif key in _KEY_DEFAULTS:
                    defaults[key] = _KEY_DEFAULTS[key]
        return Atom(
            "list",
            atomic=not associative,
            elem=elem,
            keys=keys,
            associative=associative,
            key_defaults=defaults,
        )

    def zero_object(self, ref: TypeRef) -> dict[str, Any]:
        """Approximates the Go zero value the apiserver compares a create against.

        Non-pointer struct fields (``metadata``, ``spec``, ``status``, required
        structs, templates and strategies) exist in it, so a create does not
        mark them with ``"."`` in managedFields, exactly as upstream.
        """
        if not self.is_typed(ref):
            return {}
        return self._zero(ref, top=True, depth=0)

    def _zero(self, ref: TypeRef, *, top: bool, depth: int) -> dict[str, Any]:
        target, _ = self._deref(ref)
        out: dict[str, Any] = {}
        required = set(target.get("required") or ())
        for name, prop in (target.get("properties") or {}).items():
            if depth > 8:
                break
            always = name in ("metadata", "spec", "status") if top else name in _VALUE_STRUCTS
            if not (always or name in required):
                continue
            atom = self.resolve(prop)
            if atom.kind == "map" and atom.fields and not atom.atomic:
                out[name] = self._zero(prop, top=False, depth=depth + 1)
            else:
                out[name] = None  # Go marshals a nil slice, map or pointer as null
        return out


_VALUE_STRUCTS = frozenset({"metadata", "template", "strategy", "updateStrategy", "spec"})
