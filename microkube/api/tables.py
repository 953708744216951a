"""Lists, Tables and PartialObjectMetadata responses for get and list.

kubectl asks ``as=Table`` for ``get``; it needs ``row.object.metadata`` for
``-A``/``--show-labels`` and the full object when ``includeObject=Object``
(``--sort-by``).  Column definitions come from :mod:`microkube.resources.printers`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from microkube import errors
from microkube.api import negotiation
from microkube.api.context import ApiContext
from microkube.resources.registry import ListResult
from microkube.resources.types import ResourceType


def include_object(request: Request) -> str:
    value = request.query_params.get("includeObject", "Metadata") or "Metadata"
    if value not in ("None", "Metadata", "Object"):
        raise errors.BadRequest(f"includeObject: unsupported value {value!r}")
    return value


def table(
    ctx: ApiContext, rt: ResourceType, objects: list[dict[str, Any]], include: str
) -> dict[str, Any]:
    from microkube.resources import printers

    columns = ctx.registry.services.get("printer-columns", {}).get((rt.group, rt.kind))
    return printers.table_for(
        rt, objects, include_object=include, now=datetime.now(UTC), columns=columns
    )


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def maybe_table(
    request: Request, ctx: ApiContext, rt: ResourceType, obj: dict[str, Any], *, single: bool
) -> Response:
    accept = negotiation.Accept.parse(request.headers.get("accept", ""))
    if accept.table:
        t = table(ctx, rt, [obj], include_object(request))
        t["metadata"] = {"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")}
        return negotiation.respond(request, t)
    if accept.partial_metadata:
        return negotiation.respond(request, partial(obj))
    return negotiation.respond(request, obj)


def list_or_table(
    request: Request, ctx: ApiContext, rt: ResourceType, result: ListResult
) -> Response:
    accept = negotiation.Accept.parse(request.headers.get("accept", ""))
    lmeta: dict[str, Any] = {"resourceVersion": result.resource_version}
    if result.continue_token:
        lmeta["continue"] = result.continue_token
        if result.remaining is not None:
            lmeta["remainingItemCount"] = result.remaining
    if accept.table:
        t = table(ctx, rt, result.items, include_object(request))
        t["metadata"] = lmeta
        return negotiation.respond(request, t)
    if accept.partial_metadata:
        body = {
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": lmeta,
            "items": [partial(o) for o in result.items],
        }
        return negotiation.respond(request, body)
    body = {
        "kind": rt.list_kind,
        "apiVersion": rt.api_version,
        "metadata": lmeta,
        "items": result.items,
    }
    return negotiation.respond(request, body)
