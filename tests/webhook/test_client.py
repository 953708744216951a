"""The webhook client against real HTTPS servers on loopback with their own CA."""

from __future__ import annotations

import time
from typing import Any

import pytest

from microkube.webhook import client as wclient
from microkube.webhook import resolve
from tests.support.webhooks import WebhookServer

pytestmark = pytest.mark.anyio


class FakeLookup:
    def __init__(self, services: dict[str, Any], endpoints: dict[str, Any]) -> None:
        self.services, self.eps = services, endpoints

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.services.get(f"{namespace}/{name}")

    def endpoints(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.eps.get(f"{namespace}/{name}")


def echo(path: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"path": path, "got": body}


async def test_url_post_verified_against_ca_bundle() -> None:
    with WebhookServer(echo) as srv:
        c = wclient.WebhookClient()
        try:
            out = await c.post(
                {"url": srv.url("/hook"), "caBundle": srv.ca_bundle}, {"a": 1}, timeout_seconds=5
            )
            assert out == {"path": "/hook?timeout=5s", "got": {"a": 1}}
            # A second call reuses the kept-alive client.
            await c.post(
                {"url": srv.url("/hook"), "caBundle": srv.ca_bundle}, {}, timeout_seconds=5
            )
        finally:
            await c.aclose()


async def test_wrong_ca_is_a_tls_error() -> None:
    with WebhookServer(echo) as srv, WebhookServer(echo) as other:
        c = wclient.WebhookClient()
        try:
            with pytest.raises(wclient.CallError, match="tls: failed to verify certificate"):
                await c.post(
                    {"url": srv.url("/"), "caBundle": other.ca_bundle}, {}, timeout_seconds=5
                )
        finally:
            await c.aclose()


async def test_service_routes_to_endpoint_with_service_dns_name() -> None:
    with WebhookServer(echo, names=("hook.ns1.svc",)) as srv:
        lookup = FakeLookup(
            {
                "ns1/hook": {
                    "spec": {"clusterIP": "10.0.0.9", "ports": [{"name": "https", "port": 443}]}
                }
            },
            {
                "ns1/hook": {
                    "subsets": [
                        {
                            "addresses": [{"ip": "127.0.0.1"}],
                            "ports": [{"name": "https", "port": srv.port}],
                        }
                    ]
                }
            },
        )
        c = wclient.WebhookClient(lookup)
        cfg = {
            "service": {"namespace": "ns1", "name": "hook", "path": "/v"},
            "caBundle": srv.ca_bundle,
        }
        try:
            out = await c.post(cfg, {"x": True}, timeout_seconds=3)
            assert out["path"] == "/v?timeout=3s"
        finally:
            await c.aclose()


def test_service_without_endpoints_or_port() -> None:
    lookup = FakeLookup({"ns/s": {"spec": {"ports": [{"port": 443}]}}}, {})
    with pytest.raises(resolve.ResolveError, match='no endpoints available for service "s"'):
        resolve.target({"service": {"namespace": "ns", "name": "s"}}, lookup)
    with pytest.raises(resolve.ResolveError, match="no service port 8443"):
        resolve.target({"service": {"namespace": "ns", "name": "s", "port": 8443}}, lookup)
    with pytest.raises(resolve.ResolveError, match='service "t" not found'):
        resolve.target({"service": {"namespace": "ns", "name": "t"}}, lookup)
    t = resolve.target(
        {"service": {"namespace": "ns", "name": "s"}},
        FakeLookup({"ns/s": {"spec": {"clusterIP": "10.1.2.3", "ports": [{"port": 443}]}}}, {}),
        use_cluster_ip=True,
    )
    assert (t.url, t.dial_url, t.server_name) == (
        "https://s.ns.svc:443",
        "https://10.1.2.3:443",
        "s.ns.svc",
    )


async def test_timeout_refused_and_bad_json() -> None:
    def slow(path: str, body: dict[str, Any]) -> Any:
        if path.startswith("/slow"):
            time.sleep(2)
        if path.startswith("/junk"):
            return 200, b"{not json"
        if path.startswith("/500"):
            return 500, b"boom"
        return {}

    with WebhookServer(slow) as srv:
        c = wclient.WebhookClient()
        try:
            with pytest.raises(wclient.CallError, match="context deadline exceeded"):
                await c.post(
                    {"url": srv.url("/slow"), "caBundle": srv.ca_bundle}, {}, timeout_seconds=1
                )
            with pytest.raises(wclient.CallError, match="received invalid webhook response"):
                await c.post(
                    {"url": srv.url("/junk"), "caBundle": srv.ca_bundle}, {}, timeout_seconds=5
                )
            with pytest.raises(wclient.CallError, match="status 500"):
                await c.post(
                    {"url": srv.url("/500"), "caBundle": srv.ca_bundle}, {}, timeout_seconds=5
                )
        finally:
            await c.aclose()
        port = srv.port
    c = wclient.WebhookClient()
    try:
        with pytest.raises(wclient.CallError, match="connection refused"):
            await c.post({"url": f"https://127.0.0.1:{port}/"}, {}, timeout_seconds=2)
    finally:
        await c.aclose()
