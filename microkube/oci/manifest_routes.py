"""HTTP handlers for manifests, tags, the catalog and the referrers API.

Content negotiation: a manifest is always served as stored, with its stored
media type, whatever the ``Accept`` header lists.  Clients that ask only for
Docker schema 2 still get an OCI manifest this way, as from distribution and
the big registries; converting would change the digest the client asked for.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from microkube.oci import db, errcodes, manifests, names, registry, tags

_JSON = "application/json"


def _json(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None, media_type: str = _JSON
) -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=media_type)


def _manifest_unknown(reference: str) -> errcodes.RegistryError:
    return errcodes.RegistryError(
        "MANIFEST_UNKNOWN", "manifest unknown to registry", detail={"reference": reference}
    )


def _get(reg: registry.Registry, name: str, reference: str) -> manifests.Manifest | None:
    with db.read(reg.engine) as conn:
        return manifests.get(conn, name, reference)


async def get_manifest(
    reg: registry.Registry, request: Request, name: str, reference: str
) -> Response:
    if not (names.looks_like_digest(reference) or names.is_tag(reference)):
        raise _manifest_unknown(reference)
    found = await reg.run(_get, reg, name, reference)
    if found is None:
        raise _manifest_unknown(reference)
    headers = {
        "Docker-Content-Digest": found.digest,
        "Content-Length": str(len(found.content)),
        "Content-Type": found.media_type,
        "ETag": f'"{found.digest}"',
    }
    body = b"" if request.method == "HEAD" else found.content
    return Response(body, headers=headers)


def _put(
    reg: registry.Registry, name: str, reference: str, body: bytes, parsed: manifests.Parsed
) -> str:
    with reg.store.lock, db.write(reg.engine) as conn:
        return manifests.put(conn, name, reference, body, parsed)


async def put_manifest(
    reg: registry.Registry, request: Request, name: str, reference: str
) -> Response:
    body = await registry.read_limited(request, manifests.MAX_MANIFEST_BYTES)
    parsed = manifests.parse(body, request.headers.get("content-type"))
    digest = await reg.run(_put, reg, name, reference, body, parsed)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if parsed.subject:
        headers["OCI-Subject"] = parsed.subject
    return Response(status_code=201, headers=headers)


def _delete(reg: registry.Registry, name: str, reference: str) -> bool:
    with reg.store.lock, db.write(reg.engine) as conn:
        return manifests.delete(conn, name, reference)


async def delete_manifest(
    reg: registry.Registry, request: Request, name: str, reference: str
) -> Response:
    if not (names.looks_like_digest(reference) or names.is_tag(reference)):
        raise _manifest_unknown(reference)
    if not await reg.run(_delete, reg, name, reference):
        raise _manifest_unknown(reference)
    return Response(status_code=202)


def _link(path: str, n: int, last: str) -> dict[str, str]:
    return {"Link": f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'}


def _tags(reg: registry.Registry, name: str, n: int | None, last: str | None) -> tags.Page | None:
    with db.read(reg.engine) as conn:
        if not db.repository_exists(conn, name):
            return None
        return tags.list_tags(conn, name, n, last)


async def list_tags(reg: registry.Registry, request: Request, name: str) -> Response:
    n = registry.int_param(request, "n")
    last = request.query_params.get("last")
    page = await reg.run(_tags, reg, name, n, last)
    if page is None:
        raise errcodes.RegistryError(
            "NAME_UNKNOWN", "repository name not known to registry", detail={"name": name}
        )
    headers = (
        _link(f"/v2/{name}/tags/list", n or len(page.items), page.items[-1]) if page.more else None
    )
    return _json({"name": name, "tags": page.items}, headers=headers)


def _catalog(reg: registry.Registry, n: int | None, last: str | None) -> tags.Page:
    with db.read(reg.engine) as conn:
        return tags.catalog(conn, n, last)


async def catalog(reg: registry.Registry, request: Request) -> Response:
    n = registry.int_param(request, "n")
    last = request.query_params.get("last")
    page = await reg.run(_catalog, reg, n, last)
    headers = _link("/v2/_catalog", n or len(page.items), page.items[-1]) if page.more else None
    return _json({"repositories": page.items}, headers=headers)


def _referrers(
    reg: registry.Registry, name: str, digest: str, artifact_type: str | None
) -> list[dict[str, Any]]:
    with db.read(reg.engine) as conn:
        return manifests.referrers(conn, name, digest, artifact_type)


async def referrers(reg: registry.Registry, request: Request, name: str, digest: str) -> Response:
    names.parse_digest(digest)
    artifact_type = request.query_params.get("artifactType") or None
    found = await reg.run(_referrers, reg, name, digest, artifact_type)
    index = {"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": found}
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else None
    return _json(index, headers=headers, media_type=manifests.OCI_INDEX)
