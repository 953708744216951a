"""Blob pull and every push flow of the distribution spec, over ASGI."""

from __future__ import annotations

import hashlib
import os

import pytest

from microkube.oci import app as oci_app
from tests.oci.conftest import push_blob, sha256

pytestmark = pytest.mark.anyio


def _blob_files(tmp_path):
    return sorted(p for p in (tmp_path / "registry" / "blobs").rglob("*") if p.is_file())


async def test_version_check(client):
    r = await client.get("/v2/")
    assert r.status_code == 200
    assert r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_push_then_get_head_and_range(client, tmp_path):
    data = os.urandom(5000)
    digest = await push_blob(client, "lib/app", data)
    hexpart = digest.split(":")[1]
    assert (tmp_path / "registry/blobs/sha256" / hexpart[:2] / hexpart).read_bytes() == data

    r = await client.get(f"/v2/lib/app/blobs/{digest}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.head(f"/v2/lib/app/blobs/{digest}")
    assert r.status_code == 200 and r.headers["Content-Length"] == "5000" and r.content == b""
    r = await client.get(f"/v2/lib/app/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/5000"


async def test_unknown_blob_and_other_repo_404(client):
    digest = await push_blob(client, "one", b"hello")
    r = await client.get(f"/v2/two/blobs/{digest}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    r = await client.get(f"/v2/one/blobs/{sha256(b'nope')}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    r = await client.get("/v2/one/blobs/sha256:xyz")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"


async def test_post_then_put(client):
    r = await client.post("/v2/repo/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert r.headers["Docker-Upload-UUID"] in location
    r = await client.put(location, params={"digest": sha256(b"abc")}, content=b"abc")
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/repo/blobs/{sha256(b'abc')}"
    assert (await client.get(r.headers["Location"])).content == b"abc"


async def test_digest_mismatch_stores_nothing(client, tmp_path):
    r = await client.post(
        "/v2/repo/blobs/uploads/", params={"digest": sha256(b"other")}, content=b"abc"
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert _blob_files(tmp_path) == []
    assert list((tmp_path / "registry/uploads").iterdir()) == []
    r = await client.head(f"/v2/repo/blobs/{sha256(b'abc')}")
    assert r.status_code == 404


async def test_sha512_digest_verified(client):
    data = b"x" * 3000
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = await client.post("/v2/repo/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201
    assert (await client.get(f"/v2/repo/blobs/{digest}")).content == data
    bad = "sha512:" + hashlib.sha512(b"y").hexdigest()
    r = await client.post("/v2/repo/blobs/uploads/", params={"digest": bad}, content=data)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"


async def test_chunked_upload_and_out_of_order_chunk(client):
    data = os.urandom(3 * 1024 * 1024 + 17)
    a, b, c = data[:1_000_000], data[1_000_000:2_500_000], data[2_500_000:]
    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    r = await client.patch(location, content=a, headers={"Content-Range": f"0-{len(a) - 1}"})
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(a) - 1}"
    # Out of order: skips chunk b.
    start = len(a) + len(b)
    r = await client.patch(
        location, content=c, headers={"Content-Range": f"{start}-{start + len(c) - 1}"}
    )
    assert r.status_code == 416
    assert r.headers["Range"] == f"0-{len(a) - 1}"
    r = await client.patch(
        location, content=b, headers={"Content-Range": f"{len(a)}-{len(a) + len(b) - 1}"}
    )
    assert r.status_code == 202
    # Streamed PATCH without Content-Range (docker's way) appends.
    r = await client.patch(location, content=c)
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert (await client.get(f"/v2/repo/blobs/{sha256(data)}")).content == data


async def test_chunk_length_mismatch_is_rolled_back(client):
    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    r = await client.patch(location, content=b"12345", headers={"Content-Range": "0-9"})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "SIZE_INVALID"
    r = await client.get(location)
    assert r.status_code == 204 and r.headers["Range"] == "0-0"
    await client.patch(location, content=b"hello", headers={"Content-Range": "0-4"})
    r = await client.put(location, params={"digest": sha256(b"hello")})
    assert r.status_code == 201


async def test_status_then_resume_after_restart(client, tmp_path, engine):
    data = os.urandom(2_000_000)
    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    await client.patch(location, content=data[:1_200_000], headers={"Content-Range": "0-1199999"})
    # A new app instance has no in-memory hash state: it must re-hash the file.
    import httpx

    fresh = oci_app.create_app(tmp_path, engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fresh), base_url="http://registry"
    ) as other:
        r = await other.get(location)
        assert r.status_code == 204
        assert r.headers["Range"] == "0-1199999"
        assert r.headers["Location"] == location
        assert r.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
        offset = int(r.headers["Range"].split("-")[1]) + 1
        r = await other.patch(
            location, content=data[offset:], headers={"Content-Range": f"{offset}-{len(data) - 1}"}
        )
        assert r.status_code == 202
        r = await other.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201


async def test_cancel_upload(client):
    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    assert (await client.delete(location)).status_code == 204
    r = await client.get(location)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(location, content=b"x")
    assert r.status_code == 404
    r = await client.get("/v2/repo/blobs/uploads/../../etc")
    assert r.status_code in (400, 404)


async def test_upload_id_belongs_to_its_repository(client):
    location = (await client.post("/v2/one/blobs/uploads/")).headers["Location"]
    other = location.replace("/v2/one/", "/v2/two/")
    r = await client.get(other)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


async def test_cross_repository_mount(client):
    digest = await push_blob(client, "src/repo", b"shared layer")
    r = await client.post(
        "/v2/dst/repo/blobs/uploads/", params={"mount": digest, "from": "src/repo"}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/dst/repo/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.get(f"/v2/dst/repo/blobs/{digest}")).content == b"shared layer"
    # Not present in "from": falls back to an upload session.
    missing = sha256(b"absent")
    r = await client.post(
        "/v2/dst/repo/blobs/uploads/", params={"mount": missing, "from": "src/repo"}
    )
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]


async def test_delete_blob(client):
    digest = await push_blob(client, "repo", b"bye")
    assert (await client.delete(f"/v2/repo/blobs/{digest}")).status_code == 202
    assert (await client.head(f"/v2/repo/blobs/{digest}")).status_code == 404
    r = await client.delete(f"/v2/repo/blobs/{digest}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


@pytest.mark.parametrize(
    "name",
    ["UPPER/case", "a/%2e%2e/b", "%2e%2e", "a/%2E%2E", "a//b", "-lead", "a/b_", "x" * 300],
)
async def test_invalid_names(client, name):
    # Dots are percent-encoded so that the client does not normalise them away.
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 400, (r.request.url, r.text)
    assert r.json()["errors"][0]["code"] == "NAME_INVALID"


async def test_quota_exceeded_is_denied(tmp_path, engine):
    import httpx

    app = oci_app.create_app(tmp_path, engine, quota_bytes=1000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
        assert (await push_blob(c, "repo", b"a" * 600)).startswith("sha256:")
        r = await c.post(
            "/v2/repo/blobs/uploads/", params={"digest": sha256(b"b" * 600)}, content=b"b" * 600
        )
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert _blob_files(tmp_path) and len(_blob_files(tmp_path)) == 1
        # The same blob again costs nothing.
        await push_blob(c, "other", b"a" * 600)


async def test_disk_full_is_507_and_rolls_back(client, monkeypatch):
    import errno

    from microkube.oci import uploads

    location = (await client.post("/v2/repo/blobs/uploads/")).headers["Location"]
    await client.patch(location, content=b"first", headers={"Content-Range": "0-4"})

    def full(handle, progress, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads.Uploads, "_write", staticmethod(full))
    r = await client.patch(location, content=b"second", headers={"Content-Range": "5-10"})
    assert r.status_code == 507
    assert r.json()["errors"][0]["code"] == "UNKNOWN"
    monkeypatch.undo()
    r = await client.get(location)
    assert r.headers["Range"] == "0-4"
    await client.patch(location, content=b"second", headers={"Content-Range": "5-10"})
    r = await client.put(location, params={"digest": sha256(b"firstsecond")})
    assert r.status_code == 201
