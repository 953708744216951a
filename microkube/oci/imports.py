"""Import of image tarballs into the registry, and the image listing.

``microkube images import`` (like ``microk8s images import``) takes the
tarballs ``docker save``/``podman save`` write:

* **oci-archive**: an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/<alg>/<hex>``).  Manifests and blobs are copied byte for byte, so
  digests are preserved.  The name of each ``index.json`` entry comes from
  ``io.containerd.image.name`` (docker ≥ 25) or
  ``org.opencontainers.image.ref.name``, which is a full reference (podman)
  or only a tag (skopeo, docker), then completed by ``reference``.
* **docker-archive**: ``manifest.json`` listing ``Config``, ``Layers`` and
  ``RepoTags``.  The archive holds no manifest, so a Docker schema 2 manifest
  is written for it; layers keep their bytes (uncompressed tar from podman,
  so the layer digest equals the diff id in the config).

A reference ``[host/]path:tag`` becomes repository ``path`` and tag ``tag``
(:func:`microkube.oci.names.split_reference`: the registry host is dropped).
Blobs are streamed from the tar into the blob store (never held whole) and
verified against the digest their name claims.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from microkube.oci import blobs, db, manifests, names, schema


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str
    digest: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


class ArchiveError(ValueError):
    """The file is not an image archive we understand."""


class _Archive:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members = {m.name.removeprefix("./"): m for m in tar.getmembers()}

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        handle = self.tar.extractfile(member) if member is not None else None
        if handle is None:
            raise ArchiveError(f"archive has no file {name}")
        return handle

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()


class _Importer:
    def __init__(self, engine: sa.Engine, store: blobs.BlobStore) -> None:
        self.engine = engine
        self.store = store

    def blob(
        self, repository: str, source: IO[bytes], expected: str | None = None
    ) -> tuple[str, int]:
        digest, size = self.store.ingest(source, expected=expected)
        with self.store.lock, db.write(self.engine) as conn:
            db.record_blob(conn, repository, digest, size)
        return digest, size

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str | None) -> str:
        parsed = manifests.parse(body, media_type)
        with self.store.lock, db.write(self.engine) as conn:
            return manifests.put(conn, repository, reference, body, parsed)


def _blob_name(digest: str) -> str:
    parsed = names.parse_digest(digest)
    return f"blobs/{parsed.algorithm}/{parsed.hex}"


def _import_oci_manifest(
    imp: _Importer, archive: _Archive, repository: str, descriptor: dict[str, Any]
) -> None:
    """Copy the blobs (and child manifests) of one manifest, recursively."""
    body = archive.read(_blob_name(descriptor["digest"]))
    parsed = manifests.parse(body, descriptor.get("mediaType"))
    for digest in parsed.blobs:
        with archive.open(_blob_name(digest)) as handle:
            imp.blob(repository, handle, digest)
    doc = json.loads(body)
    for child in doc.get("manifests", []):
        if archive.has(_blob_name(child["digest"])):
            _import_oci_manifest(imp, archive, repository, child)
            imp.manifest(
                repository,
                child["digest"],
                archive.read(_blob_name(child["digest"])),
                child.get("mediaType"),
            )


def _import_oci(imp: _Importer, archive: _Archive, reference: str | None) -> list[ImageRef]:
    index = json.loads(archive.read("index.json"))
    out: list[ImageRef] = []
    for entry in index.get("manifests", []):
        annotations = entry.get("annotations") or {}
        ref = annotations.get("io.containerd.image.name") or annotations.get(
            "org.opencontainers.image.ref.name"
        )
        if ref and ("/" in ref or ":" in ref or names.is_valid_name(ref) and not names.is_tag(ref)):
            repository, tag = names.split_reference(ref)
        elif reference:
            repository, tag = names.split_reference(reference)
            if ref and names.is_tag(ref):
                tag = ref
        else:
            raise ArchiveError("archive entry has no image name; pass a reference")
        names.check_name(repository)
        _import_oci_manifest(imp, archive, repository, entry)
        body = archive.read(_blob_name(entry["digest"]))
        digest = imp.manifest(repository, tag, body, entry.get("mediaType"))
        out.append(ImageRef(repository, tag, digest))
    return out


def _layer_media_type(archive: _Archive, name: str) -> str:
    with archive.open(name) as handle:
        magic = handle.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "application/vnd.docker.image.rootfs.diff.tar.gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.docker.image.rootfs.diff.tar"


def _import_docker(imp: _Importer, archive: _Archive, reference: str | None) -> list[ImageRef]:
    out: list[ImageRef] = []
    for entry in json.loads(archive.read("manifest.json")):
        refs = entry.get("RepoTags") or ([reference] if reference else [])
        if not refs:
            raise ArchiveError("archive image has no RepoTags; pass a reference")
        targets = [names.split_reference(ref) for ref in refs]
        for repository, _ in targets:
            names.check_name(repository)
        for repository, tag in targets:
            with archive.open(entry["Config"]) as handle:
                config_digest, config_size = imp.blob(repository, handle)
            layers = []
            for layer in entry["Layers"]:
                with archive.open(layer) as handle:
                    digest, size = imp.blob(repository, handle)
                layers.append(
                    {"mediaType": _layer_media_type(archive, layer), "size": size, "digest": digest}
                )
            doc = {
                "schemaVersion": 2,
                "mediaType": manifests.DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": config_size,
                    "digest": config_digest,
                },
                "layers": layers,
            }
            body = json.dumps(doc, indent=3).encode()
            digest = imp.manifest(repository, tag, body, manifests.DOCKER_MANIFEST)
            out.append(ImageRef(repository, tag, digest))
    return out


def import_archive(
    path: Path, engine: sa.Engine, state_dir: Path, *, reference: str | None = None
) -> list[ImageRef]:
    """Import a docker-archive or oci-archive tarball; returns what was tagged.

    ``reference`` names images the archive leaves unnamed.  Blocking.
    Raises :class:`ArchiveError` for an unknown format and
    :class:`~microkube.oci.errcodes.RegistryError` for corrupt content.
    """
    imp = _Importer(engine, blobs.BlobStore(state_dir / "registry"))
    with tarfile.open(path) as tar:
        archive = _Archive(tar)
        if archive.has("index.json") and archive.has("oci-layout"):
            index = json.loads(archive.read("index.json"))
            named = all(
                (m.get("annotations") or {}).keys()
                & {"io.containerd.image.name", "org.opencontainers.image.ref.name"}
                for m in index.get("manifests", [])
            )
            if named or reference or not archive.has("manifest.json"):
                return _import_oci(imp, archive, reference)
        if archive.has("manifest.json"):
            return _import_docker(imp, archive, reference)
    raise ArchiveError(f"{path} is neither a docker-archive nor an oci-archive")


@dataclass(frozen=True)
class ImageInfo:
    repository: str
    tag: str
    digest: str
    media_type: str
    size: int
    """Bytes of the manifest, its blobs and its child manifests' blobs."""


