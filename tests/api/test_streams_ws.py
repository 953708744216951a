"""exec/attach over WebSocket channels, against a real TLS uvicorn and real processes."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from microkube.api.streams import channels
from tests.api import test_streams_harness as harness

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[Any]]]:
    sessions: list[harness.SubprocessSession] = []
    app = harness.build_app(harness.connect_to({}), sessions=sessions)
    with harness.serve(app, tmp_path_factory.mktemp("ws")) as port:
        yield port, sessions


def _ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _url(port: int, query: str, verb: str = "exec") -> str:
    return f"wss://127.0.0.1:{port}/api/v1/namespaces/default/pods/p/{verb}?{query}"


def _sh(script: str) -> str:
    from urllib.parse import quote

    return f"command=sh&command=-c&command={quote(script)}"


async def _collect(ws: ClientConnection) -> dict[int, bytes]:
    """Everything received per channel until the server closes."""
    got: dict[int, bytes] = {}
    try:
        async with asyncio.timeout(10):
            async for message in ws:
                assert isinstance(message, bytes), "binary frames only"
                got[message[0]] = got.get(message[0], b"") + message[1:]
    except ConnectionClosed:
        pass
    return got


async def test_v5_exec_streams_output_then_status_then_close_1000(server: Any) -> None:
    port, _ = server
    query = _sh("echo out; echo err >&2; exit 3") + "&container=c&stdout=true&stderr=true"
    async with connect(_url(port, query), ssl=_ssl(), subprotocols=[channels.V5]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == channels.V5
        got = await _collect(ws)
        assert ws.close_code == 1000
    assert got[channels.STDOUT] == b"out\n"
    assert got[channels.STDERR] == b"err\n"
    assert json.loads(got[channels.ERROR]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


async def test_v5_stdin_and_close_signal(server: Any) -> None:
    port, _ = server
    query = "command=cat&stdin=true&stdout=true&stderr=true"
    async with connect(_url(port, query), ssl=_ssl(), subprotocols=[channels.V5]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x00hello ")
        await ws.send(b"\x00world")
        await ws.send(bytes([channels.CLOSE, channels.STDIN]))
        got = await _collect(ws)
        assert ws.close_code == 1000
    assert got[channels.STDOUT] == b"hello world"
    assert json.loads(got[channels.ERROR]) == {"metadata": {}, "status": "Success"}


async def test_v4_is_accepted_and_reports_a_status(server: Any) -> None:
    port, _ = server
    offered = ["v4.channel.k8s.io", "v3.channel.k8s.io"]
    async with connect(
        _url(port, "command=true&stdout=true"), ssl=_ssl(), subprotocols=offered
    ) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == channels.V4
        got = await _collect(ws)
    assert json.loads(got[channels.ERROR])["status"] == "Success"


async def test_base64_variant_uses_text_frames(server: Any) -> None:
    port, _ = server
    offered = [channels.V4_BASE64]
    async with connect(
        _url(port, _sh("printf hi") + "&stdout=true"), ssl=_ssl(), subprotocols=offered
    ) as ws:  # type: ignore[arg-type]
        messages = [m async for m in ws]
    assert all(isinstance(m, str) for m in messages)
    assert "1aGk=" in messages  # channel 1, base64("hi")


async def test_resize_reaches_the_session_and_ping_gets_pong(server: Any) -> None:
    port, sessions = server
    query = "command=cat&stdin=true&stdout=true&tty=true"
    async with connect(_url(port, query), ssl=_ssl(), subprotocols=[channels.V5]) as ws:  # type: ignore[list-item]
        await ws.send(b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode())
        pong = await ws.ping()
        await asyncio.wait_for(pong, 2)  # uvicorn's websockets layer answers pings
        await ws.send(bytes([channels.CLOSE, channels.STDIN]))
        await _collect(ws)
    assert sessions[-1].resizes == [(120, 40)]


async def test_unknown_subprotocol_is_refused_so_kubectl_falls_back(server: Any) -> None:
    port, _ = server
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            _url(port, "command=true&stdout=true"), ssl=_ssl(), subprotocols=["v9.nope"]
        ):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 403


async def test_client_going_away_kills_the_session(server: Any) -> None:
    port, sessions = server
    async with connect(
        _url(port, "command=sleep&command=30&stdout=true"), ssl=_ssl(), subprotocols=[channels.V5]
    ) as ws:  # type: ignore[list-item]
        await asyncio.sleep(0.3)
        session = sessions[-1]
        await ws.close()
    for _ in range(100):  # polled: the session lives on the server thread's loop
        if session.closed and session.proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert session.closed and session.proc.returncode is not None
