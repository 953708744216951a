"""Server-side apply and ``metadata.managedFields`` bookkeeping (pure functions).

Mirrors the apiserver's field manager chain
(``k8s.io/apimachinery/pkg/util/managedfields/internal``) over
structured-merge-diff's ``merge.Updater``::

    last-applied updater/manager   kubectl SSA takes over client-side apply fields
    cap managers                   at most 10 Update entries ("ancient-changes")
    managed-fields updater         timestamps; Update entries merged per manager
    strip meta                     apiVersion, kind, metadata.{name,uid,...} never owned
    Updater.Apply / Update         merge, prune, conflicts, ownership moves

Every write records which manager set which fields. ``apply`` merges an
applied configuration into the live object, prunes fields the applier owned
before but no longer applies (unless someone else owns them), and refuses to
change fields owned by other managers unless ``force``. ``update_managed_fields``
records non-apply writes: the writer takes every field it added or changed,
silently, from whoever owned it.

A manager is identified as upstream does: Apply entries by (manager,
subresource), Update entries also by operation and apiVersion.
Everything is deterministic given ``now``; dry-run is the caller's business.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from microkube import errors
from microkube.objects import fieldpath, managedfields, typedvalue, typeschema
from microkube.objects.fieldpath import FieldSet
from microkube.objects.managedfields import ManagerId, Managers, VersionedSet

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIELD_MANAGER_MAX_LENGTH = 128
BEFORE_FIRST_APPLY = "before-first-apply"
_TEMP = ManagerId("current-operation", "Update", "", "")

# Mirrors stripmeta.go: never owned by anybody.
_STRIP: FieldSet = {
    (fieldpath.field("apiVersion"),),
    (fieldpath.field("kind"),),
    (fieldpath.field("metadata"),),
    *(
        (fieldpath.field("metadata"), fieldpath.field(name))
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    ),
}


def default_manager(user_agent: str) -> str:
    """Upstream ``prefixFromUserAgent``: the user agent up to the first ``/``.

    E.g. ``kubectl/v1.32.4 (linux/amd64) kubernetes/...`` → ``kubectl``;
    unprintable characters dropped, cut at 128 bytes.
    """
    out = ""
    size = 0
    for ch in user_agent.split("/", 1)[0]:
        if not ch.isprintable():  # same classes as Go's unicode.IsPrint
            continue
        n = len(ch.encode())
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
        size += n
    return out


def _as_schema(schema: Any) -> typeschema.TypeSchema:
    if isinstance(schema, typeschema.TypeSchema):
        return schema
    return typeschema.TypeSchema(schema if isinstance(schema, Mapping) else None)


def _ignored(subresource: str) -> FieldSet:
    # Mirrors the strategies' reset fields: status is not the main resource's to
    # set, and a status write does not own the spec.
    if subresource == "status":
        return {(fieldpath.field("spec"),)}
    return {(fieldpath.field("status"),)}


def _body(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy without ``metadata.managedFields`` (never part of the sets)."""
    if obj is None:
        return None
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _strip_manager(managers: Managers, mid: ManagerId) -> None:
    vs = managers.get(mid)
    if vs is not None:
        vs.set = vs.set - _STRIP
        if not vs.set:
            del managers[mid]


class _Updater:
    """structured-merge-diff ``merge.Updater`` for one object type."""

    def __init__(self, schema: typeschema.TypeSchema, ref: Any, ignored: FieldSet) -> None:
        self.schema, self.ref, self.ignored = schema, ref, ignored

    def fieldset(self, value: Any) -> FieldSet:
        return typedvalue.to_field_set(self.schema, self.ref, value)

    def ensure(self, paths: FieldSet) -> FieldSet:
        return typedvalue.ensure_named_fields_are_members(self.schema, self.ref, paths)

    def remove(self, value: Any, paths: FieldSet) -> Any:
        return typedvalue.remove_items(self.schema, self.ref, value, paths)

    def update(
        self, old: Any, new: Any, managers: Managers, workflow: ManagerId, *, force: bool
    ) -> typedvalue.Comparison:
        full = typedvalue.compare(self.schema, self.ref, old, new)
        cmp = full.exclude(self.ignored)
        conflicts: dict[ManagerId, FieldSet] = {}
        for mid, vs in managers.items():
            if mid == workflow:
                continue
            clash = vs.set & (cmp.modified | cmp.added)
            if clash:
                conflicts[mid] = clash
        if conflicts and not force:
            raise _Conflicts(conflicts)
        for mid, vs in list(managers.items()):
            if mid == workflow:
                continue
            vs.set = vs.set - conflicts.get(mid, set()) - cmp.removed
            if not vs.set:
                del managers[mid]
        return full

    def prune(self, merged: Any, managers: Managers, last: FieldSet | None) -> Any:
        """Drop what the applier applied last time but not now, unless owned elsewhere."""
        if not last:
            return merged
        last_e = self.ensure(last)
        pruned = self.remove(merged, last_e)
        # addBackOwnedItems
        managed: FieldSet = set().union(*(vs.set for vs in managers.values()))
        merged_set = self.ensure(self.fieldset(merged))
        pruned_set = self.ensure(self.fieldset(pruned))
        pruned = self.remove(merged, merged_set - (pruned_set | self.ensure(managed)))
        # addBackDanglingItems
        pruned_set = self.ensure(self.fieldset(pruned))
        return self.remove(merged, (merged_set - pruned_set) & last_e)


