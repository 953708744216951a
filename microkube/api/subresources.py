"""Subresources with their own semantics: scale, binding, eviction, finalize, token.

Streams (log, exec, attach, portforward) are delegated to the pod stream
provider the kubelet installs on the context.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from microkube import errors
from microkube.api import handlers, negotiation
from microkube.api.context import ApiContext
from microkube.api.requestinfo import RequestInfo
from microkube.resources.registry import DeleteOptions, WriteOptions
from microkube.resources.types import ResourceType

_SCALE_PATHS = {
    # kind → (replicas path in spec, selector source)
    "Deployment": "spec.replicas",
    "ReplicaSet": "spec.replicas",
    "StatefulSet": "spec.replicas",
    "ReplicationController": "spec.replicas",
}


async def handle(
    request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType
) -> Response:
    sub = info.subresource.split("/")[0]
    if sub == "scale":
        return await scale(request, ctx, info, rt)
    if sub == "binding" and request.method == "POST":
        return await binding(request, ctx, info, rt)
    if sub == "eviction" and request.method == "POST":
        return await eviction(request, ctx, info, rt)
    if sub == "finalize" and request.method == "PUT":
        return await finalize(request, ctx, info, rt)
    if sub == "token" and request.method == "POST":
        return await token(request, ctx, info, rt)
    if sub in ("log", "exec", "attach", "portforward"):
        if ctx.pod_streams is None:
            raise errors.ServiceUnavailable(f"pods/{sub} is not available: no kubelet is running")
        if sub != "log":
            await ctx.registry.admit_connect(
                rt,
                info.namespace,
                info.name,
                sub,
                _connect_options(sub, request),
                request.scope.get("microkube.user"),
            )
        return await ctx.pod_streams.handle(request, info, rt)
    if sub == "ephemeralcontainers":
        return await _main_like(request, ctx, info, rt)
    raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")


_CONNECT_KINDS = {
    "exec": "PodExecOptions",
    "attach": "PodAttachOptions",
    "portforward": "PodPortForwardOptions",
}
_CONNECT_BOOLS = ("stdin", "stdout", "stderr", "tty")


def _connect_options(sub: str, request: Request) -> dict[str, Any]:
    """The connect options object AdmissionReview carries for a CONNECT (from the query)."""
    q = request.query_params
    out: dict[str, Any] = {"kind": _CONNECT_KINDS[sub], "apiVersion": "v1"}
    for b in _CONNECT_BOOLS:
        if b in q:
            out[b] = q[b] in ("true", "1")
    if q.get("container"):
        out["container"] = q["container"]
    if sub == "exec" and q.getlist("command"):
        out["command"] = q.getlist("command")
    if sub == "portforward" and q.getlist("ports"):
        out["ports"] = [int(p) for p in q.getlist("ports") if p.isdigit()]
    return out


async def _main_like(
    request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType
) -> Response:
    if request.method == "GET":
        return negotiation.respond(request, ctx.registry.get(rt, info.namespace, info.name))
    raise errors.MethodNotAllowed("ephemeral containers are not supported")


def _scale_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    from microkube.objects.selectors import LabelSelector

    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    sel = spec.get("selector")
    selector = ""
    if isinstance(sel, dict):
        selector = str(LabelSelector.from_structured(sel))
    m = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"],
            "namespace": m.get("namespace", ""),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": int(spec.get("replicas", 0) or 0)},
        "status": {"replicas": int(status.get("replicas", 0) or 0), "selector": selector},
    }


async def scale(request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType) -> Response:
    reg = ctx.registry
    current = reg.get(rt, info.namespace, info.name)
    scale_obj = _scale_of(rt, current)
    if request.method == "GET":
        return negotiation.respond(request, scale_obj)
    opts = handlers.write_options(request)
    if request.method == "PUT":
        body = await handlers.decode_body(request, ctx)
        negotiation.pop_duplicates(body)
    elif request.method == "PATCH":
        from microkube.objects import patch as patches
        from microkube.objects.strategicmerge import SchemaResolver
        from microkube.resources import schema

        ct = negotiation.media_type(request)
        ptype = negotiation.PATCH_TYPES.get(ct)
        raw = negotiation.decode(await negotiation.read_body(request, ctx.max_object_bytes), ct)
        if ptype == "json":
            body = patches.json_patch(scale_obj, raw)
        elif ptype in ("merge", "apply"):
            body = patches.merge_patch(scale_obj, raw)
        elif ptype == "strategic":
            body = patches.strategic_merge_patch(
                scale_obj,
                raw,
                SchemaResolver(schema.definitions(), "io.k8s.api.autoscaling.v1.Scale"),
            )
        else:
            raise errors.UnsupportedMediaType(f"unsupported patch type {ct}")
    else:
        raise errors.MethodNotAllowed(
            "the server does not allow this method on the requested resource"
        )
    if not isinstance(body, dict):
        raise errors.BadRequest("Scale must be an object")
    replicas = (body.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid(
            "Scale",
            info.name,
            [errors.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")],
            group="autoscaling",
        )
    want_rv = (body.get("metadata") or {}).get("resourceVersion")
    if want_rv and str(want_rv) != current["metadata"]["resourceVersion"]:
        raise reg._conflict(rt, info.name)  # noqa: SLF001

    def mutate(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("spec", {})["replicas"] = replicas
        return obj

    if opts.dry_run:
        updated: dict[str, Any] | None = mutate(current)
    else:
        updated = await reg.guaranteed_update(
            rt,
            info.namespace,
            info.name,
            mutate,
            field_manager=opts.field_manager,
            user=opts.user,
        )
    assert updated is not None
    return negotiation.respond(request, _scale_of(rt, updated))


async def binding(
    request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType
) -> Response:
    """POST pods/NAME/binding: the same path the in-process scheduler takes."""
    from microkube.scheduler import binding as binder

    body = await handlers.decode_body(request, ctx)
    target = (body.get("target") or {}) if isinstance(body, dict) else {}
    node = target.get("name")
    if not node:
        raise errors.invalid("Binding", info.name, [errors.required("target.name")])
    uid = ((body.get("metadata") or {}).get("uid") or "") if isinstance(body, dict) else ""
    await binder.bind(ctx.registry, info.namespace, info.name, node, uid=uid)
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    return negotiation.respond(request, status, 201)


async def eviction(
    request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType
) -> Response:
    body = await handlers.decode_body(request, ctx)
    opts_body = (body or {}).get("deleteOptions") if isinstance(body, dict) else None
    ctx.registry.get(rt, info.namespace, info.name)
    from microkube.api import disruption

    disruption.check_eviction(ctx.registry, info.namespace, info.name)
    dopts = DeleteOptions.from_body(opts_body, {})
    dopts.user = request.scope.get("microkube.user")
    await ctx.registry.delete(rt, info.namespace, info.name, dopts)
    return negotiation.respond(
        request,
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
        201,
    )


async def finalize(
    request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType
) -> Response:
    body = await handlers.decode_body(request, ctx)
    finalizers = ((body or {}).get("spec") or {}).get("finalizers") or []

    def mutate(ns: dict[str, Any]) -> dict[str, Any]:
        ns.setdefault("spec", {})["finalizers"] = finalizers
        return ns

    obj = await ctx.registry.finalize_namespace(info.name, mutate)
    return negotiation.respond(request, obj)


async def token(request: Request, ctx: ApiContext, info: RequestInfo, rt: ResourceType) -> Response:
    body = await handlers.decode_body(request, ctx)
    sa = ctx.registry.get(rt, info.namespace, info.name)
    if ctx.tokens is None:
        raise errors.ServiceUnavailable("token issuing is not configured")
    spec = (body or {}).get("spec") or {}
    expiration = int(spec.get("expirationSeconds") or 3600)
    if expiration < 600:
        raise errors.invalid(
            "TokenRequest",
            info.name,
            [
                errors.invalid_value(
                    "spec.expirationSeconds",
                    expiration,
                    "may not specify a duration less than 10 minutes",
                )
            ],
            group="authentication.k8s.io",
        )
    audiences = spec.get("audiences") or ctx.tokens.default_audiences
    bound = spec.get("boundObjectRef")
    tok, exp = ctx.tokens.issue(
        sa, audiences=audiences, seconds=min(expiration, 48 * 3600), bound=bound
    )
    out = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": info.name, "namespace": info.namespace, "creationTimestamp": None},
        "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": bound},
        "status": {"token": tok, "expirationTimestamp": exp},
    }
    return negotiation.respond(request, out, 201)


__all__ = ["handle", "WriteOptions"]
