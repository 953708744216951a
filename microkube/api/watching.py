"""Streamed watch responses: one JSON event per line, flushed as it happens.

Mirrors apiserver's ``WatchServer``: events ``{"type": ..., "object": ...}``;
with ``allowWatchBookmarks`` a BOOKMARK carrying only the resourceVersion is
sent when idle and at the end; ``timeoutSeconds`` ends the stream; with a Table
Accept header each object is a one-row Table (column definitions on the first
event only).  A revision below the retained window becomes an ERROR event with
a 410 Status, which makes clients re-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from microkube import errors
from microkube.api import negotiation, tables
from microkube.api.context import ApiContext
from microkube.objects.selectors import FieldSelector, LabelSelector
from microkube.resources.types import ResourceType

BOOKMARK_INTERVAL = 30.0


def _bookmark(rt: ResourceType, rv: str, *, initial_end: bool = False) -> dict[str, Any]:
    m: dict[str, Any] = {"resourceVersion": rv}
    if initial_end:
        m["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": m},
    }


async def serve(
    request: Request,
    ctx: ApiContext,
    rt: ResourceType,
    ns: str | None,
    ls: LabelSelector | None,
    fs: FieldSelector | None,
) -> Response:
    q = request.query_params
    rv = q.get("resourceVersion", "")
    bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
    send_initial: bool | None = None
    if q.get("sendInitialEvents") is not None:
        send_initial = q.get("sendInitialEvents") == "true"
        if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.forbidden_field(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    )
                ],
            )
    timeout = _timeout(q.get("timeoutSeconds"))
    accept = negotiation.Accept.parse(request.headers.get("accept", ""))
    include = tables.include_object(request) if accept.table else "Metadata"
    pretty = q.get("pretty") in ("true", "1")

    events = ctx.registry.watch(
        rt, ns, resource_version=rv, label_selector=ls, field_selector=fs, send_initial=send_initial
    )
    # Start the watch now so a 400 (bad RV) is a proper response, not a broken stream.
    first: asyncio.Task[Any] = asyncio.ensure_future(anext(events))
    gone: errors.ApiError | None = None
    await asyncio.wait({first}, timeout=0.05)
    if first.done() and first.exception() is not None:
        exc = first.exception()
        if isinstance(exc, errors.Gone):
            gone = exc
        elif not isinstance(exc, StopAsyncIteration):
            raise exc  # type: ignore[misc]

    async def body() -> AsyncIterator[bytes]:
        pending: asyncio.Task[Any] | None = None
        columns_sent = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_rv = rv or str(ctx.registry.store.revision)

        def encode(etype: str, obj: dict[str, Any]) -> bytes:
            nonlocal columns_sent
            if accept.table and etype in ("ADDED", "MODIFIED", "DELETED"):
                t = tables.table(ctx, rt, [obj], include)
                t["metadata"] = {
                    "resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")
                }
                if columns_sent:
                    t["columnDefinitions"] = []
                columns_sent = True
                obj = t
            return negotiation.dumps({"type": etype, "object": obj}, pretty=pretty) + b"\n"

        def convert(item: tuple[str, dict[str, Any]]) -> bytes | None:
            nonlocal last_rv
            etype, obj = item
            if etype == "INITIAL-END":
                last_rv = obj["metadata"]["resourceVersion"]
                if send_initial and bookmarks:
                    return negotiation.dumps(_bookmark(rt, last_rv, initial_end=True)) + b"\n"
                return None
            last_rv = obj.get("metadata", {}).get("resourceVersion", last_rv)
            return encode(etype, obj)

        try:
            if gone is not None:
                yield negotiation.dumps({"type": "ERROR", "object": gone.status()}) + b"\n"
                return
            pending = first
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if pending is None:
                    pending = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({pending}, timeout=min(remaining, BOOKMARK_INTERVAL))
                if not done:
                    if bookmarks:
                        yield negotiation.dumps(_bookmark(rt, last_rv)) + b"\n"
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    pending = None
                    break
                pending = None
                out = convert(item)
                if out:
                    yield out
            if bookmarks:
                yield negotiation.dumps(_bookmark(rt, last_rv)) + b"\n"
        finally:
            # The generator may be suspended inside a pending anext(): finish that first.
            for task in (first, pending):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            await events.aclose()  # type: ignore[attr-defined]

    media = "application/json"
    return StreamingResponse(
        body(), media_type=media, headers={"Cache-Control": "no-cache, private"}
    )


def _timeout(value: str | None) -> float:
    if value:
        try:
            t = float(value)
        except ValueError as exc:
            raise errors.BadRequest(f"invalid timeoutSeconds: {value!r}") from exc
        if t > 0:
            return t
    # apiserver: a random duration in [minRequestTimeout, 2*minRequestTimeout) (30–60 min).
    return 1800.0 * (1 + random.random())
