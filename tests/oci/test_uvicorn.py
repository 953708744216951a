"""Over a real socket: resume after the client disconnected mid-PATCH."""

from __future__ import annotations

import os
import socket
import time

import httpx

from tests.oci.conftest import sha256


def test_resume_after_disconnect(server):
    base = f"http://{server.address}"
    data = os.urandom(3_000_000)
    with httpx.Client(base_url=base) as client:
        location = client.post("/v2/lib/big/blobs/uploads/").headers["Location"]
        # Send a PATCH announcing 3 MB, deliver 1.5 MB, then hang up.
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: {server.address}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            raw.sendall(head.encode() + data[:1_500_000])
            time.sleep(0.3)
        offset = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server notices the hang-up asynchronously
            r = client.get(location)
            assert r.status_code == 204
            offset = int(r.headers["Range"].split("-")[1]) + 1
            if offset == 1_500_000:
                break
            time.sleep(0.05)
        assert 0 < offset <= 1_500_000
        r = client.patch(
            location,
            content=data[offset:],
            headers={"Content-Range": f"{offset}-{len(data) - 1}"},
        )
        assert r.status_code == 202, r.text
        r = client.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/lib/big/blobs/{sha256(data)}").content == data


def test_dot_segments_in_raw_path_are_rejected(server):
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(
            f"POST /v2/a/../../b/blobs/uploads/ HTTP/1.1\r\nHost: {server.address}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"NAME_INVALID" in reply
