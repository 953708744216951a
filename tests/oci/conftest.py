"""Fixtures: a migrated SQLite store in tmp_path and the registry app over ASGI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from microkube.oci import app as oci_app
from microkube.oci import manifests
from microkube.store import engine as store_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = store_engine.create_engine(tmp_path / "state.db")
    store_engine.migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def app(tmp_path: Path, engine: sa.Engine):  # type: ignore[no-untyped-def]
    return oci_app.create_app(tmp_path, engine)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
        yield c


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_blob(client: httpx.AsyncClient, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def image_manifest(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": manifests.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(layer),
                "size": len(layer),
            }
            for layer in layers
        ],
        **extra,
    }
    return json.dumps(doc).encode()


async def push_image(
    client: httpx.AsyncClient,
    name: str,
    tag: str,
    *,
    layers: list[bytes] | None = None,
    config: bytes = b'{"architecture":"amd64","os":"linux"}',
    **extra: object,
) -> tuple[str, bytes]:
    layers = layers if layers is not None else [b"layer-" + tag.encode()]
    for blob in [config, *layers]:
        await push_blob(client, name, blob)
    body = image_manifest(config, layers, **extra)
    r = await client.put(
        f"/v2/{name}/manifests/{tag}",
        content=body,
        headers={"Content-Type": manifests.OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], body


class Server:
    """A real uvicorn serving ``app`` on 127.0.0.1:<random port> in a thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import threading

        import uvicorn

        self.sock = oci_app.listen_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.server = uvicorn.Server(oci_app.server_config(app))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Server:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def server(app) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    with Server(app) as srv:
        yield srv