class _Conflicts(Exception):
    def __init__(self, conflicts: dict[ManagerId, FieldSet]) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def _conflict_error(conflicts: dict[ManagerId, FieldSet]) -> errors.Conflict:
    """Upstream ``internal.NewConflictError`` (message and causes)."""
    flat = [
        (mid, path)
        for mid in sorted(conflicts, key=managedfields.identifier)
        for path in sorted(conflicts[mid], key=fieldpath.path_sort_key)
    ]
    causes = [
        errors.Cause(
            "FieldManagerConflict", f"conflict with {mid.display()}", fieldpath.path_string(p)
        )
        for mid, p in flat
    ]
    if len(flat) == 1:
        mid, p = flat[0]
        message = f"Apply failed with 1 conflict: conflict with {mid.display()}: {fieldpath.path_string(p)}"
    else:
        lines = []
        by_display: dict[str, list[str]] = {}
        for mid, p in flat:
            by_display.setdefault(managedfields.identifier(mid), []).append(
                fieldpath.path_string(p)
            )
        for ident in sorted(by_display):
            lines.append(f"conflicts with {ManagerId.from_identifier(ident).display()}:")
            lines.extend(f"- {p}" for p in by_display[ident])
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return errors.Conflict(message, causes=causes)


def _type_error(obj: Mapping[str, Any], exc: Exception, what: str) -> errors.BadRequest:
    gvk = f"{obj.get('apiVersion', '')}, Kind={obj.get('kind', '')}"
    return errors.BadRequest(f"failed to create typed {what} object ({gvk}): {exc}")


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    schema: Any,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Server-side apply of ``applied`` onto ``live`` by ``manager``.

    Args:
        live: the stored object, or None when apply creates it.
        applied: the applied configuration (already parsed from YAML).
        manager: the ``fieldManager`` query parameter (required for apply).
        force: ``force=true``: take conflicting fields instead of failing.
        schema: OpenAPI v2 ``definitions`` (or a ``TypeSchema``); None = schemaless.
        now: RFC 3339 time stamped on the applier's managedFields entry.
        subresource: "" for the main resource, "status" for ``/status``.

    Returns:
        The new object with ``metadata.managedFields`` updated.

    Raises:
        errors.Conflict: fields owned by others would change (and not ``force``).
        errors.BadRequest: the configuration carries managedFields or does not fit
            its schema.
    """
    meta = applied.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise errors.BadRequest("metadata.managedFields must be nil")
    types = _as_schema(schema)
    api_version = str(applied.get("apiVersion", "") or (live or {}).get("apiVersion", ""))
    kind = str(applied.get("kind", "") or (live or {}).get("kind", ""))
    ref = types.root(api_version, kind)
    live_body = _body(live) if live is not None else {}
    managers = _live_managers(types, ref, live, live_body, api_version, subresource)
    config = _body(applied) or {}
    mid = ManagerId(manager, "Apply", "", subresource)
    try:
        try:
            result, managers = _apply(
                types,
                ref,
                live_body,
                config,
                managers,
                mid,
                api_version,
                force=force,
                subresource=subresource,
            )
        except _Conflicts as exc:
            allowed = _allowed_from_last_applied(types, ref, live) if manager == "kubectl" else None
            if allowed is None:
                raise _conflict_error(exc.conflicts) from None
            remaining = {m: s - allowed for m, s in exc.conflicts.items()}
            remaining = {m: s for m, s in remaining.items() if s}
            if remaining:
                raise _conflict_error(remaining) from None
            managers = _live_managers(types, ref, live, live_body, api_version, subresource)
            result, managers = _apply(
                types,
                ref,
                live_body,
                config,
                managers,
                mid,
                api_version,
                force=True,
                subresource=subresource,
            )
    except typedvalue.SchemaError as exc:
        raise _type_error(applied, exc, "patch") from exc
    if mid in managers:
        managers[mid].time = now
    if (
        manager == "kubectl"
        and live is not None
        and LAST_APPLIED in ((live.get("metadata") or {}).get("annotations") or {})
    ):
        result.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = (
            _last_applied(applied)
        )
    managedfields.cap_update_managers(managers)
    return _finish(live, result, managers)


def _live_managers(
    types: typeschema.TypeSchema,
    ref: Any,
    live: Mapping[str, Any] | None,
    live_body: Any,
    api_version: str,
    subresource: str,
) -> Managers:
    """The live object's managers; an untracked object is owned by ``before-first-apply``.

    Mirrors upstream: applying to an object without managedFields first gives
    every existing field to a ``before-first-apply`` Update entry.
    """
    managers = managedfields.decode(live)
    if live is None or managers:
        return managers
    everything = typedvalue.to_field_set(types, ref, live_body)
    owned = fieldpath.recursive_difference(everything, _ignored(subresource)) - _STRIP
    if owned:
        mid = ManagerId(BEFORE_FIRST_APPLY, "Update", api_version, "")
        managers[mid] = VersionedSet(owned, api_version, applied=False)
    return managers


def _apply(
    types: typeschema.TypeSchema,
    ref: Any,
    live: Any,
    config: Any,
    managers: Managers,
    mid: ManagerId,
    api_version: str,
    *,
    force: bool,
    subresource: str,
) -> tuple[dict[str, Any], Managers]:
    updater = _Updater(types, ref, _ignored(subresource))
    merged = typedvalue.merge(types, ref, live, config)
    previous = managers.get(mid)
    last = set(previous.set) if previous is not None else None
    applied_set = fieldpath.recursive_difference(updater.fieldset(config), updater.ignored)
    managers[mid] = VersionedSet(applied_set, api_version, applied=True)
    merged = updater.prune(merged, managers, last)
    updater.update(live, merged, managers, mid, force=force)
    managers[mid].time = previous.time if previous is not None else None
    _strip_manager(managers, mid)
    return merged, managers


def _allowed_from_last_applied(
    types: typeschema.TypeSchema, ref: Any, live: Mapping[str, Any] | None
) -> FieldSet | None:
    """Fields client-side apply owns per the last-applied annotation (lastappliedmanager.go)."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(LAST_APPLIED)
    if not text or live is None:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != live.get("apiVersion"):
        return None
    try:
        owned = typedvalue.to_field_set(types, ref, last)
        cmp = typedvalue.compare(types, ref, last, _body(live))
    except typedvalue.SchemaError:
        return None
    return owned - cmp.modified - cmp.added - cmp.removed


