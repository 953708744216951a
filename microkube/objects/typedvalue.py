"""Schema-aware walks over raw objects: field sets, compare, merge, remove.

Mirrors structured-merge-diff ``typed``: ``tofieldset.go``, ``compare.go`` /
``merge.go`` (one walker serves both, as upstream's Compare was built on the
merge walker), ``remove.go`` and ``Set.EnsureNamedFieldsAreMembers``.

Rules worth knowing (all upstream):

* a scalar, an atomic list/map, and a container empty on both sides are
  *leaves*: compared and replaced whole;
* ``to_field_set`` records leaves, every list item (``k:``/``v:``) and every
  free-form map key, but not declared struct fields that hold children;
* ``compare`` reports a non-leaf node as added/removed when it appears or
  disappears (hence the ``"."`` markers of Update entries);
* merged lists keep the applied order for shared items and interleave the
  live-only ones where they were.

``ABSENT`` marks a missing value, distinct from an explicit ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from microkube.objects import fieldpath, typeschema
from microkube.objects.fieldpath import FieldSet, Path, PathElement


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class SchemaError(ValueError):
    """The value does not fit the schema (e.g. a map-list item without its key)."""


def _pe_for_item(atom: typeschema.Atom, index: int, item: Any, path: Path) -> PathElement:
    """Upstream ``listItemToPathElement``."""
    if not atom.associative:
        return fieldpath.index_element(index)
    if not atom.keys:
        return fieldpath.value_element(item)
    if not isinstance(item, dict):
        raise SchemaError(
            f"{fieldpath.path_string(path)}: element {index}: associative list with keys "
            "may not have non-map elements"
        )
    keys: dict[str, Any] = {}
    for name in atom.keys:
        if name in item:
            keys[name] = item[name]
        elif name in atom.key_defaults:
            keys[name] = atom.key_defaults[name]
        else:
            raise SchemaError(
                f"{fieldpath.path_string(path)}: element {index}: associative list with keys "
                f'has an element that omits key field "{name}" (and doesn\'t have default value)'
            )
    return fieldpath.key_element(keys)


def _index(atom: typeschema.Atom, items: list[Any], path: Path) -> list[tuple[PathElement, Any]]:
    seen: set[PathElement] = set()
    out = []
    for i, item in enumerate(items):
        pe = _pe_for_item(atom, i, item, path)
        if pe not in seen:  # later duplicates are ignored, as upstream
            seen.add(pe)
            out.append((pe, item))
    return out


# --- to_field_set ---------------------------------------------------------------


def to_field_set(schema: typeschema.TypeSchema, ref: Any, value: Any) -> FieldSet:
    """Every leaf, list item and free-form key mentioned by ``value``."""
    out: FieldSet = set()
    _tfs(schema, ref, value, (), out)
    return out


def _tfs(schema: typeschema.TypeSchema, ref: Any, value: Any, path: Path, out: FieldSet) -> None:
    atom = schema.resolve(ref, value)
    if atom.kind == "scalar" or atom.atomic:
        if path:
            out.add(path)
        return
    if atom.kind == "list":
        if isinstance(value, list):
            for pe, item in _index(atom, value, path):
                child = (*path, pe)
                _tfs(schema, atom.elem, item, child, out)
                out.add(child)
        elif value is not None and path:
            out.add(path)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            child_ref, declared = atom.field_type(key)
            child = (*path, fieldpath.field(key))
            _tfs(schema, child_ref, item, child, out)
            if not declared:
                out.add(child)
    elif value is not None and path:
        out.add(path)


# --- compare / merge ------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def exclude(self, ignored: FieldSet) -> Comparison:
        """Upstream ``Comparison.ExcludeFields``."""
        return Comparison(
            fieldpath.recursive_difference(self.added, ignored),
            fieldpath.recursive_difference(self.modified, ignored),
            fieldpath.recursive_difference(self.removed, ignored),
        )


class _Walker:
    def __init__(self, schema: typeschema.TypeSchema, comparison: Comparison | None) -> None:
        self.schema = schema
        self.c = comparison

    def leaf(self, lhs: Any, rhs: Any, path: Path) -> Any:
        if self.c is not None and path:
            if lhs is ABSENT:
                self.c.added.add(path)
            elif rhs is ABSENT:
                self.c.removed.add(path)
            elif fieldpath.freeze(lhs) != fieldpath.freeze(rhs):
                self.c.modified.add(path)
        return rhs if rhs is not ABSENT else lhs

    def walk(self, ref: Any, lhs: Any, rhs: Any, path: Path) -> Any:
        atom = self.schema.resolve(ref, rhs if rhs is not ABSENT and rhs is not None else lhs)
        if atom.kind == "scalar" or atom.atomic:
            return self.leaf(lhs, rhs, path)
        shape = list if atom.kind == "list" else dict
        sides = [v for v in (lhs, rhs) if v is not ABSENT and v is not None]
        if any(not isinstance(v, shape) for v in sides) or not any(sides):
            return self.leaf(lhs, rhs, path)  # mistyped, or empty on both sides
        if atom.kind == "list":
            lv: Any = lhs if isinstance(lhs, list) else []
            rv: Any = rhs if isinstance(rhs, list) else []
            out: Any = self.list_items(atom, lv, rv, path)
        else:
            lv = lhs if isinstance(lhs, dict) else {}
            rv = rhs if isinstance(rhs, dict) else {}
            out = self.map_items(atom, lv, rv, path)
        if self.c is not None and path:
            if lhs is ABSENT:
                self.c.added.add(path)
            elif rhs is ABSENT:
                self.c.removed.add(path)
        return out if out else ABSENT

    def map_items(
        self, atom: typeschema.Atom, lhs: dict[str, Any], rhs: dict[str, Any], path: Path
    ) -> Any:
        out: dict[str, Any] = {}
        for key in [*lhs, *(k for k in rhs if k not in lhs)]:
            child_ref, _ = atom.field_type(key)
            merged = self.walk(
                child_ref, lhs.get(key, ABSENT), rhs.get(key, ABSENT), (*path, fieldpath.field(key))
            )
            if merged is not ABSENT:
                out[key] = merged
        return out

    def list_items(self, atom: typeschema.Atom, lhs: list[Any], rhs: list[Any], path: Path) -> Any:
        """Upstream ``mergingWalker.visitListItems``, order rules included."""
        rhs_pes = _index(atom, rhs, path)
        lhs_pes = _index(atom, lhs, path)
        observed_r = dict(rhs_pes)
        observed_l = dict(lhs_pes)
        shared = [pe for pe, _ in rhs_pes if pe in observed_l]
        next_shared = shared.pop(0) if shared else None
        merged_rhs: set[PathElement] = set()
        out: list[Any] = []

        def item(pe: PathElement, lchild: Any, rchild: Any) -> None:
            merged = self.walk(atom.elem, lchild, rchild, (*path, pe))
            if merged is not ABSENT:
                out.append(merged)

        li = ri = 0
        while li < len(lhs_pes) or ri < len(rhs_pes):
            if li < len(lhs_pes) and ri < len(rhs_pes):
                pe = lhs_pes[li][0]
                if pe == rhs_pes[ri][0]:
                    merged_rhs.add(pe)
                    item(pe, observed_l[pe], observed_r[pe])
                    li += 1
                    ri += 1
                    next_shared = shared.pop(0) if shared else None
                    continue
                if pe in observed_r and next_shared is not None and next_shared != pe:
                    li += 1
                    continue
            if li < len(lhs_pes):
                pe = lhs_pes[li][0]
                if pe not in observed_r:
                    item(pe, lhs_pes[li][1], ABSENT)
                    li += 1
                    continue
                if pe in merged_rhs:
                    li += 1
                    continue
            if ri < len(rhs_pes):
                pe = rhs_pes[ri][0]
                merged_rhs.add(pe)
                item(pe, observed_l.get(pe, ABSENT), observed_r[pe])
                ri += 1
                if next_shared is not None and next_shared == pe:
                    next_shared = shared.pop(0) if shared else None
        return out


def compare(schema: typeschema.TypeSchema, ref: Any, lhs: Any, rhs: Any) -> Comparison:
    """Fields added, modified and removed going from ``lhs`` to ``rhs``."""
    c = Comparison()
    _Walker(schema, c).walk(ref, lhs, rhs, ())
    return c


def merge(schema: typeschema.TypeSchema, ref: Any, lhs: Any, rhs: Any) -> Any:
    """``rhs`` (an applied configuration) merged into ``lhs``; nothing is removed."""
    out = _Walker(schema, None).walk(ref, lhs, rhs, ())
    return {} if out is ABSENT else out


# --- remove_items / ensure_named_fields_are_members --------------------------------


def remove_items(schema: typeschema.TypeSchema, ref: Any, value: Any, paths: FieldSet) -> Any:
    """``value`` without the nodes in ``paths`` (upstream ``RemoveItems``).

    A container emptied by the removal disappears from its parent, as it does
    upstream once the result is decoded into a typed object.
    """
    out = _remove(schema, ref, value, paths, ())
    return {} if out is ABSENT else out


def _remove(
    schema: typeschema.TypeSchema, ref: Any, value: Any, paths: FieldSet, path: Path
) -> Any:
    atom = schema.resolve(ref, value)
    if atom.kind == "scalar" or atom.atomic or not value:
        return value
    if atom.kind == "list" and isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            pe = _pe_for_item(atom, i, item, path)
            if (pe,) in paths:
                continue
            sub = fieldpath.with_prefix(paths, pe)
            if sub:
                item = _remove(schema, atom.elem, item, sub, (*path, pe))
                if item is ABSENT:
                    continue
            items.append(item)
        return items if items else ABSENT
    if atom.kind == "map" and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            pe = fieldpath.field(key)
            if (pe,) in paths:
                continue
            sub = fieldpath.with_prefix(paths, pe)
            if sub:
                item = _remove(schema, atom.field_type(key)[0], item, sub, (*path, pe))
                if item is ABSENT:
                    continue
            out[key] = item
        return out if out else ABSENT
    return value


def ensure_named_fields_are_members(
    schema: typeschema.TypeSchema, ref: Any, paths: FieldSet
) -> FieldSet:
    """Adds every declared struct field that has descendants in ``paths``."""
    out = set(paths)
    seen: dict[Path, Any] = {(): ref}
    for path in paths:
        for n in range(1, len(path)):
            prefix = path[:n]
            if prefix in seen:
                continue
            parent = schema.resolve(seen[path[: n - 1]])
            pe = prefix[-1]
            if pe[0] == "f":
                child_ref, declared = parent.field_type(pe[1])
                if declared and parent.kind == "map":
                    out.add(prefix)
            else:
                child_ref = parent.elem
            seen[prefix] = child_ref
    return out
