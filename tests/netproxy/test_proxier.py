"""The proxier follows the API: objects created through the Registry reach the applier, debounced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from microkube.netproxy import model, proxier, rules
from microkube.resources.registry import DeleteOptions, Registry

pytestmark = pytest.mark.anyio


class RecordingApplier:
    def __init__(self) -> None:
        self.loads: list[list[model.ServicePort]] = []
        self.fail_next = False

    def sync(self, ports: list[model.ServicePort]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("nft said no")
        self.loads.append(ports)

    def refresh_host(self, ports: list[model.ServicePort]) -> None:
        self.refreshed = ports


async def wait_for(pred: Any, within: float = 3.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def rt(reg: Registry, group: str, plural: str) -> Any:
    r = reg.catalog.get(group, "v1", plural)
    assert r is not None
    return r


async def test_follows_services_and_slices(registry: Registry) -> None:
    applier = RecordingApplier()
    p = proxier.Proxier(registry, applier)  # type: ignore[arg-type]
    task = asyncio.create_task(p.run())
    try:
        await registry.create(
            rt(registry, "", "services"),
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {"clusterIP": "10.152.183.30", "ports": [{"name": "http", "port": 80}]},
            },
        )
        await wait_for(
            lambda: applier.loads and applier.loads[-1] and applier.loads[-1][0].name == "web"
        )
        assert applier.loads[-1][0].backends == ()
        # A burst of slice writes becomes few loads, each within the debounce bound.
        slices = rt(registry, "discovery.k8s.io", "endpointslices")
        n_before = len(applier.loads)
        start = time.monotonic()
        for i in range(5):
            await registry.create(
                slices,
                "default",
                {
                    "metadata": {
                        "name": f"web-{i}",
                        "labels": {"kubernetes.io/service-name": "web"},
                    },
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [
                        {"addresses": [f"10.1.0.{10 + i}"], "conditions": {"ready": True}}
                    ],
                },
            )
        await wait_for(lambda: len(applier.loads[-1][0].backends) == 5)
        assert time.monotonic() - start < 1.0
        assert len(applier.loads) - n_before <= 3
        # A failed load is retried.
        applier.fail_next = True
        await registry.delete(slices, "default", "web-0", DeleteOptions())
        await wait_for(lambda: len(applier.loads[-1][0].backends) == 4, within=5)
        await registry.delete(rt(registry, "", "services"), "default", "web", DeleteOptions())
        await wait_for(lambda: applier.loads[-1] == [])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_config_from_settings() -> None:
    from microkube.settings import Settings

    s = Settings(instance="mk-42")
    assert proxier.config_for(s) == rules.ProxyConfig(table="mk_42", localhost_nodeports=True)
    s.network.localhost_nodeports = False
    assert proxier.config_for(s).localhost_nodeports is False


def test_network_flags_of_serve(tmp_path: Any, monkeypatch: Any) -> None:
    from microkube import cli

    def settings(*argv: str) -> Any:
        got: dict[str, Any] = {}
        monkeypatch.setattr(
            cli, "cmd_serve", lambda args: got.setdefault("s", cli._settings(args)) and 0
        )
        cli.main(["serve", "--state-dir", str(tmp_path), *argv])
        return got["s"].network

    n = settings()
    assert (n.proxy, n.localhost_nodeports, n.dns_address) == (None, True, "")
    assert (n.cluster_domain, n.node_port_range) == ("cluster.local", (30000, 32767))
    n = settings(
        "--no-proxy", "--no-localhost-nodeports", "--dns-address", "10.9.0.53",
        "--cluster-domain", "corp.example.", "--service-node-port-range", "31000-31999",
    )  # fmt: skip
    assert (n.proxy, n.localhost_nodeports, n.dns_address) == (False, False, "10.9.0.53")
    assert (n.cluster_domain, n.node_port_range) == ("corp.example", (31000, 31999))
    assert settings("--proxy").proxy is True
    with pytest.raises(SystemExit, match="node-port-range"):
        settings("--service-node-port-range", "32767-30000")
