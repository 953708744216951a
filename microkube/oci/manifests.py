"""Manifests: validation of pushed JSON, and their rows.

A manifest PUT is checked and recorded in one write transaction under the
blob store's lock (:attr:`microkube.oci.blobs.BlobStore.lock`): every blob it
references (config, layers) must be visible in the repository and every child
manifest of an index must exist there, else ``MANIFEST_BLOB_UNKNOWN``; then the
manifest row, its references (the GC's mark set) and the tag are written.
The bytes are stored exactly as pushed: the digest is over those bytes.

``subject`` (OCI 1.1 referrers) need not exist; the manifest is indexed by it
for :func:`referrers`.  The ``artifactType`` reported for a referrer is the
manifest's own ``artifactType``, else its config's media type (image spec).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from microkube.oci import db, errcodes, names, schema

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest accepted (the spec's SHOULD-accept floor)."""

_NON_DISTRIBUTABLE = (
    "application/vnd.docker.image.rootfs.foreign.",
    "application/vnd.oci.image.layer.nondistributable.",
)


@dataclass
class Parsed:
    """What a manifest says about itself and what it needs."""

    media_type: str
    blobs: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    subject: str | None = None
    artifact_type: str | None = None


def _invalid(message: str, **detail: Any) -> errcodes.RegistryError:
    return errcodes.RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    if not isinstance(value.get("mediaType"), str):
        raise _invalid(f"{where}.mediaType missing")
    if not isinstance(value.get("size"), int) or value["size"] < 0:
        raise _invalid(f"{where}.size missing or negative")
    if not isinstance(value.get("digest"), str):
        raise _invalid(f"{where}.digest missing")
    try:
        names.parse_digest(value["digest"])
    except errcodes.RegistryError as exc:
        raise _invalid(f"{where}.digest invalid", digest=value["digest"]) from exc
    return value