def _last_applied(applied: Mapping[str, Any]) -> str:
    """Upstream ``buildLastApplied``: the applied object, sans the annotation itself."""
    obj = copy.deepcopy(dict(applied))
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del obj["metadata"]["annotations"]
    return fieldpath._go_json(_sorted(obj))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    operation: str = "Update",
    subresource: str = "",
    now: str,
    schema: Any,
) -> dict[str, Any]:
    """Record a non-apply write (create, update, patch) in ``managedFields``.

    Args:
        old: the stored object, or None for a create.
        new: the object about to be stored.
        manager: ``fieldManager``, or :func:`default_manager` of the User-Agent.
        operation: "Update" (upstream records every non-apply write so).
        subresource: "" or e.g. "status", "scale".
        now: RFC 3339 time for the manager's entry, when it changed anything.
        schema: OpenAPI v2 ``definitions`` (or a ``TypeSchema``); None = schemaless.

    Returns:
        ``new`` (a copy) with ``metadata.managedFields`` set. A client may set
        managedFields itself on the main resource; ``[{}]`` clears them.
    """
    types = _as_schema(schema)
    api_version = str(new.get("apiVersion", "") or (old or {}).get("apiVersion", ""))
    ref = types.root(api_version, str(new.get("kind", "") or (old or {}).get("kind", "")))
    sent = (new.get("metadata") or {}).get("managedFields")
    if sent == [{}] and not subresource:
        result = _body(new) or {}
        return result
    managers = managedfields.decode(new) if sent and not subresource else {}
    if not managers:
        managers = managedfields.decode(old)
    old_body = _body(old) if old is not None else types.zero_object(ref)
    new_body = _body(new) or {}
    updater = _Updater(types, ref, _ignored(subresource))
    mid = ManagerId(manager, operation, api_version, subresource)
    try:
        cmp = updater.update(old_body, new_body, managers, _TEMP, force=True)
    except typedvalue.SchemaError:
        return new_body  # upstream UpdateNoErrors: drop managedFields rather than fail
    own = (cmp.modified | cmp.added) - cmp.removed
    own = fieldpath.recursive_difference(own, updater.ignored) - _STRIP
    if own:
        previous = managers.get(mid)
        merged = own | (previous.set if previous is not None else set())
        managers[mid] = VersionedSet(merged, api_version, applied=False, time=now)
    managedfields.cap_update_managers(managers)
    return _finish(old, new_body, managers)


def _finish(
    old: Mapping[str, Any] | None, result: dict[str, Any], managers: Managers
) -> dict[str, Any]:
    """Encode the managers; a write that only moved timestamps keeps the old ones.

    Mirrors ``IgnoreManagedFieldsTimestampsTransformer``: a no-op write must not
    change the object.
    """
    entries = managedfields.encode(managers)
    old_entries = ((old or {}).get("metadata") or {}).get("managedFields")
    if (
        old is not None
        and isinstance(old_entries, list)
        and _without_times(entries) == _without_times(old_entries)
    ):
        if _body(old) == _body(result):
            entries = copy.deepcopy(old_entries)
    meta = result.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)
    return result


def _without_times(entries: list[Any]) -> list[str]:
    return sorted(
        json.dumps({k: v for k, v in e.items() if k != "time"}, sort_keys=True)
        for e in entries
        if isinstance(e, dict)
    )
