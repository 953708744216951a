"""The OpenAPI documents: ``/openapi/v2`` and ``/openapi/v3`` (index + per group/version).

Why they matter: ``kubectl create -f``/``apply``/``replace`` refuse to run
without OpenAPI; they read ``/openapi/v3`` to learn that the server does field
validation (a PATCH operation carrying ``x-kubernetes-group-version-kind`` and a
``fieldValidation`` query parameter, per kind), ``kubectl explain`` renders
``components.schemas`` and client-side apply takes its strategic-merge keys
from the ``x-kubernetes-patch-*`` extensions. All of that is derived from the
catalog (which kinds exist and where) and the schema data
(:mod:`microkube.resources.schema`); nothing here is per kind.

Shapes mirror kube-openapi:

* v3 index: ``{"paths": {"apis/apps/v1": {"serverRelativeURL":
  "/openapi/v3/apis/apps/v1?hash=<SHA512 upper hex>"}}}``; the hash changes
  whenever the document does, since kubectl caches those URLs forever.
* v3 document: ``openapi: 3.0.0``, ``paths`` with the CRUD operations of every
  resource of the group/version, ``components.schemas`` with every definition
  reachable from its kinds (``$ref`` + siblings become ``allOf``, as upstream).
* v2: ``swagger: 2.0`` with every path and all definitions (kubectl only falls
  back to it; it asks for protobuf, JSON is what we serve).

Custom resources: a :class:`ResourceType` without ``definition`` takes its
schema from ``extra_schemas`` under the name upstream gives CRD schemas, the
reversed group then version and kind (``com.example.stable.v1.CronTab``); see
:func:`crd_definition_name`.

Documents are built lazily and cached per ``catalog.generation`` (and the
content of ``extra_schemas``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from typing import Any

from microkube.resources import schema as schemas
from microkube.resources.catalog import Catalog
from microkube.resources.types import KNOWN_SUBRESOURCES, ResourceType

Doc = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_DEF = META + "Patch"
_EXTRA_DEFS: dict[str, Doc] = {
    PATCH_DEF: {
        "description": "Patch is provided to give a concrete name and type to the Kubernetes "
        "PATCH request body.",
        "type": "object",
    },
}
PATCH_CONTENT_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_RESPONSE_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], Any] = {}
_cache_generation: tuple[int, int] | None = None


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """``stable.example.com``/``v1``/``CronTab`` → ``com.example.stable.v1.CronTab``."""
    return ".".join([*reversed(group.split(".")), version, kind])


def definition_name(rt: ResourceType) -> str:
    return rt.definition or crd_definition_name(rt.group, rt.version, rt.kind)


def gv_path(group: str, version: str) -> str:
    """The key of a group/version in the v3 index: ``api/v1`` or ``apis/<g>/<v>``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def document_hash(doc: Doc) -> str:
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha512(raw).hexdigest().upper()


def v3_index(catalog: Catalog, extra_schemas: dict[str, Doc] | None = None) -> Doc:
    """``GET /openapi/v3``: one entry per served group/version with its hash."""

    def build() -> Doc:
        paths: dict[str, Doc] = {}
        for group, versions in catalog.group_versions().items():
            for version in versions:
                doc = v3_document(catalog, group, version, extra_schemas)
                if doc is None:
                    continue
                key = gv_path(group, version)
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(doc)}"}
        return {"paths": paths}

    return _cached(catalog, extra_schemas, ("index",), build)


def v3_document(
    catalog: Catalog, group: str, version: str, extra_schemas: dict[str, Doc] | None = None
) -> Doc | None:
    """``GET /openapi/v3/<gv>``: paths and reachable schemas, or None if not served."""

    def build() -> Doc | None:
        rts = catalog.in_group_version(group, version)
        if not rts:
            return None
        defs = _all_definitions(rts, extra_schemas or {})
        roots = {definition_name(rt) for rt in rts} | {definition_name(rt) + "List" for rt in rts}
        roots |= {META + "Status", META + "DeleteOptions", PATCH_DEF, META + "WatchEvent"}
        for rt in rts:
            for sub in rt.subresources:
                info = KNOWN_SUBRESOURCES.get(sub)
                if info and info.kind and info.group != rt.group:
                    roots.add(_builtin_def_name(info.group, info.version, info.kind))
        reachable = _reachable(roots, defs)
        components = {name: _to_v3(defs[name]) for name in sorted(reachable)}
        paths: dict[str, Doc] = {}
        for rt in rts:
            _add_paths(paths, rt, v3=True)
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths,
            "components": {"schemas": components},
        }

    return _cached(catalog, extra_schemas, ("v3", group, version), build)