def parse(body: bytes, content_type: str | None) -> Parsed:
    """Validate a pushed manifest; MANIFEST_INVALID with the reason if bad."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise errcodes.RegistryError(
            "SIZE_INVALID", "manifest too large", detail={"limit": MAX_MANIFEST_BYTES}, status=413
        )
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    declared = doc.get("mediaType")
    ctype = (content_type or "").split(";")[0].strip()
    if ctype in ("", "application/json", "application/octet-stream"):
        ctype = ""
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType is not a string")
    if ctype and declared and ctype != declared:
        raise _invalid("Content-Type does not match mediaType", mediaType=declared)
    media_type = ctype or declared or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
    if media_type not in IMAGE_TYPES | INDEX_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    parsed = Parsed(media_type)
    if media_type in IMAGE_TYPES:
        config = _descriptor(doc.get("config"), "config")
        parsed.blobs.append(config["digest"])
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        for i, layer in enumerate(layers):
            layer = _descriptor(layer, f"layers[{i}]")
            foreign = layer["mediaType"].startswith(_NON_DISTRIBUTABLE) or layer.get("urls")
            if not foreign:
                parsed.blobs.append(layer["digest"])
        artifact = doc.get("artifactType")
        parsed.artifact_type = artifact if isinstance(artifact, str) else config["mediaType"]
    else:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("manifests must be a list")
        for i, child in enumerate(children):
            parsed.children.append(_descriptor(child, f"manifests[{i}]")["digest"])
        artifact = doc.get("artifactType")
        parsed.artifact_type = artifact if isinstance(artifact, str) else None
    if "subject" in doc:
        parsed.subject = _descriptor(doc["subject"], "subject")["digest"]
    return parsed


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes


def put(conn: sa.Connection, repository: str, reference: str, body: bytes, parsed: Parsed) -> str:
    """Record a validated manifest under a tag or digest; returns its digest.

    Call inside a write transaction, holding the blob store lock.
    """
    if names.looks_like_digest(reference):
        want = names.parse_digest(reference)
        digest = names.digest_of(body, want.algorithm)
        if digest != str(want):
            raise errcodes.RegistryError(
                "DIGEST_INVALID",
                "manifest digest does not match the reference",
                detail={"digest": reference, "actual": digest},
            )
        tag = None
    else:
        if not names.is_tag(reference):
            raise _invalid("invalid tag", tag=reference)
        digest, tag = names.digest_of(body), reference
    missing = [d for d in dict.fromkeys(parsed.blobs) if db.blob_size(conn, d, repository) is None]
    missing += [d for d in dict.fromkeys(parsed.children) if not _exists(conn, repository, d)]
    if missing:
        raise errcodes.RegistryError(
            "MANIFEST_BLOB_UNKNOWN",
            "manifest references unknown blobs or manifests",
            detail={"digests": missing},
        )
    now = time.time()
    db.ensure_repository(conn, repository)
    conn.execute(
        insert(schema.manifests)
        .values(
            repository=repository,
            digest=digest,
            media_type=parsed.media_type,
            artifact_type=parsed.artifact_type,
            subject=parsed.subject,
            size=len(body),
            content=body,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    refs = [(d, "blob") for d in dict.fromkeys(parsed.blobs)]
    refs += [(d, "manifest") for d in dict.fromkeys(parsed.children)]
    for ref, kind in refs:
        conn.execute(
            insert(schema.manifest_refs)
            .values(repository=repository, manifest=digest, ref=ref, kind=kind)
            .on_conflict_do_nothing()
        )
    if tag is not None:
        conn.execute(
            insert(schema.tags)
            .values(repository=repository, tag=tag, digest=digest, updated_at=now)
            .on_conflict_do_update(
                index_elements=["repository", "tag"], set_={"digest": digest, "updated_at": now}
            )
        )
    return digest


def _exists(conn: sa.Connection, repository: str, digest: str) -> bool:
    m = schema.manifests
    row = conn.execute(
        sa.select(m.c.digest).where(m.c.repository == repository, m.c.digest == digest)
    ).first()
    return row is not None


def _get_statements() -> tuple[sa.Select[Any], sa.Select[Any]]:
    m, t = schema.manifests, schema.tags
    columns = sa.select(m.c.digest, m.c.media_type, m.c.content)
    by_digest = columns.where(
        m.c.repository == sa.bindparam("repository"), m.c.digest == sa.bindparam("reference")
    )
    by_tag = columns.join(
        t, sa.and_(t.c.repository == m.c.repository, t.c.digest == m.c.digest)
    ).where(t.c.repository == sa.bindparam("repository"), t.c.tag == sa.bindparam("reference"))
    return by_digest, by_tag


_GET_BY_DIGEST, _GET_BY_TAG = _get_statements()
"""Built once: building the statement on every pull cost more than running it."""


def get(conn: sa.Connection, repository: str, reference: str) -> Manifest | None:
    """The manifest a tag or digest names in ``repository`` (one query: the hot pull path)."""
    if names.looks_like_digest(reference):
        names.parse_digest(reference)
        query = _GET_BY_DIGEST
    else:
        query = _GET_BY_TAG
    row = conn.execute(query, {"repository": repository, "reference": reference}).first()
    return None if row is None else Manifest(row.digest, row.media_type, bytes(row.content))


def delete(conn: sa.Connection, repository: str, reference: str) -> bool:
    """Delete a tag, or a manifest by digest (with its tags and references)."""
    if names.looks_like_digest(reference):
        names.parse_digest(reference)
        m, t, r = schema.manifests, schema.tags, schema.manifest_refs
        # Explicit rather than relying on ON DELETE CASCADE (needs foreign_keys=ON).
        conn.execute(t.delete().where(t.c.repository == repository, t.c.digest == reference))
        conn.execute(r.delete().where(r.c.repository == repository, r.c.manifest == reference))
        result = conn.execute(
            m.delete().where(m.c.repository == repository, m.c.digest == reference)
        )
        return result.rowcount > 0
    t = schema.tags
    result = conn.execute(t.delete().where(t.c.repository == repository, t.c.tag == reference))
    return result.rowcount > 0


def referrers(
    conn: sa.Connection, repository: str, subject: str, artifact_type: str | None = None
) -> list[dict[str, Any]]:
    """Descriptors of the manifests whose ``subject`` is ``subject``."""
    m = schema.manifests
    query = sa.select(m.c.digest, m.c.media_type, m.c.size, m.c.artifact_type, m.c.content).where(
        m.c.repository == repository, m.c.subject == subject
    )
    if artifact_type is not None:
        query = query.where(m.c.artifact_type == artifact_type)
    out: list[dict[str, Any]] = []
    for row in conn.execute(query.order_by(m.c.digest)):
        descriptor: dict[str, Any] = {
            "mediaType": row.media_type,
            "digest": row.digest,
            "size": row.size,
        }
        if row.artifact_type:
            descriptor["artifactType"] = row.artifact_type
        annotations = json.loads(row.content).get("annotations")
        if annotations:
            descriptor["annotations"] = annotations
        out.append(descriptor)
    return out
