"""The API server's ASGI application.

Every request is authenticated (no anonymous access), then routed:
non-resource paths (version, health, discovery, OpenAPI, metrics) here, and
everything under ``/api`` and ``/apis`` through :mod:`microkube.api.requestinfo`
to :mod:`microkube.api.handlers`.  One exception handler turns every
:class:`microkube.errors.ApiError` into a ``metav1.Status``; an unexpected
exception is logged and reported as a 500 Status, never a bare crash.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from microkube import errors
from microkube.api import discovery, handlers, negotiation, requestinfo, tlspeer
from microkube.api.context import ApiContext
from microkube.auth import impersonation

log = logging.getLogger(__name__)


def status_response(exc: errors.ApiError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return Response(
        negotiation.dumps(exc.status()), exc.code, headers, media_type="application/json"
    )


class AuthMiddleware:
    """Authenticates every HTTP and WebSocket request; stores the user in the scope."""

    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        if scope["type"] == "websocket" and "authorization" not in headers:
            # Browsers cannot set headers on WebSockets; kubectl can, so this is a fallback only.
            for proto in headers.get("sec-websocket-protocol", "").split(","):
                proto = proto.strip()
                if proto.startswith("base64url.bearer.authorization.k8s.io."):
                    import base64

                    raw = proto.rsplit(".", 1)[-1]
                    try:
                        headers["authorization"] = (
                            "Bearer "
                            + base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
                        )
                    except ValueError:
                        pass
        try:
            peer = scope.get(tlspeer.SCOPE_KEY)
            user = (
                self.ctx.authenticator.authenticate(headers, peer)
                if self.ctx.authenticator
                else dict(_ANON_ADMIN)
            )
        except errors.ApiError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await status_response(exc)(scope, receive, send)
            return
        try:
            wanted = impersonation.requested(scope.get("headers") or [])
            if wanted is not None:
                user = impersonation.impersonate(user, wanted, self.ctx.authorizer or _ALLOW)
        except errors.ApiError as exc:
            await status_response(exc)(scope, receive, send)
            return
        scope["microkube.user"] = user
        # Parsed once here; the handlers reuse it from the scope.
        info = requestinfo.parse(scope.get("method", "GET"), scope["path"], _query(scope))
        scope["microkube.info"] = info
        if self.ctx.authorizer is not None:
            try:
                self.ctx.authorizer.authorize(user, info)
            except errors.ApiError as exc:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await status_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _AllowAll:
    def review(self, subject: Any, attrs: Any) -> tuple[bool, str]:
        return True, ""


_ALLOW = _AllowAll()
_ANON_ADMIN = {"username": "admin", "groups": ["system:masters", "system:authenticated"]}


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def create_app(ctx: ApiContext) -> ASGIApp:
    async def version(request: Request) -> Response:
        return JSONResponse(discovery.VERSION)

    async def health(request: Request) -> Response:
        path = request.url.path
        if path.startswith("/readyz") and not ctx.ready:
            return PlainTextResponse("[-]ready failed: reason withheld\nreadyz check failed", 500)
        if request.query_params.get("verbose") is not None:
            name = path.strip("/").split("/")[0]
            return PlainTextResponse(f"[+]ping ok\n[+]log ok\n[+]etcd ok\n{name} check passed\n")
        return PlainTextResponse("ok")

    async def metrics(request: Request) -> Response:
        from microkube.api import metrics as m

        return PlainTextResponse(m.render(ctx), media_type="text/plain; version=0.0.4")

    async def api_root(request: Request) -> Response:
        v = discovery.aggregated_version(request.headers.get("accept", ""))
        if v:
            body = discovery.aggregated(ctx.catalog, legacy=True, version=v)
            return Response(
                negotiation.dumps(body), media_type=discovery.aggregated_content_type(v)
            )
        return negotiation.respond(request, discovery.api_versions(ctx.server_address))

    async def apis_root(request: Request) -> Response:
        v = discovery.aggregated_version(request.headers.get("accept", ""))
        if v:
            body = discovery.aggregated(ctx.catalog, legacy=False, version=v)
            return Response(
                negotiation.dumps(body), media_type=discovery.aggregated_content_type(v)
            )
        return negotiation.respond(request, discovery.api_group_list(ctx.catalog))

    async def openapi_v2(request: Request) -> Response:
        from microkube.api import openapi, openapi_proto

        doc = openapi.v2_document(ctx.catalog, extra_schemas=ctx.registry.crd_openapi)
        if openapi_proto.wants_protobuf(request.headers.get("accept", "")):
            # kubectl <= 1.29 proto.Unmarshal this whatever the Content-Type.
            return Response(
                openapi_proto.encode_cached(doc),
                headers={"Vary": "Accept"},
                media_type=openapi_proto.CONTENT_TYPE,
            )
        return Response(
            negotiation.dumps(doc), headers={"Vary": "Accept"}, media_type="application/json"
        )

    async def openapi_v3(request: Request) -> Response:
        from microkube.api import openapi

        return JSONResponse(openapi.v3_index(ctx.catalog, extra_schemas=ctx.registry.crd_openapi))

    async def openapi_v3_doc(request: Request) -> Response:
        from microkube.api import openapi

        path = request.path_params["path"]
        parts = path.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            raise errors.NotFound("the server could not find the requested resource")
        doc = openapi.v3_document(
            ctx.catalog, group, version, extra_schemas=ctx.registry.crd_openapi
        )
        if doc is None:
            raise errors.NotFound("the server could not find the requested resource")
        headers = {
            "Cache-Control": "public, immutable" if request.query_params.get("hash") else "no-cache"
        }
        return Response(negotiation.dumps(doc), headers=headers, media_type="application/json")

    async def api_path(request: Request) -> Response:
        start = time.monotonic()
        info = request.scope.get("microkube.info") or requestinfo.parse(
            request.method, request.url.path, dict(request.query_params)
        )
        try:
            if not info.is_resource_request:
                return _discovery_doc(request, ctx, info)
            return await handlers.resource_request(request, ctx, info)
        finally:
            key = f"{info.verb}:{info.resource or 'nonresource'}"
            ctx.metrics[key] = ctx.metrics.get(key, 0) + 1
            ctx.metrics["request_seconds_total"] = (
                ctx.metrics.get("request_seconds_total", 0.0) + time.monotonic() - start
            )

    async def ws_path(websocket: WebSocket) -> None:
        info = requestinfo.parse("GET", websocket.url.path, dict(websocket.query_params))
        if not info.is_resource_request or info.subresource not in (
            "exec",
            "attach",
            "portforward",
        ):
            await websocket.close(code=1008)
            return
        if ctx.pod_streams is None:
            await websocket.close(code=1011)
            return
        await ctx.pod_streams.websocket(websocket, info)

    routes = [
        Route("/version", version),
        Route("/version/", version),
        Route("/healthz{rest:path}", health),
        Route("/livez{rest:path}", health),
        Route("/readyz{rest:path}", health),
        Route("/metrics", metrics),
        Route("/api", api_root),
        Route("/api/", api_root),
        Route("/apis", apis_root),
        Route("/apis/", apis_root),
        Route("/openapi/v2", openapi_v2),
        Route("/openapi/v3", openapi_v3),
        Route("/openapi/v3/{path:path}", openapi_v3_doc),
        Route(
            "/api/{rest:path}", api_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
        ),
        Route(
            "/apis/{rest:path}", api_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
        ),
        WebSocketRoute("/api/{rest:path}", ws_path),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ApiError)
        return status_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        if code == 404:
            return status_response(
                errors.NotFound("the server could not find the requested resource")
            )
        if code == 405:
            return status_response(
                errors.MethodNotAllowed(
                    "the server does not allow this method on the requested resource"
                )
            )
        return status_response(errors.ApiError(str(getattr(exc, "detail", exc))))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return status_response(
            errors.InternalError(f"Internal error occurred: {type(exc).__name__}: {exc}")
        )

    from starlette.exceptions import HTTPException

    app = Starlette(
        routes=routes,
        exception_handlers={
            errors.ApiError: api_error,
            HTTPException: http_error,
            Exception: unexpected,
        },
    )
    app.state.ctx = ctx
    return AuthMiddleware(app, ctx)


def _discovery_doc(request: Request, ctx: ApiContext, info: requestinfo.RequestInfo) -> Response:
    if info.version:
        doc: Any = discovery.api_resource_list(ctx.catalog, info.group, info.version)
    elif info.group:
        doc = discovery.api_group(ctx.catalog, info.group)
    else:
        doc = None
    if doc is None:
        raise errors.NotFound("the server could not find the requested resource")
    return negotiation.respond(request, doc)
