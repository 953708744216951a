"""CustomResourceDefinitions: serve the kinds they define, and remove them again.

Mirrors apiextensions-apiserver's establishing, naming and finalizer
controllers folded into one watch loop::

    CRD ADDED/MODIFIED ─► names free? ─► install: one ResourceType per served version
                                          (catalog → routes, discovery, OpenAPI),
                                          strategy with the version schemas,
                                          fieldValidation and managedFields schemas,
                                          printer columns
                        ─► status: NamesAccepted, Established, acceptedNames
    CRD deleting      ─► Terminating ─► delete every custom object ─► drop the
                         cleanup finalizer (the CRD goes) ─► uninstall
    CRD DELETED       ─► uninstall

All versions share one storage prefix (``/registry/<group>/<plural>``, see
``ResourceType.resource_key``); conversion is ``None``: an object read through
another version just has its ``apiVersion`` swapped. :func:`restore` installs
the existing CRDs synchronously at start-up, before the API serves, so custom
resources never flicker to 404 across a restart.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any

from microkube import errors
from microkube.objects import meta
from microkube.resources.kinds import apiextensions
from microkube.resources.registry import DeleteOptions, Registry
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

GROUP = "apiextensions.k8s.io"
Obj = dict[str, Any]
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_MANAGER = "apiextensions-controller"


def crd_type(reg: Registry) -> ResourceType:
    rt = reg.catalog.get(GROUP, "v1", "customresourcedefinitions")
    assert rt is not None
    return rt


def definition_name(group: str, version: str, kind: str) -> str:
    """The OpenAPI name of a CR schema (same rule as ``api.openapi.crd_definition_name``)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def resource_types(crd: Obj) -> list[ResourceType]:
    """One ResourceType per served version of ``crd``."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    storage = apiextensions.storage_version(crd)
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = v.get("subresources") or {}
        out.append(
            ResourceType(
                group,
                v["name"],
                names["kind"],
                names["plural"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(s for s in ("status", "scale") if s in subs),
                singular=names.get("singular") or names["kind"].lower(),
                list_kind=names.get("listKind") or names["kind"] + "List",
                storage_version=f"{group}/{storage}",
            )
        )
    return out


def _schemas(crd: Obj) -> dict[str, Obj]:
    out = {}
    for v in (crd.get("spec") or {}).get("versions") or []:
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(schema, dict):
            out[v["name"]] = schema
    return out


def _field_schema(group: str, kind: str, schemas: dict[str, Obj]) -> Any:
    """managedFields type information: the built-in definitions plus one per version."""
    from microkube.objects.typeschema import TypeSchema
    from microkube.resources import schema as builtin

    defs = dict(builtin.definitions())
    for version, s in schemas.items():
        body = copy.deepcopy(s)
        props = body.setdefault("properties", {})
        props["metadata"] = {"$ref": f"#/definitions/{_OBJECT_META}"}
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        body["x-kubernetes-group-version-kind"] = [
            {"group": group, "version": version, "kind": kind}
        ]
        defs[definition_name(group, version, kind)] = body
    return TypeSchema(defs)


def _installed(reg: Registry) -> dict[str, Obj]:
    """CRD name → what is installed for it (group, plural, kind, versions, fingerprint)."""
    return reg.services.setdefault("crds", {})


def name_conflict(reg: Registry, crd: Obj) -> tuple[str, str] | None:
    """(reason, message) when another kind already uses this CRD's plural or kind."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    me = crd["metadata"]["name"]
    mine = _installed(reg).get(me)
    for rt in reg.catalog:
        if rt.group != group:
            continue
        if mine is not None and rt.plural == mine["plural"] and rt.kind == mine["kind"]:
            continue
        if rt.plural == plural:
            return "PluralConflict", f'"{plural}" is already in use'
        if rt.kind == kind:
            return "KindConflict", f'"{kind}" is already in use'
    return None


def install(reg: Registry, crd: Obj) -> bool:
    """Serve the kind of ``crd`` (idempotent). False when its names are taken."""
    name = crd["metadata"]["name"]
    spec = crd.get("spec") or {}
    fingerprint = json.dumps(spec, sort_keys=True)
    installed = _installed(reg)
    previous = installed.get(name)
    if previous is not None and previous["fingerprint"] == fingerprint:
        return True
    if name_conflict(reg, crd) is not None:
        return False
    if previous is not None:
        uninstall(reg, name)
    group = spec["group"]
    kind = spec["names"]["kind"]
    plural = spec["names"]["plural"]
    schemas = _schemas(crd)
    apiextensions.register_custom(group, kind, schemas)
    for version, schema in schemas.items():
        reg.crd_openapi[f"{group}/{version}/{kind}"] = schema
        reg.crd_openapi[definition_name(group, version, kind)] = schema
    reg.crd_field_schemas[(group, kind)] = _field_schema(group, kind, schemas)
    storage = apiextensions.storage_version(crd)
    columns = []
    for v in spec.get("versions") or []:
        if v.get("name") == storage:
            columns = list(v.get("additionalPrinterColumns") or [])
    reg.services.setdefault("printer-columns", {})[(group, kind)] = columns
    rts = resource_types(crd)
    for rt in rts:
        reg.catalog.register(rt)
    installed[name] = {
        "group": group,
        "plural": plural,
        "kind": kind,
        "versions": list(schemas),
        "fingerprint": fingerprint,
    }
    return True


