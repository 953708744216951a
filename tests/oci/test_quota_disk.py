"""Running out of room: the size quota while an upload streams, and a really full disk.

Over a real socket (uvicorn in a thread), because "as soon as" is only visible
there: the client sends part of a body that would break the quota and then
waits; the registry must answer DENIED without waiting for the rest, and the
session and its temporary file must already be gone.  The full disk is real
too: the registry's directory (and its database) on a 1 MiB tmpfs.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from microkube.oci import app as oci_app
from microkube.store import engine as store_engine
from tests.oci.conftest import Server, sha256

QUOTA = 1_000_000


@pytest.fixture
def quota_server(tmp_path: Path, engine: sa.Engine) -> Iterator[Server]:
    with Server(oci_app.create_app(tmp_path, engine, quota_bytes=QUOTA)) as srv:
        yield srv


def _uploads(root: Path) -> list[Path]:
    return list((root / "registry" / "uploads").iterdir())


def _blobs(root: Path) -> list[Path]:
    return [p for p in (root / "registry" / "blobs").rglob("*") if p.is_file()]


def _send_partial(port: int, head: str, body: bytes) -> bytes:
    """Send ``head`` and part of a body, never the rest; return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = raw.recv(65536)
            if not chunk:
                return data
            data += chunk
        top, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", top)[1])  # type: ignore[index]
        while len(rest) < length and (chunk := raw.recv(65536)):
            rest += chunk
        return top + b"\r\n\r\n" + rest


def test_quota_checked_while_streaming(quota_server: Server, tmp_path: Path) -> None:
    base = f"http://{quota_server.address}"
    with httpx.Client(base_url=base) as client:
        location = client.post("/v2/q/blobs/uploads/").headers["Location"]
        # A chunked PATCH (no length announced): 1.5 MB arrive, the client then stalls.
        piece = os.urandom(1_500_000)
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: {quota_server.address}\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(piece):x}\r\n"
        )
        answer = _send_partial(quota_server.port, head, piece)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
        assert b"DENIED" in answer
        # The session and its partial file were reclaimed at once.
        assert client.get(location).status_code == 404
        assert _uploads(tmp_path) == [] and _blobs(tmp_path) == []
        # Within the quota, pushes still work.
        small = os.urandom(400_000)
        r = client.post("/v2/q/blobs/uploads/", params={"digest": sha256(small)}, content=small)
        assert r.status_code == 201


def test_declared_length_over_quota_refused_before_the_body(
    quota_server: Server, tmp_path: Path
) -> None:
    data = b"x" * 100
    digest = sha256(b"y" * 5_000_000)
    head = (
        f"POST /v2/q/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {quota_server.address}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 5000000\r\n\r\n"
    )
    answer = _send_partial(quota_server.port, head, data)
    assert answer.startswith(b"HTTP/1.1 403") and b"DENIED" in answer, answer[:300]
    assert _uploads(tmp_path) == [] and _blobs(tmp_path) == []
    with httpx.Client(base_url=f"http://{quota_server.address}") as client:
        # Chunked PATCHes add up: the one that crosses the quota is refused.
        location = client.post("/v2/q/blobs/uploads/").headers["Location"]
        first = os.urandom(600_000)
        r = client.patch(location, content=first, headers={"Content-Range": "0-599999"})
        assert r.status_code == 202
        r = client.patch(
            location, content=os.urandom(600_000), headers={"Content-Range": "600000-1199999"}
        )
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert client.get(location).status_code == 404
        assert _uploads(tmp_path) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_an_error_and_nothing_is_corrupted(small_disk: Path) -> None:
    engine = store_engine.create_engine(small_disk / "state.db")
    store_engine.migrate(engine)
    try:
        with Server(oci_app.create_app(small_disk, engine)) as srv:
            base = f"http://{srv.address}"
            kept = os.urandom(300_000)
            with httpx.Client(base_url=base) as client:
                r = client.post("/v2/d/blobs/uploads/", params={"digest": sha256(kept)}, content=kept)
                assert r.status_code == 201
                big = os.urandom(2_000_000)
                # Monolithic, streamed without a length: the disk fills half way.
                r = client.post(
                    "/v2/d/blobs/uploads/",
                    params={"digest": sha256(big)},
                    content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
                )
                assert r.status_code == 507, r.text
                assert r.json()["errors"][0]["code"] == "UNKNOWN"
                assert "disk is full" in r.json()["errors"][0]["message"]
                # Chunked session: the failed chunk is rolled back, the session resumable.
                location = client.post("/v2/d/blobs/uploads/").headers["Location"]
                r = client.patch(location, content=big, headers={"Content-Range": "0-1999999"})
                assert r.status_code == 507
                assert client.get(location).headers["Range"] == "0-0"
                assert client.delete(location).status_code == 204
                # Nothing partial is visible or left behind, the kept blob is intact.
                assert client.head(f"/v2/d/blobs/{sha256(big)}").status_code == 404
                assert _uploads(small_disk) == []
                got = client.get(f"/v2/d/blobs/{sha256(kept)}").content
                assert hashlib.sha256(got).hexdigest() == sha256(kept).split(":")[1]
                # Space is back: a blob that fits is stored.
                small = os.urandom(100_000)
                r = client.post("/v2/d/blobs/uploads/", params={"digest": sha256(small)}, content=small)
                assert r.status_code == 201
    finally:
        engine.dispose()
