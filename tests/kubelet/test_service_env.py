"""Service-link environment variables, as upstream's envvars.go and getServiceEnvVarMap build them."""

from __future__ import annotations

from typing import Any

import pytest

from microkube.kubelet import containerspec
from microkube.resources import allocators
from microkube.resources.registry import Registry
from microkube.settings import NetworkSettings


@pytest.fixture
def reg(registry: Registry) -> Registry:
    """The bootstrapped registry plus the ClusterIP allocator the app installs."""
    registry.services["service-allocator"] = allocators.ServiceAllocator(
        registry, NetworkSettings()
    )
    return registry


def svc(name: str, ip: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": ports, **spec}}


def test_docker_link_variables_of_one_service() -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "dns-udp", "port": 53, "protocol": "UDP"},
    ]
    assert containerspec.service_vars(svc("redis-master", "10.0.0.11", ports)) == {
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT": "80",
        "REDIS_MASTER_SERVICE_PORT_HTTP": "80",
        "REDIS_MASTER_SERVICE_PORT_DNS_UDP": "53",
        "REDIS_MASTER_PORT": "tcp://10.0.0.11:80",
        "REDIS_MASTER_PORT_80_TCP": "tcp://10.0.0.11:80",
        "REDIS_MASTER_PORT_80_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_80_TCP_PORT": "80",
        "REDIS_MASTER_PORT_80_TCP_ADDR": "10.0.0.11",
        "REDIS_MASTER_PORT_53_UDP": "udp://10.0.0.11:53",
        "REDIS_MASTER_PORT_53_UDP_PROTO": "udp",
        "REDIS_MASTER_PORT_53_UDP_PORT": "53",
        "REDIS_MASTER_PORT_53_UDP_ADDR": "10.0.0.11",
    }


def test_unnamed_port_defaults_to_tcp_and_ipv6_is_bracketed() -> None:
    out = containerspec.service_vars(svc("v6", "fd00::5", [{"port": 8080}]))
    assert out == {
        "V6_SERVICE_HOST": "fd00::5",
        "V6_SERVICE_PORT": "8080",
        "V6_PORT": "tcp://[fd00::5]:8080",
        "V6_PORT_8080_TCP": "tcp://[fd00::5]:8080",
        "V6_PORT_8080_TCP_PROTO": "tcp",
        "V6_PORT_8080_TCP_PORT": "8080",
        "V6_PORT_8080_TCP_ADDR": "fd00::5",
    }


def test_headless_and_external_name_services_have_no_variables() -> None:
    assert containerspec.service_vars(svc("hl", "None", [{"port": 80}])) == {}
    ext = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x.org"}}
    assert containerspec.service_vars(ext) == {}


async def _create(reg: Registry, ns: str, name: str, port: int = 80) -> dict[str, Any]:
    rt = reg.catalog.get("", "v1", "services")
    namespaces = reg.catalog.get("", "v1", "namespaces")
    if reg.try_get(namespaces, "", ns) is None:
        await reg.create(namespaces, "", {"metadata": {"name": ns}})
    body = {"metadata": {"name": name}, "spec": {"ports": [{"port": port}], "selector": {"a": "b"}}}
    return dict(await reg.create(rt, ns, body))


@pytest.mark.anyio
async def test_namespace_services_and_the_master_service(reg: Registry) -> None:
    echo = await _create(reg, "shop", "echo")
    await _create(reg, "elsewhere", "other")
    await _create(reg, "shop", "headless-ish", 81)
    master_ip = reg.try_get(reg.catalog.get("", "v1", "services"), "default", "kubernetes")["spec"][
        "clusterIP"
    ]

    env = containerspec.service_env(reg, "shop", links=True)
    assert env["ECHO_SERVICE_HOST"] == echo["spec"]["clusterIP"]
    assert env["HEADLESS_ISH_SERVICE_PORT"] == "81"
    assert env["KUBERNETES_SERVICE_HOST"] == master_ip
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith("OTHER_") for k in env)  # another namespace's Service

    # enableServiceLinks: false keeps only the master service.
    env = containerspec.service_env(reg, "shop", links=False)
    assert env and all(k.startswith("KUBERNETES_") for k in env)


@pytest.mark.anyio
async def test_own_namespace_kubernetes_service_wins_over_the_master(reg: Registry) -> None:
    own = await _create(reg, "shop", "kubernetes", 8443)
    env = containerspec.service_env(reg, "shop", links=True)
    assert env["KUBERNETES_SERVICE_HOST"] == own["spec"]["clusterIP"]
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"
    assert "KUBERNETES_SERVICE_PORT_HTTPS" not in env
    # Without links the pod's namespace is not looked at: the master service.
    env = containerspec.service_env(reg, "shop", links=False)
    assert env["KUBERNETES_SERVICE_PORT"] == "443"


@pytest.mark.anyio
async def test_container_env_overrides_and_expands_service_variables(reg: Registry) -> None:
    echo = await _create(reg, "default", "echo")
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}
    container = {
        "name": "c",
        "env": [
            {"name": "ECHO_SERVICE_PORT", "value": "9999"},
            {"name": "URL", "value": "http://$(ECHO_SERVICE_HOST):$(ECHO_SERVICE_PORT)/"},
        ],
    }
    env = containerspec.build_env(pod, container, reg, None)
    assert env["ECHO_SERVICE_PORT"] == "9999"
    assert env["URL"] == f"http://{echo['spec']['clusterIP']}:9999/"
    off = containerspec.build_env(
        {**pod, "spec": {"enableServiceLinks": False}}, {"name": "c"}, reg, None
    )
    assert "ECHO_SERVICE_HOST" not in off and "KUBERNETES_SERVICE_HOST" in off
