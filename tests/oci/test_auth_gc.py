"""Basic auth, and garbage collection of blobs and stale uploads."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from microkube.oci import app as oci_app
from microkube.oci import gc as oci_gc
from tests.oci.conftest import push_blob, push_image, sha256

pytestmark = pytest.mark.anyio


async def test_basic_auth(tmp_path, engine):
    app = oci_app.create_app(tmp_path, engine, auth=("alice", "s3cret"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
        r = await c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="microkube"'
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        r = await c.get("/v2/", auth=("alice", "wrong"))
        assert r.status_code == 401
        r = await c.get("/v2/", auth=("alice", "s3cret"))
        assert r.status_code == 200
        r = await c.get("/v2/_catalog", auth=("alice", "s3cret"))
        assert r.status_code == 200


def _blob_path(tmp_path, digest: str):
    hexpart = digest.split(":")[1]
    return tmp_path / "registry/blobs/sha256" / hexpart[:2] / hexpart


async def test_gc_keeps_referenced_and_young_blobs(client, tmp_path, engine):
    digest, _ = await push_image(client, "repo", "v1", layers=[b"kept layer"])
    orphan = await push_blob(client, "repo", b"orphan")
    registry_dir = tmp_path / "registry"

    # Within the grace period nothing goes, not even the orphan.
    report = oci_gc.gc(engine, registry_dir, grace_seconds=60)
    assert report.blobs_deleted == 0
    assert _blob_path(tmp_path, orphan).exists()

    report = oci_gc.gc(engine, registry_dir, grace_seconds=60, now=time.time() + 120)
    assert report.blobs_deleted == 1 and report.bytes_freed == len(b"orphan")
    assert not _blob_path(tmp_path, orphan).exists()
    assert (await client.head(f"/v2/repo/blobs/{orphan}")).status_code == 404
    assert (await client.get(f"/v2/repo/blobs/{sha256(b'kept layer')}")).content == b"kept layer"

    # Deleting the manifest makes its blobs collectable.
    assert (await client.delete(f"/v2/repo/manifests/{digest}")).status_code == 202
    report = oci_gc.gc(engine, registry_dir, grace_seconds=60, now=time.time() + 120)
    assert report.blobs_deleted == 2
    assert not _blob_path(tmp_path, sha256(b"kept layer")).exists()


async def test_gc_reclaims_stale_uploads_and_orphan_files(client, tmp_path, engine):
    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    await client.patch(location, content=b"partial", headers={"Content-Range": "0-6"})
    junk = tmp_path / "registry/uploads/0123"
    junk.write_bytes(b"crash leftover")
    old = time.time() - 7200
    os.utime(junk, (old, old))

    report = oci_gc.gc(engine, tmp_path / "registry", grace_seconds=3600, upload_ttl_seconds=3600)
    assert report.uploads_deleted == 0 and report.orphans_deleted == 1
    assert not junk.exists()
    assert (await client.get(location)).status_code == 204

    report = oci_gc.gc(
        engine, tmp_path / "registry", upload_ttl_seconds=3600, now=time.time() + 7200
    )
    assert report.uploads_deleted == 1
    assert (await client.get(location)).status_code == 404
    assert list((tmp_path / "registry/uploads").iterdir()) == []


async def test_repushed_blob_restarts_grace(client, tmp_path, engine):
    digest = await push_blob(client, "repo", b"again")
    report = oci_gc.gc(engine, tmp_path / "registry", grace_seconds=3600)
    assert report.blobs_deleted == 0
    await push_blob(client, "repo", b"again")
    assert (await client.get(f"/v2/repo/blobs/{digest}")).content == b"again"
