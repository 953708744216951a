"""Manifest push/pull, tags, catalog, deletion and referrers, over ASGI."""

from __future__ import annotations

import json

import pytest

from microkube.oci import manifests
from tests.oci.conftest import image_manifest, push_blob, push_image, sha256

pytestmark = pytest.mark.anyio


async def test_put_get_head_by_tag_and_digest(client):
    digest, body = await push_image(client, "lib/app", "v1")
    assert digest == sha256(body)
    for ref in ("v1", digest):
        r = await client.get(
            f"/v2/lib/app/manifests/{ref}",
            headers={"Accept": manifests.DOCKER_MANIFEST},  # asks docker only: still served
        )
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == manifests.OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(body))
    r = await client.head("/v2/lib/app/manifests/v1")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["Docker-Content-Digest"] == digest


async def test_put_response_headers(client):
    config, layer = b"{}", b"layer"
    await push_blob(client, "repo", config)
    await push_blob(client, "repo", layer)
    body = image_manifest(config, [layer])
    r = await client.put(
        "/v2/repo/manifests/latest", content=body, headers={"Content-Type": manifests.OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/repo/manifests/{sha256(body)}"
    assert r.headers["Docker-Content-Digest"] == sha256(body)


async def test_unknown_manifest(client):
    await push_image(client, "repo", "v1")
    r = await client.get("/v2/repo/manifests/v2")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    r = await client.head(f"/v2/repo/manifests/{sha256(b'x')}")
    assert r.status_code == 404


async def test_manifest_referencing_missing_blob(client):
    await push_blob(client, "repo", b"{}")
    body = image_manifest(b"{}", [b"never pushed"])
    r = await client.put(
        "/v2/repo/manifests/v1", content=body, headers={"Content-Type": manifests.OCI_MANIFEST}
    )
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert sha256(b"never pushed") in err["detail"]["digests"]
    assert (await client.get("/v2/repo/manifests/v1")).status_code == 404


async def test_blob_in_other_repository_is_not_enough(client):
    await push_blob(client, "other", b"{}")
    await push_blob(client, "other", b"layer")
    body = image_manifest(b"{}", [b"layer"])
    r = await client.put(
        "/v2/repo/manifests/v1", content=body, headers={"Content-Type": manifests.OCI_MANIFEST}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1}',
        json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST}).encode(),
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": manifests.OCI_MANIFEST,
                "config": {"mediaType": "x", "size": 1, "digest": "sha256:bad"},
                "layers": [],
            }
        ).encode(),
    ],
)
async def test_invalid_manifest(client, body):
    r = await client.put(
        "/v2/repo/manifests/v1", content=body, headers={"Content-Type": manifests.OCI_MANIFEST}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"


async def test_content_type_must_match_media_type(client):
    await push_blob(client, "repo", b"{}")
    body = image_manifest(b"{}", [])
    r = await client.put(
        "/v2/repo/manifests/v1", content=body, headers={"Content-Type": manifests.DOCKER_MANIFEST}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID"


async def test_put_by_digest_checks_digest(client):
    await push_blob(client, "repo", b"{}")
    body = image_manifest(b"{}", [])
    ctype = {"Content-Type": manifests.OCI_MANIFEST}
    r = await client.put(f"/v2/repo/manifests/{sha256(b'x')}", content=body, headers=ctype)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    r = await client.put(f"/v2/repo/manifests/{sha256(body)}", content=body, headers=ctype)
    assert r.status_code == 201
    r = await client.get("/v2/repo/tags/list")
    assert r.json() == {"name": "repo", "tags": []}


async def test_docker_schema2_and_manifest_list(client):
    config, layer = b'{"os":"linux"}', b"gz"
    await push_blob(client, "repo", config)
    await push_blob(client, "repo", layer)
    docker = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifests.DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": sha256(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": sha256(layer),
                }
            ],
        }
    ).encode()
    r = await client.put(
        "/v2/repo/manifests/amd64",
        content=docker,
        headers={"Content-Type": manifests.DOCKER_MANIFEST},
    )
    assert r.status_code == 201
    child = r.headers["Docker-Content-Digest"]
    index = {
        "schemaVersion": 2,
        "mediaType": manifests.DOCKER_LIST,
        "manifests": [
            {
                "mediaType": manifests.DOCKER_MANIFEST,
                "size": len(docker),
                "digest": child,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    body = json.dumps(index).encode()
    r = await client.put(
        "/v2/repo/manifests/multi", content=body, headers={"Content-Type": manifests.DOCKER_LIST}
    )
    assert r.status_code == 201
    r = await client.get("/v2/repo/manifests/multi")
    assert r.headers["Content-Type"] == manifests.DOCKER_LIST and r.content == body
    # An index whose child is missing.
    index["manifests"][0]["digest"] = sha256(b"missing")
    r = await client.put(
        "/v2/repo/manifests/bad",
        content=json.dumps(index).encode(),
        headers={"Content-Type": manifests.DOCKER_LIST},
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


async def test_tag_list_pagination(client):
    tags = [f"t{i:02d}" for i in range(7)]
    for tag in reversed(tags):
        await push_image(client, "repo", tag)
    r = await client.get("/v2/repo/tags/list")
    assert r.json() == {"name": "repo", "tags": tags}
    assert "Link" not in r.headers
    r = await client.get("/v2/repo/tags/list", params={"n": 3})
    assert r.json()["tags"] == tags[:3]
    assert r.headers["Link"] == '</v2/repo/tags/list?n=3&last=t02>; rel="next"'
    r = await client.get("/v2/repo/tags/list", params={"n": 3, "last": "t02"})
    assert r.json()["tags"] == tags[3:6]
    r = await client.get("/v2/repo/tags/list", params={"n": 3, "last": "t05"})
    assert r.json()["tags"] == tags[6:] and "Link" not in r.headers
    r = await client.get("/v2/repo/tags/list", params={"n": 0})
    assert r.json()["tags"] == []
    r = await client.get("/v2/nothing/tags/list")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


async def test_catalog_pagination(client):
    for name in ("c", "a/x", "b"):
        await push_image(client, name, "v1")
    r = await client.get("/v2/_catalog")
    assert r.json() == {"repositories": ["a/x", "b", "c"]}
    r = await client.get("/v2/_catalog", params={"n": 2})
    assert r.json() == {"repositories": ["a/x", "b"]}
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=b>; rel="next"'
    r = await client.get("/v2/_catalog", params={"n": 2, "last": "b"})
    assert r.json() == {"repositories": ["c"]}


async def test_delete_tag_and_manifest(client):
    digest, _ = await push_image(client, "repo", "v1")
    r = await client.put(
        "/v2/repo/manifests/v2",
        content=(await client.get("/v2/repo/manifests/v1")).content,
        headers={"Content-Type": manifests.OCI_MANIFEST},
    )
    assert r.headers["Docker-Content-Digest"] == digest
    assert (await client.delete("/v2/repo/manifests/v1")).status_code == 202
    assert (await client.get("/v2/repo/manifests/v1")).status_code == 404
    assert (await client.get(f"/v2/repo/manifests/{digest}")).status_code == 200
    assert (await client.delete(f"/v2/repo/manifests/{digest}")).status_code == 202
    assert (await client.get("/v2/repo/manifests/v2")).status_code == 404
    assert (await client.get("/v2/repo/tags/list")).json()["tags"] == []
    r = await client.delete(f"/v2/repo/manifests/{digest}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_concurrent_pushes_of_same_tag_and_blob(client):
    import anyio

    results: list[str] = []

    async def one(i: int) -> None:
        digest, _ = await push_image(client, "race", "latest", layers=[b"shared", bytes([i])])
        results.append(digest)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    r = await client.get("/v2/race/manifests/latest")
    assert r.headers["Docker-Content-Digest"] in results
    assert (await client.get(f"/v2/race/blobs/{sha256(b'shared')}")).content == b"shared"


async def test_referrers(client):
    subject, _ = await push_image(client, "repo", "v1")
    await push_blob(client, "repo", b"{}")
    await push_blob(client, "repo", b"sig")
    sbom_config = b'{"sbom":true}'
    await push_blob(client, "repo", sbom_config)
    subject_desc = {"mediaType": manifests.OCI_MANIFEST, "digest": subject, "size": 1}
    sig = image_manifest(
        b"{}",
        [b"sig"],
        artifactType="application/vnd.example.sig",
        subject=subject_desc,
        annotations={"k": "v"},
    )
    ctype = {"Content-Type": manifests.OCI_MANIFEST}
    r = await client.put(f"/v2/repo/manifests/{sha256(sig)}", content=sig, headers=ctype)
    assert r.status_code == 201 and r.headers["OCI-Subject"] == subject
    sbom = image_manifest(sbom_config, [], subject=subject_desc)
    r = await client.put(f"/v2/repo/manifests/{sha256(sbom)}", content=sbom, headers=ctype)
    assert r.status_code == 201

    r = await client.get(f"/v2/repo/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == manifests.OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == manifests.OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert by_digest[sha256(sig)]["artifactType"] == "application/vnd.example.sig"
    assert by_digest[sha256(sig)]["annotations"] == {"k": "v"}
    assert by_digest[sha256(sbom)]["artifactType"] == "application/vnd.oci.image.config.v1+json"

    r = await client.get(
        f"/v2/repo/referrers/{subject}", params={"artifactType": "application/vnd.example.sig"}
    )
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sig)]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    r = await client.get(f"/v2/repo/referrers/{sha256(b'none')}")
    assert r.status_code == 200 and r.json()["manifests"] == []


async def test_unsupported_method_and_unknown_endpoint(client):
    r = await client.post("/v2/repo/manifests/v1")
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
    r = await client.get("/v2/repo/whatever")
    assert r.status_code == 404
