"""From a WebhookClientConfig to an address to dial and a name to verify.

Mirrors upstream's ``ServiceResolver``: ``clientConfig.service`` goes to a
ready endpoint of the Service (pod IP:targetPort, as the apiserver's
endpoint routing does) or, when the service proxy routes ClusterIPs on this
host, to ``ClusterIP:port``.  The TLS server name is always
``<svc>.<ns>.svc``, so a serving certificate made for the Service verifies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit


class ResolveError(Exception):
    """The clientConfig cannot be turned into an address (bad URL, no endpoints)."""


@dataclass(frozen=True)
class Target:
    #: What error messages show (upstream's URL, with ``https://<svc>.<ns>.svc:<port>``).
    url: str
    #: Where to connect: ``https://<ip or host>:<port><path>``.
    dial_url: str
    #: TLS server name and Host header.
    server_name: str
    host_header: str


class ServiceLookup(Protocol):
    """Reads Services and their endpoints (a Registry adapter, or a fake)."""

    def service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def endpoints(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def _join(path: str, query: str) -> str:
    return path + ("?" + query if query else "")


def target(
    config: dict[str, Any],
    lookup: ServiceLookup | None,
    *,
    query: str = "",
    use_cluster_ip: bool = False,
) -> Target:
    """Resolve ``config`` (a WebhookClientConfig); ``query`` is appended (``timeout=10s``)."""
    url = config.get("url")
    if url:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ResolveError(f"invalid webhook URL {url!r}")
        full = url + (("&" if parts.query else "?") + query if query else "")
        host = parts.hostname
        return Target(full, full, host, parts.netloc)
    svc_ref = config.get("service")
    if not isinstance(svc_ref, dict):
        raise ResolveError("webhook clientConfig has neither url nor service")
    ns, name = svc_ref.get("namespace", ""), svc_ref.get("name", "")
    port = int(svc_ref.get("port") or 443)
    path = svc_ref.get("path") or ""
    if path and not path.startswith("/"):
        path = "/" + path
    server_name = f"{name}.{ns}.svc"
    shown = f"https://{server_name}:{port}{_join(path, query)}"
    if lookup is None:
        raise ResolveError(f'service "{ns}/{name}" cannot be resolved: no service lookup')
    svc = lookup.service(ns, name)
    if svc is None:
        raise ResolveError(f'service "{name}" not found')
    spec = svc.get("spec") or {}
    sport = next(
        (p for p in spec.get("ports") or [] if int(p.get("port") or 0) == port),
        None,
    )
    if sport is None:
        raise ResolveError(f'no service port {port} found for service "{name}"')
    if spec.get("type") == "ExternalName":
        ext = spec.get("externalName", "")
        return Target(shown, f"https://{ext}:{port}{_join(path, query)}", server_name, ext)
    host_header = f"{server_name}:{port}"
    cip = spec.get("clusterIP")
    if use_cluster_ip and cip and cip != "None":
        return Target(shown, f"https://{cip}:{port}{_join(path, query)}", server_name, host_header)
    ip, tport = _endpoint(lookup.endpoints(ns, name), sport)
    if ip is None:
        raise ResolveError(f'no endpoints available for service "{name}"')
    dial_host = f"[{ip}]" if ":" in ip else ip
    return Target(
        shown, f"https://{dial_host}:{tport}{_join(path, query)}", server_name, host_header
    )


def _endpoint(eps: dict[str, Any] | None, sport: dict[str, Any]) -> tuple[str | None, int]:
    """A random ready address of the subset port matching the service port (by name)."""
    if not eps:
        return None, 0
    pname = sport.get("name") or ""
    choices: list[tuple[str, int]] = []
    for subset in eps.get("subsets") or []:
        ports = subset.get("ports") or []
        match = next(
            (p for p in ports if (p.get("name") or "") == pname),
            ports[0] if len(ports) == 1 and not pname else None,
        )
        if match is None:
            continue
        for a in subset.get("addresses") or []:
            if a.get("ip"):
                choices.append((a["ip"], int(match.get("port") or 0)))
    if not choices:
        return None, 0
    return random.choice(choices)


class RegistryLookup:
    """Services and Endpoints straight from a Registry (the API server's own view)."""

    def __init__(self, registry: Any) -> None:
        self._reg = registry
        self._svc = registry.catalog.get("", "v1", "services")
        self._eps = registry.catalog.get("", "v1", "endpoints")

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = self._reg.try_get(self._svc, namespace, name)
        return got

    def endpoints(self, namespace: str, name: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = self._reg.try_get(self._eps, namespace, name)
        return got
