"""HTTP handlers for blobs and blob uploads (distribution spec "Pull"/"Push").

Push flows accepted, as the spec lists them:

* monolithic: ``POST /v2/<name>/blobs/uploads/?digest=<d>`` with the body → 201;
* POST then PUT: ``POST`` → 202 + ``Location``, ``PUT <location>?digest=<d>``
  with the body → 201;
* chunked: ``POST``, then ``PATCH`` with ``Content-Range: <start>-<end>`` (or a
  streamed PATCH without it, as docker does), then ``PUT ?digest=``; a chunk
  not starting at the current offset gets 416 and the current ``Range``;
* resume: ``GET <location>`` → 204 with ``Range: 0-<last byte>``, then PATCH
  from the next byte;
* mount: ``POST ?mount=<d>&from=<repo>`` → 201 when the blob is visible in
  ``from`` (or anywhere, when ``from`` is omitted: automatic content
  discovery), else an ordinary 202 session.

Blob GET/HEAD use Starlette's ``FileResponse``, which streams from the file in
chunks and answers ``Range`` requests with 206.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from microkube.oci import blobs, db, errcodes, manifests, names, registry, schema, uploads

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def _location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _session_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": _location(name, upload_id),
        "Range": uploads.range_header(offset),
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: str) -> Response:
    headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
    return Response(status_code=201, headers=headers)


def _blob_unknown(digest: str) -> errcodes.RegistryError:
    return errcodes.RegistryError(
        "BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": digest}
    )


def _lookup(reg: registry.Registry, name: str, digest: str) -> tuple[int | None, bytes | None]:
    with db.read(reg.engine) as conn:
        size = db.blob_size(conn, digest, name)
        if size is not None:
            return size, None
        found = manifests.get(conn, name, digest)
        return None, (found.content if found else None)


async def get_blob(reg: registry.Registry, request: Request, name: str, digest: str) -> Response:
    parsed = names.parse_digest(digest)
    size, manifest_bytes = await reg.run(_lookup, reg, name, digest)
    headers = {"Docker-Content-Digest": digest}
    if manifest_bytes is not None:  # a manifest fetched through /blobs/ (some clients do)
        headers["Content-Length"] = str(len(manifest_bytes))
        body = b"" if request.method == "HEAD" else manifest_bytes
        return Response(body, headers=headers, media_type="application/octet-stream")
    path = reg.store.path(parsed)
    if size is None or not path.is_file():
        raise _blob_unknown(digest)
    response = FileResponse(path, headers=headers, media_type="application/octet-stream")
    response.chunk_size = blobs.CHUNK  # 64 KiB by default: 16x fewer thread hops
    return response


def _unlink(reg: registry.Registry, name: str, digest: str) -> bool:

    rb = schema.repository_blobs
    with reg.store.lock, db.write(reg.engine) as conn:
        result = conn.execute(sa.delete(rb).where(rb.c.repository == name, rb.c.digest == digest))
        return result.rowcount > 0


async def delete_blob(reg: registry.Registry, request: Request, name: str, digest: str) -> Response:
    names.parse_digest(digest)
    if not await reg.run(_unlink, reg, name, digest):
        raise _blob_unknown(digest)
    return Response(status_code=202)


def _mount(reg: registry.Registry, name: str, digest: str, source: str | None) -> bool:
    with reg.store.lock, db.write(reg.engine) as conn:
        if db.blob_size(conn, digest, source) is None:
            return False
        if not reg.store.has(names.parse_digest(digest)):
            return False
        db.link_blob(conn, name, digest)
        return True


async def start_upload(reg: registry.Registry, request: Request, name: str) -> Response:
    params = request.query_params
    mount = params.get("mount")
    if mount:
        names.parse_digest(mount)
        source = params.get("from")
        if source is not None:
            names.check_name(source)
        if await reg.run(_mount, reg, name, mount, source):
            return _created(name, mount)
    digest = params.get("digest")
    upload_id = await reg.uploads.start(name)
    body = registry.RequestBody(request)
    if digest is not None:
        try:
            parsed = names.parse_digest(digest)
        except errcodes.RegistryError:
            await reg.uploads.cancel(name, upload_id)
            raise
        length = registry.int_header(request, "content-length")
        try:
            await reg.uploads.finish(name, upload_id, parsed, body, length=length)
        except (errcodes.RegistryError, OSError):
            # A monolithic upload has no Location to resume from: reclaim it now.
            await reg.uploads.discard(name, upload_id)
            raise
        return _created(name, digest)
    offset = 0
    if registry.int_header(request, "content-length"):
        offset = await reg.uploads.append(name, upload_id, body)
    return Response(status_code=202, headers=_session_headers(name, upload_id, offset))


def _parse_range(request: Request) -> tuple[int | None, int | None]:
    """``(start, length)`` from ``Content-Range``, else ``(None, Content-Length)``."""
    value = request.headers.get("content-range")
    if value is None:
        return None, registry.int_header(request, "content-length")
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise errcodes.RegistryError(
            "BLOB_UPLOAD_INVALID",
            "invalid Content-Range",
            detail={"Content-Range": value},
            status=416,
        )
    start, end = int(match[1]), int(match[2])
    return start, end - start + 1


async def patch_upload(
    reg: registry.Registry, request: Request, name: str, upload_id: str
) -> Response:
    names.check_upload_id(upload_id)
    start, length = _parse_range(request)
    offset = await reg.uploads.append(
        name, upload_id, registry.RequestBody(request), start=start, length=length
    )
    return Response(status_code=202, headers=_session_headers(name, upload_id, offset))


async def finish_upload(
    reg: registry.Registry, request: Request, name: str, upload_id: str
) -> Response:
    names.check_upload_id(upload_id)
    digest = request.query_params.get("digest")
    if not digest:
        raise errcodes.RegistryError("DIGEST_INVALID", "digest query parameter required")
    parsed = names.parse_digest(digest)
    start, length = _parse_range(request)
    if start is not None or length:
        await reg.uploads.append(
            name, upload_id, registry.RequestBody(request), start=start, length=length
        )
        await reg.uploads.finish(name, upload_id, parsed)
    else:
        body = registry.RequestBody(request)
        await reg.uploads.finish(name, upload_id, parsed, body, length=length)
    return _created(name, digest)


async def upload_status(
    reg: registry.Registry, request: Request, name: str, upload_id: str
) -> Response:
    names.check_upload_id(upload_id)
    offset = await reg.uploads.status(name, upload_id)
    return Response(status_code=204, headers=_session_headers(name, upload_id, offset))


async def cancel_upload(
    reg: registry.Registry, request: Request, name: str, upload_id: str
) -> Response:
    names.check_upload_id(upload_id)
    await reg.uploads.cancel(name, upload_id)
    return Response(status_code=204)
