"""POST a JSON body to a webhook and read a JSON answer, bounded by a timeout.

Connections are kept alive per (event loop, address, server name, caBundle)
(:mod:`microkube.webhook.transport`), so a webhook on loopback costs a
request, not a TLS handshake, per call.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from microkube.webhook import resolve, tls, transport


class CallError(Exception):
    """The webhook could not be called or gave an unusable answer.

    ``str(exc)`` is upstream's text after ``failed calling webhook "NAME": ``.
    """


class WebhookClient:
    """Calls webhooks described by a WebhookClientConfig."""

    def __init__(
        self, lookup: resolve.ServiceLookup | None = None, *, use_cluster_ip: bool = False
    ) -> None:
        self.lookup = lookup
        self.use_cluster_ip = use_cluster_ip
        self._pools: dict[int, transport.Pool] = {}

    def _pool(self) -> transport.Pool:
        key = id(asyncio.get_running_loop())
        p = self._pools.get(key)
        if p is None:
            p = self._pools[key] = transport.Pool()
        return p

    async def post(
        self, config: dict[str, Any], body: dict[str, Any], *, timeout_seconds: float
    ) -> dict[str, Any]:
        """POST ``body`` to the webhook ``config`` names; the decoded JSON object back."""
        timeout = timeout_seconds
        secs = max(1, int(timeout))
        try:
            t = resolve.target(
                config, self.lookup, query=f"timeout={secs}s", use_cluster_ip=self.use_cluster_ip
            )
        except resolve.ResolveError as exc:
            raise CallError(f"failed to call webhook: {exc}") from exc
        try:
            ctx = tls.context_for(tls.decode_ca_bundle(config.get("caBundle")))
        except tls.BadCABundle as exc:
            raise CallError(f"failed to call webhook: {exc}") from exc
        dial = urlsplit(t.dial_url)
        host = dial.hostname or ""
        port = dial.port or 443
        target = dial.path or "/"
        if dial.query:
            target += "?" + dial.query
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "host": t.host_header,
            "content-type": "application/json",
            "accept": "application/json, */*",
            "user-agent": "microkube-apiserver",
        }
        try:
            async with asyncio.timeout(timeout):
                resp = await self._pool().post(
                    host, port, target, headers, payload, ssl_context=ctx, server_name=t.server_name
                )
        except TimeoutError as exc:
            raise CallError(
                f'failed to call webhook: Post "{t.url}": context deadline exceeded'
            ) from exc
        except (transport.ProtocolError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            raise CallError(f'failed to call webhook: Post "{t.url}": {_reason(exc, t)}') from exc
        if resp.status < 200 or resp.status >= 300:
            raise CallError(
                f"received invalid webhook response: expected response code 200, got {resp.status}"
                if resp.status < 400
                else f"failed to call webhook: the server responded with status {resp.status}: "
                f"{resp.body[:256].decode('utf-8', 'replace')}"
            )
        try:
            out = json.loads(resp.body)
        except ValueError as exc:
            raise CallError(
                f"received invalid webhook response: couldn't get version/kind; json parse error: {exc}"
            ) from exc
        if not isinstance(out, dict):
            raise CallError("received invalid webhook response: response is not a JSON object")
        return out

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            await p.aclose()


def _reason(exc: BaseException, t: resolve.Target) -> str:
    addr = urlsplit(t.dial_url).netloc
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: {cause.verify_message}"
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {addr}: connect: connection refused"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
