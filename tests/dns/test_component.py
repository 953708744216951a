"""The DNS component end to end: Registry objects → watch-fed cache → answers on a socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import dnslib
import pytest

from microkube.controllers import endpoints
from microkube.dns import component
from microkube.resources.registry import DeleteOptions, Registry
from microkube.settings import Settings

pytestmark = pytest.mark.anyio


def rt(reg: Registry, group: str, plural: str) -> Any:
    r = reg.catalog.get(group, "v1", plural)
    assert r is not None
    return r


async def ask(port: int, name: str, qtype: str = "A") -> dnslib.DNSRecord:
    q = dnslib.DNSRecord.question(name, qtype)

    def go() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(q.pack(), ("127.0.0.1", port))
            return s.recv(65535)

    return dnslib.DNSRecord.parse(await asyncio.to_thread(go))


async def test_serves_registry_objects_and_publishes_kube_dns(
    registry: Registry, tmp_path: Any
) -> None:
    settings = Settings(state_dir=tmp_path, instance="mktest")
    # A free port for UDP+TCP: the component binds it like port 53 in production.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = asyncio.Event()
    task = asyncio.create_task(
        component.run(registry, settings, host="127.0.0.1", port=port, started=started)
    )
    ctl = endpoints.EndpointsController(
        registry, api_address=("192.0.2.10", 16443), node_ip="192.0.2.10"
    )
    ctl_task = asyncio.create_task(ctl.run())
    try:
        await asyncio.wait_for(started.wait(), 5)
        svc = registry.get(rt(registry, "", "services"), "kube-system", "kube-dns")
        assert svc["spec"]["clusterIP"] == "10.152.183.10"
        assert [(p["name"], p["protocol"]) for p in svc["spec"]["ports"]] == [
            ("dns", "UDP"),
            ("dns-tcp", "TCP"),
        ]
        ep = registry.get(rt(registry, "", "endpoints"), "kube-system", "kube-dns")
        assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]

        await registry.create(
            rt(registry, "", "services"),
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {"clusterIP": "10.152.183.44", "ports": [{"name": "http", "port": 80}]},
            },
        )
        for _ in range(100):
            reply = await ask(port, "web.default.svc.cluster.local")
            if reply.rr:
                break
            await asyncio.sleep(0.02)
        assert [str(r.rdata) for r in reply.rr] == ["10.152.183.44"]
        # The kube-dns service resolves too, and its mirrored slice feeds headless-style lookups.
        reply = await ask(port, "kube-dns.kube-system.svc.cluster.local")
        assert [str(r.rdata) for r in reply.rr] == ["10.152.183.10"]
        await registry.delete(rt(registry, "", "services"), "default", "web", DeleteOptions())
        for _ in range(100):
            reply = await ask(port, "web.default.svc.cluster.local")
            if reply.header.rcode == dnslib.RCODE.NXDOMAIN:
                break
            await asyncio.sleep(0.02)
        assert reply.header.rcode == dnslib.RCODE.NXDOMAIN
    finally:
        for t in (task, ctl_task):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_cache_forgets_objects_deleted_while_the_watch_was_down() -> None:
    from microkube.dns.cache import ClusterCache, follow

    def svc(name: str) -> dict[str, Any]:
        return {
            "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": "10.152.183.9"},
        }

    class FakeReg:
        """Services watch: lists a and b, breaks, then lists only a."""

        class catalog:  # noqa: N801 - mimics Registry.catalog
            @staticmethod
            def get(group: str, version: str, plural: str) -> str:
                return plural

        def __init__(self) -> None:
            self.calls = 0

        async def watch(self, rt: str, ns: None, *, resource_version: str) -> Any:
            if rt == "services":
                self.calls += 1
                for name in ("a", "b") if self.calls == 1 else ("a",):
                    yield "ADDED", svc(name)
            yield "INITIAL-END", {}
            if rt == "services" and self.calls == 1:
                raise RuntimeError("watch broke")
            await asyncio.Event().wait()

    cache = ClusterCache()
    reg = FakeReg()
    task = asyncio.create_task(follow(reg, cache))
    try:
        for _ in range(300):
            if reg.calls >= 2 and cache.keys("Service") == {("default", "a")}:
                break
            await asyncio.sleep(0.01)
        assert cache.keys("Service") == {("default", "a")}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_listen_address_is_the_pod_gateway_unless_configured() -> None:
    s = Settings()
    s.network.pod_cidr, s.network.service_cidr = "10.9.0.0/16", "10.10.0.0/24"
    assert component.dns_address(s) == "10.9.0.1"
    assert component.dns_service_ip(s) == "10.10.0.10"
    s.network.dns_address = "192.0.2.53"
    assert component.dns_address(s) == "192.0.2.53"