def v2_document(catalog: Catalog, extra_schemas: dict[str, Doc] | None = None) -> Doc:
    """``GET /openapi/v2``: every path and every definition."""

    def build() -> Doc:
        rts = list(catalog)
        defs = _all_definitions(rts, extra_schemas or {})
        paths: dict[str, Doc] = {}
        for rt in rts:
            _add_paths(paths, rt, v3=False)
        return {
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "unversioned"},
            "paths": paths,
            "definitions": {k: defs[k] for k in sorted(defs)},
        }

    return _cached(catalog, extra_schemas, ("v2",), build)


def _cached(
    catalog: Catalog, extra: dict[str, Doc] | None, key: tuple[Any, ...], build: Any
) -> Any:
    global _cache_generation
    fingerprint = hash(json.dumps(extra, sort_keys=True)) if extra else 0
    generation = (id(catalog), catalog.generation)
    with _lock:
        if _cache_generation != generation:
            _cache.clear()
            _cache_generation = generation
        full_key = (*key, fingerprint)
        if full_key in _cache:
            return _cache[full_key]
    value = build()
    with _lock:
        if _cache_generation == generation:
            _cache[full_key] = value
    return value


def _builtin_def_name(group: str, version: str, kind: str) -> str:
    short = group.split(".")[0] if group else "core"
    return f"io.k8s.api.{short}.{version}.{kind}"


def _all_definitions(rts: list[ResourceType], extra: dict[str, Doc]) -> dict[str, Doc]:
    """Built-in definitions plus one (and its List) per custom resource."""
    defs: dict[str, Doc] = dict(schemas.definitions())
    defs.update(_EXTRA_DEFS)
    for rt in rts:
        if rt.definition:
            continue
        name = definition_name(rt)
        body = copy.deepcopy(extra.get(name) or {"type": "object"})
        if not body.get("properties") and "x-kubernetes-preserve-unknown-fields" not in body:
            body["x-kubernetes-preserve-unknown-fields"] = True
        body.setdefault("type", "object")
        props = body.setdefault("properties", {})
        props["apiVersion"] = {
            "type": "string",
            "description": "APIVersion defines the versioned schema of this representation "
            "of an object.",
        }
        props["kind"] = {
            "type": "string",
            "description": "Kind is a string value representing the REST resource this "
            "object represents.",
        }
        props["metadata"] = {"$ref": "#/definitions/" + META + "ObjectMeta"}
        gvk = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
        body["x-kubernetes-group-version-kind"] = gvk
        defs[name] = body
        defs[name + "List"] = {
            "description": f"{rt.kind}List is a list of {rt.kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": props["apiVersion"],
                "kind": props["kind"],
                "items": {
                    "type": "array",
                    "description": f"List of {rt.plural.lower()}.",
                    "items": {"$ref": "#/definitions/" + name},
                },
                "metadata": {"$ref": "#/definitions/" + META + "ListMeta"},
            },
            "x-kubernetes-group-version-kind": [
                {"group": rt.group, "kind": rt.list_kind, "version": rt.version}
            ],
        }
    return defs