def uninstall(reg: Registry, name: str) -> None:
    """Stop serving the kind of CRD ``name`` (objects are not touched)."""
    info = _installed(reg).pop(name, None)
    if info is None:
        return
    group, kind = info["group"], info["kind"]
    reg.catalog.unregister(group, info["plural"])
    for version in info["versions"]:
        reg.crd_openapi.pop(f"{group}/{version}/{kind}", None)
        reg.crd_openapi.pop(definition_name(group, version, kind), None)
    reg.crd_field_schemas.pop((group, kind), None)
    reg.services.get("printer-columns", {}).pop((group, kind), None)


def restore(reg: Registry) -> None:
    """Install every stored CRD now (start-up, before the API serves)."""
    for crd in reg.list(crd_type(reg)).items:
        try:
            install(reg, crd)
        except (KeyError, TypeError) as exc:  # a CRD that never validated
            log.warning("crd %s: cannot install: %s", crd["metadata"].get("name"), exc)


# --- status ---------------------------------------------------------------------------


def _condition(ctype: str, status: bool, reason: str, message: str) -> Obj:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": meta.now(),
    }


def _merge_conditions(old: list[Obj], new: list[Obj]) -> list[Obj]:
    by_type = {c.get("type"): c for c in old}
    for c in new:
        prev = by_type.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c = dict(c, lastTransitionTime=prev.get("lastTransitionTime", c["lastTransitionTime"]))
        by_type[c["type"]] = c
    return list(by_type.values())


async def _write_status(
    reg: Registry, name: str, conditions: list[Obj], accepted: Obj | None
) -> None:
    def mutate(obj: Obj) -> Obj | None:
        status = obj.setdefault("status", {})
        before = json.dumps(status, sort_keys=True)
        status["conditions"] = _merge_conditions(list(status.get("conditions") or []), conditions)
        if accepted is not None:
            status["acceptedNames"] = accepted
        if json.dumps(status, sort_keys=True) == before:
            return None
        return obj

    try:
        await reg.guaranteed_update(
            crd_type(reg), "", name, mutate, subresource="status", field_manager=_MANAGER
        )
    except errors.NotFound:
        pass


async def sync(reg: Registry, crd: Obj) -> None:
    """Install ``crd`` and report it in its status (NamesAccepted, Established)."""
    name = crd["metadata"]["name"]
    conflict = name_conflict(reg, crd) if name not in _installed(reg) else None
    if conflict is None and install(reg, crd):
        names = dict((crd.get("spec") or {}).get("names") or {})
        await _write_status(
            reg,
            name,
            [
                _condition("NamesAccepted", True, "NoConflicts", "no conflicts found"),
                _condition(
                    "Established",
                    True,
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            ],
            names,
        )
        return
    reason, message = conflict or ("NameConflict", "names are in use")
    await _write_status(
        reg,
        name,
        [
            _condition("NamesAccepted", False, reason, message),
            _condition("Established", False, "NotAccepted", "not all names are accepted"),
        ],
        None,
    )


async def finalize(reg: Registry, crd: Obj, *, poll: float = 0.2) -> None:
    """Delete every object of a deleting CRD, then let the CRD go."""
    name = crd["metadata"]["name"]
    await _write_status(
        reg,
        name,
        [
            _condition(
                "Terminating",
                True,
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            )
        ],
        None,
    )
    info = _installed(reg).get(name)
    rt = None
    if info is not None:
        rt = next(
            (t for t in reg.catalog if t.group == info["group"] and t.plural == info["plural"]),
            None,
        )
    while rt is not None:
        items = reg.list(rt).items
        if not items:
            break
        for obj in items:
            if meta.is_deleting(obj):
                continue
            m = obj["metadata"]
            try:
                await reg.delete(
                    rt,
                    m.get("namespace", ""),
                    m["name"],
                    DeleteOptions(propagation_policy="Background"),
                )
            except errors.NotFound:
                pass
        await asyncio.sleep(poll)

    def drop_finalizer(obj: Obj) -> Obj | None:
        fins = list(obj["metadata"].get("finalizers") or [])
        if apiextensions.CLEANUP_FINALIZER not in fins:
            return None
        obj["metadata"]["finalizers"] = [f for f in fins if f != apiextensions.CLEANUP_FINALIZER]
        return obj

    try:
        await reg.guaranteed_update(crd_type(reg), "", name, drop_finalizer, field_manager=_MANAGER)
    except errors.NotFound:
        pass
    if reg.try_get(crd_type(reg), "", name) is None:
        uninstall(reg, name)


async def run(reg: Registry) -> None:
    """Watch CRDs forever (the controller task)."""
    crt = crd_type(reg)
    finalizing: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            try:
                async for etype, obj in reg.watch(crt, None, resource_version=""):
                    if etype not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    name = obj["metadata"]["name"]
                    if etype == "DELETED":
                        uninstall(reg, name)
                        continue
                    if meta.is_deleting(obj):
                        task = finalizing.get(name)
                        if task is None or task.done():
                            finalizing[name] = asyncio.create_task(
                                finalize(reg, obj), name=f"crd-finalize-{name}"
                            )
                        continue
                    await sync(reg, obj)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the controller alive
                log.exception("crd controller failed; restarting")
                await asyncio.sleep(1)
    finally:
        for task in finalizing.values():
            task.cancel()
        await asyncio.gather(*finalizing.values(), return_exceptions=True)
