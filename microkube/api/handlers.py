"""Thin resource endpoints: parse the request, call the Registry, encode the answer.

One entry point, :func:`resource_request`, serves every built-in and custom
kind; subresources with their own semantics (scale, binding, eviction,
finalize, token, the review kinds) live in :mod:`microkube.api.subresources`,
streams (log, exec, attach, port-forward) in :mod:`microkube.api.podstreams`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from microkube import errors
from microkube.api import negotiation, tables, watching
from microkube.api.context import ApiContext
from microkube.api.requestinfo import RequestInfo
from microkube.objects.selectors import FieldSelector, LabelSelector, parse_field_selector
from microkube.resources.registry import DeleteOptions, WriteOptions
from microkube.resources.types import ResourceType

_FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


def not_found_resource() -> errors.NotFound:
    return errors.NotFound("the server could not find the requested resource")


def resolve(ctx: ApiContext, info: RequestInfo) -> ResourceType:
    rt = ctx.catalog.get(info.group, info.version, info.resource)
    if rt is None:
        raise not_found_resource()
    if info.namespace and not rt.namespaced:
        raise not_found_resource()
    if info.subresource and info.subresource.split("/")[0] not in rt.subresources:
        raise not_found_resource()
    return rt


def write_options(request: Request, *, subresource: str = "") -> WriteOptions:
    q = request.query_params
    dry = q.getlist("dryRun")
    for d in dry:
        if d != "All":
            raise errors.BadRequest(f'unsupported dry run option "{d}"'.replace('"', "'"))
    fv = q.get("fieldValidation") or "Warn"
    if fv not in _FIELD_VALIDATION:
        raise errors.BadRequest(
            f"fieldValidation parameter unsupported: {fv}. Supported values: Ignore, Warn, Strict"
        )
    manager = q.get("fieldManager", "")
    if len(manager) > 128:
        raise errors.invalid(
            "",
            "",
            [
                errors.Cause(
                    "FieldValueTooLong", "Too long: must have at most 128 bytes", "fieldManager"
                )
            ],
        )
    force = q.get("force")
    if force not in (None, "", "true", "false"):
        raise errors.BadRequest(f"invalid force parameter {force!r}")
    return WriteOptions(
        dry_run=bool(dry),
        field_manager=manager,
        user_agent=request.headers.get("user-agent", ""),
        force=force == "true",
        subresource=subresource,
        field_validation=fv,
        user=request.scope.get("microkube.user"),
    )


def selectors(
    request: Request, rt: ResourceType
) -> tuple[LabelSelector | None, FieldSelector | None]:
    q = request.query_params
    ls = LabelSelector.parse(q["labelSelector"]) if q.get("labelSelector") else None
    fs = None
    if q.get("fieldSelector"):
        # Custom resources support only metadata.name/namespace (no kind-specific fields).
        fs = parse_field_selector(q["fieldSelector"], rt.kind if rt.definition else "")
    return ls, fs


def _finish(
    request: Request, obj: Any, status: int, opts: WriteOptions | DeleteOptions | None = None
) -> Response:
    resp = negotiation.respond(request, obj, status)
    if opts is not None:
        for w in opts.warnings:
            resp.raw_headers.append((b"warning", f'299 - "{w}"'.encode()))
    return resp


async def decode_body(request: Request, ctx: ApiContext) -> Any:
    body = await negotiation.read_body(request, ctx.max_object_bytes)
    ct = negotiation.media_type(request)
    if ct in negotiation.PATCH_TYPES and request.method != "PATCH":
        raise errors.UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        )
    return negotiation.decode(body, ct)


def take_duplicates(obj: Any, opts: WriteOptions) -> None:
    dups = negotiation.pop_duplicates(obj)
    if dups:
        opts.duplicate_fields = dups


async def resource_request(request: Request, ctx: ApiContext, info: RequestInfo) -> Response:
    rt = resolve(ctx, info)
    sub = info.subresource
    if sub and sub != "status":
        from microkube.api import subresources

        return await subresources.handle(request, ctx, info, rt)
    verb = info.verb
    if verb not in rt.verbs and not sub:
        raise errors.MethodNotAllowed(
            "the server does not allow this method on the requested resource"
        )
    ns = info.namespace
    reg = ctx.registry
    m = request.method
    if verb == "watch":
        ls, fs = selectors(request, rt)
        if info.name:
            name_sel = FieldSelector.parse(f"metadata.name={info.name}")
            fs = (
                name_sel
                if fs is None
                else FieldSelector.parse(
                    f"{request.query_params['fieldSelector']},metadata.name={info.name}"
                )
            )
        return await watching.serve(request, ctx, rt, ns or None, ls, fs)
    if verb == "list":
        return list_response(request, ctx, rt, ns or None)
    if verb == "get":
        obj = reg.get(rt, ns, info.name)
        return tables.maybe_table(request, ctx, rt, obj, single=True)
    if verb == "create":
        body = await decode_body(request, ctx)
        opts = write_options(request)
        take_duplicates(body, opts)
        if rt.kind.endswith("Review") and rt.group.startswith("auth"):
            from microkube.api import reviews

            return negotiation.respond(
                request, await reviews.create(request, ctx, rt, ns, body), 201
            )
        obj = await reg.create(rt, ns, body, opts)
        return _finish(request, obj, 201, opts)
    if m == "PUT":
        body = await decode_body(request, ctx)
        opts = write_options(request, subresource=sub)
        take_duplicates(body, opts)
        obj, created = await reg.update(rt, ns, info.name, body, opts)
        return _finish(request, obj, 201 if created else 200, opts)
    if m == "PATCH":
        return await patch(request, ctx, rt, ns, info.name, sub)
    if verb == "delete":
        dopts = await delete_options(request, ctx)
        obj, now = await reg.delete(rt, ns, info.name, dopts)
        return _finish(request, obj, 200 if now else 202, dopts)
    if verb == "deletecollection":
        dopts = await delete_options(request, ctx)
        ls, fs = selectors(request, rt)
        items = await reg.delete_collection(
            rt, ns or None, dopts, label_selector=ls, field_selector=fs
        )
        body = {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(ctx.registry.store.revision)},
            "items": items,
        }
        return _finish(request, body, 200, dopts)
    raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")


async def patch(
    request: Request, ctx: ApiContext, rt: ResourceType, ns: str, name: str, sub: str
) -> Response:
    ct = negotiation.media_type(request)
    ptype = negotiation.PATCH_TYPES.get(ct)
    if ptype is None or ptype == "apply-cbor":
        raise errors.UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            + (", application/strategic-merge-patch+json" if rt.definition else "")
        )
    if ptype == "strategic" and not rt.definition:
        raise errors.UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        )
    body = negotiation.decode(await negotiation.read_body(request, ctx.max_object_bytes), ct)
    opts = write_options(request, subresource=sub)
    if ptype == "apply" and not opts.field_manager:
        raise errors.BadRequest("PATCH requests with apply must specify a fieldManager")
    take_duplicates(body, opts)
    obj, created = await ctx.registry.patch(rt, ns, name, ptype, body, opts)
    return _finish(request, obj, 201 if created else 200, opts)


async def delete_options(request: Request, ctx: ApiContext) -> DeleteOptions:
    body_bytes = await negotiation.read_body(request, ctx.max_object_bytes)
    body: dict[str, Any] | None = None
    if body_bytes.strip():
        decoded = negotiation.decode(
            body_bytes, negotiation.media_type(request) or negotiation.JSON
        )
        if not isinstance(decoded, dict):
            raise errors.BadRequest("DeleteOptions must be an object")
        negotiation.pop_duplicates(decoded)
        body = decoded
    q = dict(request.query_params)
    opts = DeleteOptions.from_body(body, q)
    opts.user = request.scope.get("microkube.user")
    return opts


def list_response(request: Request, ctx: ApiContext, rt: ResourceType, ns: str | None) -> Response:
    q = request.query_params
    ls, fs = selectors(request, rt)
    limit = None
    if q.get("limit"):
        try:
            limit = int(q["limit"])
        except ValueError as exc:
            raise errors.BadRequest(f"invalid limit: {q['limit']!r}") from exc
        if limit <= 0:
            limit = None
    rv = q.get("resourceVersion", "")
    match = q.get("resourceVersionMatch", "")
    if match and match not in ("NotOlderThan", "Exact"):
        raise errors.BadRequest(f"invalid resourceVersionMatch: {match}")
    if match and not rv:
        raise errors.BadRequest(
            "resourceVersionMatch is forbidden unless resourceVersion is provided"
        )
    if rv and rv != "0":
        try:
            want = int(rv)
        except ValueError as exc:
            raise errors.BadRequest(f"invalid resource version: {rv!r}") from exc
        current = ctx.registry.store.revision
        if want > current:
            raise errors.Timeout(
                f"Too large resource version: {want}, current: {current}", retry_after=1
            )
        if match == "Exact" and want != current:
            raise errors.Gone(f"too old resource version: {want} ({current})")
    if q.get("continue") and rv and rv != "0":
        raise errors.BadRequest("specifying resource version is not allowed when using continue")
    result = ctx.registry.list(
        rt,
        ns,
        label_selector=ls,
        field_selector=fs,
        limit=limit,
        continue_token=q.get("continue", ""),
    )
    return tables.list_or_table(request, ctx, rt, result)