def list_images(engine: sa.Engine) -> list[ImageInfo]:
    """Every tagged image, sorted by repository and tag (``microkube images ls``)."""
    t, m, r, b = schema.tags, schema.manifests, schema.manifest_refs, schema.blobs
    with db.read(engine) as conn:
        rows = conn.execute(
            sa.select(t.c.repository, t.c.tag, t.c.digest, m.c.media_type, m.c.size)
            .join(m, (m.c.repository == t.c.repository) & (m.c.digest == t.c.digest))
            .order_by(t.c.repository, t.c.tag)
        ).all()
        sizes = {row.digest: int(row.size) for row in conn.execute(sa.select(b.c.digest, b.c.size))}
        refs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for row in conn.execute(sa.select(r.c.repository, r.c.manifest, r.c.ref, r.c.kind)):
            refs.setdefault((row.repository, row.manifest), []).append((row.ref, row.kind))

    def total(repository: str, digest: str, depth: int = 0) -> int:
        size = 0
        for ref, kind in refs.get((repository, digest), []):
            if kind == "blob":
                size += sizes.get(ref, 0)
            elif depth < 4:
                size += total(repository, ref, depth + 1)
        return size

    return [
        ImageInfo(
            row.repository,
            row.tag,
            row.digest,
            row.media_type,
            row.size + total(row.repository, row.digest),
        )
        for row in rows
    ]
