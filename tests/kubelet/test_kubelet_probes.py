"""Probe timing and thresholds (pure), and the tcp/http/exec runners against real sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from microkube.kubelet import probes
from microkube.kubelet.fake import FakeRuntime

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_initial_delay_and_period() -> None:
    t = probes.ProbeTracker("readiness", {"initialDelaySeconds": 5, "periodSeconds": 3}, T0)
    assert not t.due(T0 + timedelta(seconds=4))
    assert t.due(T0 + timedelta(seconds=5))
    t.record(True, T0 + timedelta(seconds=5))
    assert t.next_due() == T0 + timedelta(seconds=8)


def test_initial_results_and_thresholds() -> None:
    assert probes.ProbeTracker("readiness", {}, T0).result is False
    assert probes.ProbeTracker("startup", {}, T0).result is False
    live = probes.ProbeTracker("liveness", {"failureThreshold": 3}, T0)
    assert live.result is True
    assert live.record(False, T0) is True
    assert live.record(False, T0) is True
    assert live.record(False, T0) is False
    ready = probes.ProbeTracker("readiness", {"successThreshold": 2, "failureThreshold": 1}, T0)
    assert ready.record(True, T0) is False
    assert ready.record(True, T0) is True
    assert ready.record(False, T0) is False


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_runners(anyio_backend: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        status = b"200 OK" if b"/ok" in line else b"500 Internal Server Error"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runtime = FakeRuntime("t")
    runtime.simulated_network = False  # real HTTP/TCP probes against the local server
    kw = {"runtime": runtime, "container_id": "x", "pod_ip": "127.0.0.1", "timeout": 2.0}
    container = {"ports": [{"name": "http", "containerPort": port}]}
    try:
        ok, _ = await probes.run(
            {"httpGet": {"path": "/ok", "port": "http"}}, container=container, **kw
        )
        assert ok
        ok, msg = await probes.run({"httpGet": {"path": "/bad", "port": port}}, container={}, **kw)
        assert not ok and msg == "HTTP probe failed with statuscode: 500"
        ok, _ = await probes.run({"tcpSocket": {"port": port}}, container={}, **kw)
        assert ok
    finally:
        server.close()
        await server.wait_closed()
    ok, msg = await probes.run({"tcpSocket": {"port": port}}, container={}, **kw)
    assert not ok and "connect" in msg
    ok, msg = await probes.run({"grpc": {"port": 1}}, container={}, **kw)
    assert not ok