def _reachable(roots: set[str], defs: dict[str, Doc]) -> set[str]:
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for ref in _refs(defs[name]):
            if ref in defs and ref not in seen:
                stack.append(ref)
    return seen


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.append(ref.rsplit("/", 1)[-1])
        for v in node.values():
            out.extend(_refs(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_refs(v))
    return out


def _to_v3(node: Any) -> Any:
    """v2 ``$ref`` → ``#/components/schemas``; a ref with siblings → ``allOf``."""
    if isinstance(node, list):
        return [_to_v3(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_v3(v) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = "#/components/schemas/" + ref.rsplit("/", 1)[-1]
        if out:
            out["allOf"] = [{"$ref": target}]
        else:
            out["$ref"] = target
    return out


def _gv_camel(rt: ResourceType) -> str:
    if not rt.group:
        return "CoreV1" if rt.version == "v1" else "Core" + rt.version.capitalize()
    first = rt.group.split(".")[0]
    if rt.group.endswith(".k8s.io") or "." not in rt.group:
        base = "".join(p.capitalize() for p in rt.group.removesuffix(".k8s.io").split("."))
    else:
        base = "".join(p.capitalize() for p in first.split("-"))
    return base + rt.version.capitalize()


def _ref_schema(name: str, v3: bool) -> Doc:
    return {"$ref": ("#/components/schemas/" if v3 else "#/definitions/") + name}


def _param(name: str, where: str, description: str, *, v3: bool, required: bool = False) -> Doc:
    p: Doc = {"name": name, "in": where, "description": description}
    if required or where == "path":
        p["required"] = True
    if v3:
        p["schema"] = {"type": "string", "uniqueItems": True}
    else:
        p["type"] = "string"
        p["uniqueItems"] = True
    return p


_DRY_RUN = "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"
_FIELD_MANAGER = (
    "fieldManager is a name associated with the actor or entity that is making these changes."
)
_FIELD_VALIDATION = (
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
    "containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"
)


def _write_params(v3: bool, *, patch: bool = False) -> list[Doc]:
    out = [
        _param("dryRun", "query", _DRY_RUN, v3=v3),
        _param("fieldManager", "query", _FIELD_MANAGER, v3=v3),
        _param("fieldValidation", "query", _FIELD_VALIDATION, v3=v3),
    ]
    if patch:
        force = _param(
            "force",
            "query",
            "Force is going to force Apply requests. It must be unset for non-apply patch requests.",
            v3=v3,
        )
        if v3:
            force["schema"] = {"type": "boolean", "uniqueItems": True}
        else:
            force["type"] = "boolean"
        out.append(force)
    return out


_LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)


def _op(
    rt: ResourceType,
    *,
    action: str,
    op_id: str,
    kind: str,
    gvk: Doc,
    response: str,
    params: list[Doc],
    v3: bool,
    body: str | None = None,
    patch: bool = False,
    description: str = "",
) -> Doc:
    op: Doc = {
        "description": description,
        "operationId": op_id,
        "tags": [_gv_camel(rt)[0].lower() + _gv_camel(rt)[1:]],
        "parameters": params,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    ok: Doc = {"description": "OK"}
    if v3:
        ok["content"] = {ct: {"schema": _ref_schema(response, True)} for ct in _RESPONSE_TYPES}
        if body:
            types = PATCH_CONTENT_TYPES if patch else ("*/*",)
            op["requestBody"] = {
                "content": {ct: {"schema": _ref_schema(body, True)} for ct in types},
                "required": True,
            }
    else:
        ok["schema"] = _ref_schema(response, False)
        op["produces"] = list(_RESPONSE_TYPES)
        op["schemes"] = ["https"]
        op["consumes"] = list(PATCH_CONTENT_TYPES) if patch else ["*/*"]
        if body:
            op["parameters"] = [
                {
                    "name": "body",
                    "in": "body",
                    "required": True,
                    "schema": _ref_schema(body, False),
                },
                *params,
            ]
    op["responses"] = {"200": ok, "401": {"description": "Unauthorized"}}
    if action in ("post", "put", "patch"):
        op["responses"]["201"] = ok
    return op


def _add_paths(paths: dict[str, Doc], rt: ResourceType, *, v3: bool) -> None:
    name = definition_name(rt)
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    gv = _gv_camel(rt)
    scope = "Namespaced" if rt.namespaced else ""
    ns_param = [_param("namespace", "path", "object name and auth scope", v3=v3)]
    name_param = [_param("name", "path", f"name of the {rt.kind}", v3=v3)]
    pretty = [_param("pretty", "query", "If 'true', then the output is pretty printed.", v3=v3)]
    base = rt.base_path("{namespace}") if rt.namespaced else rt.base_path()
    scope_params = ns_param if rt.namespaced else []
    verbs = set(rt.verbs)
    common: dict[str, Any] = {"gvk": gvk, "v3": v3}
    collection: Doc = {}
    if "list" in verbs:
        list_params = scope_params + pretty + [_param(p, "query", p, v3=v3) for p in _LIST_PARAMS]
        collection["get"] = _op(
            rt,
            action="list",
            op_id=f"list{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=name + "List",
            params=list_params,
            description=f"list or watch objects of kind {rt.kind}",
            **common,
        )
    if "create" in verbs:
        collection["post"] = _op(
            rt,
            action="post",
            op_id=f"create{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=name,
            params=scope_params + pretty + _write_params(v3),
            body=name,
            description=f"create a {rt.kind}",
            **common,
        )
    if "deletecollection" in verbs:
        collection["delete"] = _op(
            rt,
            action="deletecollection",
            op_id=f"deletecollection{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=META + "Status",
            params=scope_params + pretty + [_param("dryRun", "query", _DRY_RUN, v3=v3)],
            description=f"delete collection of {rt.kind}",
            **common,
        )
    if collection:
        paths["/" + base.lstrip("/")] = collection
    if rt.namespaced and "list" in verbs:
        all_ns = rt.base_path()
        paths[all_ns] = {
            "get": _op(
                rt,
                action="list",
                op_id=f"list{gv}{rt.kind}ForAllNamespaces",
                kind=rt.kind,
                response=name + "List",
                params=pretty + [_param(p, "query", p, v3=v3) for p in _LIST_PARAMS],
                description=f"list or watch objects of kind {rt.kind}",
                **common,
            )
        }
    item: Doc = {}
    item_params = name_param + scope_params + pretty
    if "get" in verbs:
        item["get"] = _op(
            rt,
            action="get",
            op_id=f"read{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=name,
            params=item_params,
            description=f"read the specified {rt.kind}",
            **common,
        )
    if "update" in verbs:
        item["put"] = _op(
            rt,
            action="put",
            op_id=f"replace{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=name,
            params=item_params + _write_params(v3),
            body=name,
            description=f"replace the specified {rt.kind}",
            **common,
        )
    if "patch" in verbs:
        item["patch"] = _op(
            rt,
            action="patch",
            op_id=f"patch{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=name,
            params=item_params + _write_params(v3, patch=True),
            body=PATCH_DEF,
            patch=True,
            description=f"partially update the specified {rt.kind}",
            **common,
        )
    if "delete" in verbs:
        item["delete"] = _op(
            rt,
            action="delete",
            op_id=f"delete{gv}{scope}{rt.kind}",
            kind=rt.kind,
            response=META + "Status",
            params=item_params + [_param("dryRun", "query", _DRY_RUN, v3=v3)],
            description=f"delete a {rt.kind}",
            **common,
        )
    if item:
        paths[f"{base}/{{name}}"] = item
    for sub in rt.subresources:
        if sub not in ("status", "scale"):
            continue
        info = KNOWN_SUBRESOURCES[sub]
        if info.kind:
            sub_name = _builtin_def_name(info.group, info.version, info.kind)
            sub_gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        else:
            sub_name, sub_gvk = name, gvk
        title = sub.capitalize()
        sub_common: dict[str, Any] = {"gvk": sub_gvk, "v3": v3}
        paths[f"{base}/{{name}}/{sub}"] = {
            "get": _op(
                rt,
                action="get",
                op_id=f"read{gv}{scope}{rt.kind}{title}",
                kind=rt.kind,
                response=sub_name,
                params=item_params,
                description=f"read {sub} of the specified {rt.kind}",
                **sub_common,
            ),
            "put": _op(
                rt,
                action="put",
                op_id=f"replace{gv}{scope}{rt.kind}{title}",
                kind=rt.kind,
                response=sub_name,
                params=item_params + _write_params(v3),
                body=sub_name,
                description=f"replace {sub} of the specified {rt.kind}",
                **sub_common,
            ),
            "patch": _op(
                rt,
                action="patch",
                op_id=f"patch{gv}{scope}{rt.kind}{title}",
                kind=rt.kind,
                response=sub_name,
                params=item_params + _write_params(v3, patch=True),
                body=PATCH_DEF,
                patch=True,
                description=f"partially update {sub} of the specified {rt.kind}",
                **sub_common,
            ),
        }
