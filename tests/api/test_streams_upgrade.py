"""SPDY upgrades on uvicorn: exec and port-forward driven by a client-go-like Python client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from microkube.api.streams import spdy, upgrade
from tests.api import test_streams_harness as harness
from tests.api.test_streams_harness import SpdyClient, stream_data

pytestmark = pytest.mark.anyio

POD = "/api/v1/namespaces/default/pods/p"
SESSIONS: list[harness.SubprocessSession] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with harness.echo_server() as echo_port:
        app = harness.build_app(harness.connect_to({80: echo_port}), sessions=SESSIONS)
        with harness.serve(app, tmp_path_factory.mktemp("spdy")) as port:
            yield port


def _exec_path(script: str, flags: str) -> str:
    return f"{POD}/exec?command=sh&command=-c&command={quote(script)}&{flags}"


async def test_exec_v4_output_status_and_goaway(server: int) -> None:
    path = _exec_path("echo out; echo err >&2; exit 7", "stdout=true&stderr=true")
    client = await SpdyClient.upgrade(server, path, ["v4.channel.k8s.io", "v3.channel.k8s.io"])
    head = client.response.decode().lower()
    assert head.startswith("http/1.1 101 ")
    assert "upgrade: spdy/3.1" in head and "x-stream-protocol-version: v4.channel.k8s.io" in head
    error = await client.open({"streamtype": "error"})
    stdout = await client.open({"streamtype": "stdout"})
    stderr = await client.open({"streamtype": "stderr"})
    frames = await client.frames()
    client.close()

    replies = {f.stream_id for f in frames if isinstance(f, spdy.SynReply)}
    assert replies == {error, stdout, stderr}  # client-go blocks on these
    assert stream_data(frames, stdout) == (b"out\n", True)
    assert stream_data(frames, stderr) == (b"err\n", True)
    status, fin = stream_data(frames, error)
    assert fin
    assert json.loads(status)["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert isinstance(frames[-1], spdy.GoAway) and frames[-1].status == spdy.GOAWAY_OK


async def test_exec_stdin_and_ping(server: int) -> None:
    client = await SpdyClient.upgrade(
        server, f"{POD}/exec?command=cat&stdin=true&stdout=true", ["v4.channel.k8s.io"]
    )
    error = await client.open({"streamtype": "error"})
    stdin = await client.open({"streamtype": "stdin"})
    stdout = await client.open({"streamtype": "stdout"})
    await client.send(spdy.Ping(1))
    await client.send(spdy.DataFrame(stdin, b"through stdin"))
    await client.send(spdy.DataFrame(stdin, b"", fin=True))
    frames = await client.frames()
    client.close()
    assert spdy.Ping(1) in frames
    assert stream_data(frames, stdout) == (b"through stdin", True)
    assert json.loads(stream_data(frames, error)[0]) == {"metadata": {}, "status": "Success"}


async def test_exec_tty_resize_stream(server: int) -> None:
    path = f"{POD}/exec?command=cat&stdin=true&stdout=true&stderr=true&tty=true"
    client = await SpdyClient.upgrade(server, path, ["v4.channel.k8s.io"])
    await client.open({"streamtype": "error"})
    stdin = await client.open({"streamtype": "stdin"})
    stdout = await client.open({"streamtype": "stdout"})
    resize = await client.open({"streamtype": "resize"})  # no stderr stream with a tty
    await client.send(spdy.DataFrame(resize, b'{"Width":100,"Height":30}\n{"Width":120,'))
    await client.send(spdy.DataFrame(resize, b'"Height":40}\n'))
    await client.send(spdy.DataFrame(stdin, b"typed"))
    got = await client.next_frames()
    while not any(isinstance(f, spdy.DataFrame) and f.stream_id == stdout for f in got):
        got += await client.next_frames()
    await client.send(spdy.DataFrame(stdin, b"", fin=True))
    frames = got + await client.frames()
    client.close()
    assert stream_data(frames, stdout) == (b"typed", True)
    assert SESSIONS[-1].resizes == [(100, 30), (120, 40)]


async def test_exec_v3_reports_failures_as_text(server: int) -> None:
    client = await SpdyClient.upgrade(
        server, _exec_path("exit 2", "stdout=true"), ["v3.channel.k8s.io"]
    )
    error = await client.open({"streamtype": "error"})
    await client.open({"streamtype": "stdout"})
    frames = await client.frames()
    client.close()
    assert (
        stream_data(frames, error)[0]
        == b"command terminated with non-zero exit code: exit status 2"
    )


async def test_unknown_protocol_is_403(server: int) -> None:
    client = await SpdyClient.upgrade(
        server, _exec_path("true", "stdout=true"), ["v9.channel.k8s.io"]
    )
    client.close()
    assert client.response.startswith(b"HTTP/1.1 403 ")


async def test_portforward_pairs_streams_and_pipes_concurrently(server: int) -> None:
    client = await SpdyClient.upgrade(server, f"{POD}/portforward", ["portforward.k8s.io"])
    assert b"x-stream-protocol-version: portforward.k8s.io" in client.response.lower()
    pairs = {}
    for request in ("0", "1"):
        error = await client.open({"streamtype": "error", "port": "80", "requestid": request})
        await client.send(spdy.DataFrame(error, b"", fin=True))
        data = await client.open({"streamtype": "data", "port": "80", "requestid": request})
        pairs[request] = (error, data)
    refused_error = await client.open({"streamtype": "error", "port": "81", "requestid": "2"})
    refused_data = await client.open({"streamtype": "data", "port": "81", "requestid": "2"})
    for request, (_, data) in pairs.items():
        await client.send(spdy.DataFrame(data, f"ping {request}".encode() * 1000))
        await client.send(spdy.DataFrame(data, b"", fin=True))

    frames: list[spdy.Frame] = []
    wanted = {pairs["0"][1], pairs["1"][1], refused_error}
    while wanted - {f.stream_id for f in frames if isinstance(f, spdy.DataFrame) and f.fin}:
        got = await client.next_frames()
        assert got, "connection closed early"
        frames += got
    client.close()

    for request, (error, data) in pairs.items():
        assert stream_data(frames, data) == (f"ping {request}".encode() * 1000, True)
        assert stream_data(frames, error)[0] == b""
    message = stream_data(frames, refused_error)[0].decode()
    assert (
        message.startswith("error forwarding port 81 to pod: ") and "connection refused" in message
    )
    assert stream_data(frames, refused_data)[1]


async def test_negotiate_mirrors_httpstream_handshake() -> None:
    assert upgrade.negotiate(
        ["v4.channel.k8s.io", "v3.channel.k8s.io"], ["v3.channel.k8s.io", "v4.channel.k8s.io"]
    ) == ("v4.channel.k8s.io")
    assert upgrade.negotiate([], ["v4.channel.k8s.io"]) == ""
    assert upgrade.negotiate(["v9"], ["v4.channel.k8s.io"]) is None


def test_shutdown_closes_upgraded_connections(tmp_path: Any) -> None:
    """A long port-forward must not keep uvicorn's graceful shutdown waiting (no timeout set)."""
    with harness.echo_server() as echo_port:
        app = harness.build_app(harness.connect_to({80: echo_port}))
        loop = asyncio.new_event_loop()
        try:
            server = harness.serve(app, tmp_path, graceful_timeout=None)
            port = server.__enter__()
            client = loop.run_until_complete(
                SpdyClient.upgrade(port, f"{POD}/portforward", ["portforward.k8s.io"])
            )
            loop.run_until_complete(
                client.open({"streamtype": "error", "port": "80", "requestid": "0"})
            )
            assert loop.run_until_complete(client.next_frames()) == [spdy.SynReply(1, {})]
            started = time.monotonic()
            server.__exit__(None, None, None)  # raises if uvicorn is still running after 10 s
            assert time.monotonic() - started < 3
            with contextlib.suppress(ConnectionError):  # an abort is fine; a hang is not
                loop.run_until_complete(client.frames())
            client.close()
        finally:
            loop.close()
